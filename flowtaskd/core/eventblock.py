"""The task file's ``events:`` block: event names, action models, and their validation.

Upstream's forms read as upstream writes them: ``{event: [{Action: {params}}, ...]}``;
``publish: true`` (upstream publishes the run's end to a Redis channel; every flowtaskd
event is already published, on the control socket's stream and to webhooks, so it adds
nothing); ``<event>: true`` (a ``LogEvent`` for that event) and ``<event>: false`` (none).

Actions: flowtaskd's ``Log``, ``Command`` (argv, no shell), ``RunTask`` / ``SubTask`` (a
sub-run by ``task`` path or by ``program`` + ``task``), ``WebHook`` (the daemon's webhook delivery,
with upstream's ``auth_type`` + ``auth_value`` too), and upstream's ``Dummy``, ``LogEvent``,
``LogError``, ``Notify`` / ``SendNotify`` / ``SendFile`` (through the ``SendNotify``
component), ``TeamsMessage`` (a Teams incoming webhook), ``FileCopy``, ``FileDelete``.
Upstream's SaaS actions (``Jira``, ``Alert``) are refused by name. Pure: validation only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from flowtaskd.core.events import FILE_EVENTS
from flowtaskd.core.options import Argv, Duration, StrictModel, Timeout

__all__ = [
    "EVENT_ACTION_MODELS",
    "EVENT_NAMES",
    "NOT_SHIPPED_ACTIONS",
    "EventAction",
    "validate_events",
]

EVENT_NAMES: tuple[str, ...] = FILE_EVENTS
"""Events a task file's ``events:`` block may name."""

NOT_SHIPPED_ACTIONS: dict[str, str] = {
    "Jira": "opens Jira issues (a SaaS integration)",
    "Alert": "checks results against pandas rules",
    "PublishEvent": "publishes to Redis (write `publish: true`: flowtaskd's stream has it)",
    "NotifyEvent": "is upstream's internal notifier",
}


class LogAction(StrictModel):
    message: str = "task {task} {event}"
    level: str = Field(default="info", pattern="^(debug|info|warning|error)$")


class CommandAction(StrictModel):
    command: Argv
    timeout: Timeout = 60.0


class RunTaskAction(StrictModel):
    task: str = Field(description="A task file path, a library name, or with `program` a name.")
    program: str | None = Field(default=None, description="<tasks root>/<program>/tasks/.")
    params: dict[str, Any] = Field(default_factory=dict)


class WebHookAction(StrictModel):
    """The same delivery as a ``webhooks:`` entry of the daemon config (see README), or
    upstream's: ``auth_type`` + ``auth_value`` as an ``Authorization`` header, and
    ``message`` in the payload."""

    url: str = Field(pattern=r"^https?://")
    secret: str | list[str] | None = Field(
        default=None, description="standard: whsec_<base64> (a list for rotation); github: any."
    )
    signing: Literal["standard", "github"] = "standard"
    timeout: Timeout = 10.0
    retry_schedule: list[Duration] | None = Field(
        default=None, description="Waits before each retry; null: 5s, 5m, 30m, 2h, 5h, 10h."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    auth_type: Literal["basic", "bearer", "Basic", "Bearer"] | None = None
    auth_value: str | None = None
    message: str | None = None

    @model_validator(mode="after")
    def _secrets_fit_signing(self) -> WebHookAction:
        secrets = self.secret if isinstance(self.secret, list) else [self.secret or ""]
        if self.signing == "standard" and any(s and not s.startswith("whsec_") for s in secrets):
            raise ValueError(
                "secret: a Standard Webhooks secret starts with whsec_ "
                "(for a plain HMAC key, set signing: github)"
            )
        return self


class DummyAction(StrictModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    message: str | None = None


class LogEventAction(StrictModel):
    message: str | None = None
    use_notice: bool = False


class LogErrorAction(StrictModel):
    message: str | None = None


class NotifyAction(StrictModel):
    """Passed on to the ``SendNotify`` component, which checks it when the action runs."""

    model_config = ConfigDict(extra="allow", frozen=True)


class TeamsMessageAction(StrictModel):
    webhook: str = Field(pattern=r"^https?://", description="The channel's incoming webhook URL.")
    title: str = "Task Info:"
    text: str = ""
    type: str = "card"
    timeout: Timeout = 10.0
    channel: str | None = None
    team_id: str | None = None
    channel_name: str | None = None
    with_stats: bool = False


class FileCopyAction(StrictModel):
    directory: str
    filename: str | list[str]
    destination: str
    move: bool = False
    create_destination: bool = True


class FileDeleteAction(StrictModel):
    directory: str
    filename: str | list[str]


EVENT_ACTION_MODELS: dict[str, type[StrictModel]] = {
    "Log": LogAction,
    "Command": CommandAction,
    "RunTask": RunTaskAction,
    "SubTask": RunTaskAction,
    "WebHook": WebHookAction,
    "Dummy": DummyAction,
    "LogEvent": LogEventAction,
    "LogError": LogErrorAction,
    "Notify": NotifyAction,
    "SendNotify": NotifyAction,
    "SendFile": NotifyAction,
    "TeamsMessage": TeamsMessageAction,
    "FileCopy": FileCopyAction,
    "FileDelete": FileDeleteAction,
}


@dataclass(frozen=True, slots=True)
class EventAction:
    """One validated action of the ``events:`` block: ``{Log: {message: ...}}``."""

    action: str
    params: StrictModel


Add = Callable[[str, tuple[str | int, ...], str | None], None]
Pydantic = Callable[[Exception, tuple[str | int, ...], Any, type[StrictModel]], None]


def validate_events(
    raw: Any,
    add: Add,
    pydantic: Pydantic,
    closest: Callable[[str, set[str]], str | None],
) -> dict[str, tuple[EventAction, ...]]:
    """Every action of an ``events:`` block; problems go to ``add`` / ``pydantic``."""
    from pydantic import ValidationError  # noqa: PLC0415 - pydantic is imported anyway

    if not isinstance(raw, dict):
        return {}  # the header reports a wrong type
    out: dict[str, tuple[EventAction, ...]] = {}
    for event, actions in raw.items():
        where: tuple[str | int, ...] = ("events", event)
        if event == "publish":
            if not isinstance(actions, bool):
                add("`publish` is true or false", where, None)
            continue
        if event not in EVENT_NAMES:
            near = closest(str(event), set(EVENT_NAMES))
            hint = f"did you mean `{near}`?" if near else f"known: {', '.join(EVENT_NAMES)}"
            add(f"unknown event `{event}`", where, hint)
            continue
        if isinstance(actions, bool):
            out[str(event)] = (EventAction("LogEvent", LogEventAction()),) if actions else ()
            continue
        if not isinstance(actions, list):
            add("an event takes a list of actions, or true / false", where, None)
            continue
        parsed = []
        for j, action in enumerate(actions):
            at = (*where, j)
            if not isinstance(action, dict) or len(action) != 1:
                add(
                    "an event action is a mapping with one key, the action name",
                    at,
                    "e.g. `- Log: {message: done}`",
                )
                continue
            ((name, params),) = action.items()
            name = str(name)
            if name in NOT_SHIPPED_ACTIONS:
                add(
                    f"action `{name}` is not shipped with flowtaskd: upstream's "
                    f"{NOT_SHIPPED_ACTIONS[name]}",
                    at,
                    "use `WebHook`, `Command` or `RunTask` to reach the service",
                )
                continue
            model = EVENT_ACTION_MODELS.get(name)
            if model is None:
                near = closest(name, set(EVENT_ACTION_MODELS))
                hint = (
                    f"did you mean `{near}`?"
                    if near
                    else f"known: {', '.join(EVENT_ACTION_MODELS)}"
                )
                add(f"unknown action `{name}`", at, hint)
                continue
            try:
                parsed.append(EventAction(name, model.model_validate(params or {})))
            except ValidationError as exc:
                pydantic(exc, (*at, name), params, model)
        out[str(event)] = tuple(parsed)
    return out


def action_params(action: EventAction) -> Mapping[str, Any]:
    """An action's parameters as given (extra keys of pass-through actions included)."""
    return action.params.model_dump()
