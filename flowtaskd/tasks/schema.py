"""The task file format: validate a loaded document into a :class:`TaskDefinition`.

Every problem in a file is reported at once, each with file, line and key path
(``nightly.yaml:9: steps[2].Command.command: field required``). Pure: no I/O beyond what
the loader already read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, create_model
from pydantic_core import ErrorDetails

from flowtaskd.components.base import Component
from flowtaskd.components.registry import closest, registry
from flowtaskd.errors import Problem, TaskParseError, format_path
from flowtaskd.tasks.cron import CronError, parse_cron, validate_timezone
from flowtaskd.tasks.loader import Document
from flowtaskd.tasks.options import (
    STEP_OPTION_KEYS,
    Argv,
    Duration,
    Overlap,
    RetryPolicy,
    StepOptions,
    StrictModel,
)

__all__ = [
    "EVENT_ACTION_MODELS",
    "EventAction",
    "StepSpec",
    "TaskDefinition",
    "TaskHeader",
    "pydantic_problems",
    "validate_definition",
]


def _env_value(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


EnvMap = dict[str, Annotated[str, BeforeValidator(_env_value)]]


class LogAction(StrictModel):
    message: str = "task {task} {event}"
    level: str = Field(default="info", pattern="^(debug|info|warning|error)$")


class CommandAction(StrictModel):
    command: Argv
    timeout: Duration = 60.0


class RunTaskAction(StrictModel):
    task: str
    params: dict[str, Any] = Field(default_factory=dict)


class WebHookAction(StrictModel):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    timeout: Duration = 10.0
    headers: dict[str, str] = Field(default_factory=dict)


EVENT_ACTION_MODELS: dict[str, type[StrictModel]] = {
    "Log": LogAction,
    "Command": CommandAction,
    "RunTask": RunTaskAction,
    "WebHook": WebHookAction,
}
_EVENT_NAMES = (
    "start",
    "running",
    "done",
    "on_error",
    "exception",
    "completed",
    "cancelled",
    "step_start",
    "step_done",
    "step_error",
    "step_retry",
    "step_skipped",
)


class TaskHeader(StrictModel):
    """Everything at the top level of a task file (steps are checked one by one)."""

    name: str = Field(min_length=1, description="The task's name, unique in a library.")
    description: str | None = None
    comments: str | None = None
    timezone: str | None = Field(default=None, description="IANA zone of the schedule.")
    events: dict[str, list[dict[str, Any]]] | None = Field(
        default=None, description="Event name -> list of {Action: {params}}."
    )
    steps: list[Any] = Field(min_length=1, description="Each step: {Component: {params}}.")
    schedule: str | list[str] | None = Field(default=None, description="Cron string(s).")
    params: dict[str, Any] = Field(default_factory=dict, description="Defaults per run.")
    env: EnvMap = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="Env/param names to mask.")
    timeout: Duration | None = None
    retry: RetryPolicy | None = Field(default=None, description="Default for every step.")
    max_active_runs: int = Field(default=1, ge=1)
    overlap: Overlap = Overlap.SKIP
    max_active_steps: int = Field(default=16, ge=1)


@dataclass(frozen=True, slots=True)
class EventAction:
    action: str
    params: StrictModel


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One validated step: its id, component, parameters and options."""

    index: int
    id: str
    component: str
    params: StrictModel
    options: StepOptions
    line: int | None = None


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A validated task file. ``raw`` is the document as read (for sub-runs and dumps)."""

    header: TaskHeader
    steps: tuple[StepSpec, ...]
    events: Mapping[str, tuple[EventAction, ...]]
    file: str | None = None
    source: Document | None = field(default=None, compare=False, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def schedules(self) -> tuple[str, ...]:
        s = self.header.schedule
        if s is None:
            return ()
        return (s,) if isinstance(s, str) else tuple(s)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        return self.source.line_of(path) if self.source is not None else None


@cache
def step_model(component: type[Component]) -> type[BaseModel]:
    """The component's parameters together with the options every step accepts."""
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{component.name}Step",
        __base__=(component.Params, StepOptions),
        __doc__=component.summary or f"A {component.name} step.",
    )


def pydantic_problems(
    exc: ValidationError,
    prefix: tuple[str | int, ...],
    doc: Document | None,
    known_keys: frozenset[str] | set[str] = frozenset(),
) -> list[Problem]:
    """Turn pydantic's errors into our problems, with key paths and lines."""
    out = []
    for err in exc.errors(include_url=False):
        path = (*prefix, *err["loc"])
        out.append(_problem(err, path, doc, known_keys))
    return out


def _problem(
    err: ErrorDetails, path: tuple[str | int, ...], doc: Document | None, known: Any
) -> Problem:
    file = doc.file if doc else None
    line = doc.line_of(path) if doc else None
    kind = err["type"]
    hint = None
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        key = str(path[-1])
        message = "unknown key"
        near = closest(key, known) if known else None
        hint = f"did you mean `{near}`?" if near else None
    else:
        message = err["msg"].removeprefix("Value error, ")
        if kind.endswith("_type") and "input" in err:
            message += f", got {type(err['input']).__name__} {_short(err['input'])}"
    return Problem(message, file=file, line=line, path=format_path(path), hint=hint)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_definition(data: Any, doc: Document | None = None) -> TaskDefinition:
    """Validate a task's data; raise :class:`TaskParseError` listing every problem."""
    file = doc.file if doc else None
    problems: list[Problem] = list(doc.problems) if doc else []

    def add(message: str, path: tuple[str | int, ...], hint: str | None = None) -> None:
        line = doc.line_of(path) if doc else None
        problems.append(Problem(message, file, line, format_path(path), hint))

    if not isinstance(data, dict):
        add(f"a task is a mapping with `name` and `steps`, got {type(data).__name__}", ())
        raise TaskParseError(problems, file)
    header: TaskHeader | None = None
    try:
        header = TaskHeader.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, (), doc, set(TaskHeader.model_fields)))
    steps = _validate_steps(data.get("steps"), doc, add, problems)
    events = _validate_events(data.get("events"), doc, add, problems)
    if header is not None:
        _check_schedules(header, add)
    if problems or header is None:
        raise TaskParseError(problems, file)
    return TaskDefinition(header, tuple(steps), events, file, doc, data)


def _validate_steps(raw: Any, doc: Document | None, add: Any, problems: list[Problem]) -> list[StepSpec]:
    if not isinstance(raw, list):
        return []
    components = registry()
    steps: list[StepSpec] = []
    for i, item in enumerate(raw):
        where: tuple[str | int, ...] = ("steps", i)
        if not isinstance(item, dict) or len(item) != 1:
            add("a step is a mapping with exactly one key, the component name", where,
                "e.g. `- Command: {command: [echo, hi]}`")
            continue
        ((comp_name, params),) = item.items()
        comp = components.get(str(comp_name))
        if comp is None:
            near = closest(str(comp_name), set(components))
            add(f"unknown component `{comp_name}`", where,
                f"did you mean `{near}`?" if near else f"known: {', '.join(sorted(components))}")
            continue
        where = (*where, comp_name)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            add(f"the parameters of a {comp_name} step are a mapping, got {type(params).__name__}", where)
            continue
        model = step_model(comp)
        try:
            combined = model.model_validate(params)
        except ValidationError as exc:
            known = set(comp.Params.model_fields) | STEP_OPTION_KEYS
            problems.extend(pydantic_problems(exc, where, doc, known))
            continue
        values = dict(combined)
        opts = StepOptions.model_construct(**{k: values[k] for k in STEP_OPTION_KEYS})
        own = comp.Params.model_construct(**{k: values[k] for k in comp.Params.model_fields})
        step_id = opts.name or f"{comp_name}_{i + 1}"
        line = doc.line_of(("steps", i)) if doc else None
        steps.append(StepSpec(i, step_id, comp.name, own, opts, line))
    return steps


def _validate_events(
    raw: Any, doc: Document | None, add: Any, problems: list[Problem]
) -> dict[str, tuple[EventAction, ...]]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, tuple[EventAction, ...]] = {}
    for event, actions in raw.items():
        where: tuple[str | int, ...] = ("events", event)
        if event not in _EVENT_NAMES:
            near = closest(str(event), set(_EVENT_NAMES))
            add(f"unknown event `{event}`", where, f"did you mean `{near}`?" if near else None)
            continue
        if not isinstance(actions, list):
            continue  # the header model reports the type
        parsed = []
        for j, action in enumerate(actions):
            at = (*where, j)
            if not isinstance(action, dict) or len(action) != 1:
                add("an event action is a mapping with one key, the action name", at,
                    "e.g. `- Log: {message: done}`")
                continue
            ((name, params),) = action.items()
            model = EVENT_ACTION_MODELS.get(str(name))
            if model is None:
                near = closest(str(name), set(EVENT_ACTION_MODELS))
                add(f"unknown action `{name}`", at, f"did you mean `{near}`?" if near else None)
                continue
            try:
                parsed.append(EventAction(str(name), model.model_validate(params or {})))
            except ValidationError as exc:
                problems.extend(pydantic_problems(exc, (*at, name), doc, set(model.model_fields)))
        out[str(event)] = tuple(parsed)
    return out


def _check_schedules(header: TaskHeader, add: Any) -> None:
    if header.timezone is not None:
        try:
            validate_timezone(header.timezone)
        except CronError as exc:
            add(str(exc), ("timezone",))
    schedules = header.schedule
    if schedules is None:
        return
    items = [(("schedule",), schedules)] if isinstance(schedules, str) else [
        (("schedule", k), s) for k, s in enumerate(schedules)
    ]
    for path, expr in items:
        try:
            parse_cron(expr)
        except CronError as exc:
            add(str(exc), path)
