"""``flowtaskd.core.eventblock``: the task file's ``events:`` block read into validated
actions, each problem reported once with its key path (and, through a file, its line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.eventblock import (
    EVENT_ACTION_MODELS,
    EVENT_NAMES,
    NOT_SHIPPED_ACTIONS,
    EventAction,
    LogEventAction,
    action_params,
    validate_events,
)
from flowtaskd.core.problems import closest
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import load_pile

Where = tuple[str | int, ...]


class Found:
    """The two problem sinks ``validate_events`` reports to, collected."""

    def __init__(self) -> None:
        self.added: list[tuple[str, Where, str | None]] = []
        self.invalid: list[tuple[Where, Any, str]] = []

    def add(self, message: str, where: Where, hint: str | None) -> None:
        self.added.append((message, where, hint))

    def pydantic(self, exc: Exception, where: Where, params: Any, model: type[Any]) -> None:
        self.invalid.append((where, params, model.__name__))

    def read(self, raw: Any) -> dict[str, tuple[EventAction, ...]]:
        return validate_events(raw, self.add, self.pydantic, closest)


def test_actions_of_an_event_are_validated_models_in_order() -> None:
    found = Found()
    out = found.read(
        {
            "done": [
                {"Log": {"message": "ok {task}", "level": "warning"}},
                {"Command": {"command": ["echo", "hi"], "timeout": "5s"}},
                {"RunTask": {"task": "report", "program": "sales"}},
            ]
        }
    )
    assert found.added == [] and found.invalid == []
    assert [a.action for a in out["done"]] == ["Log", "Command", "RunTask"]
    log, command, run = (action_params(a) for a in out["done"])
    assert log == {"message": "ok {task}", "level": "warning"}
    assert command["command"] == ["echo", "hi"] and command["timeout"] == 5.0
    assert run == {"task": "report", "program": "sales", "params": {}}


def test_true_is_one_log_event_false_none_and_publish_is_accepted() -> None:
    found = Found()
    out = found.read({"done": True, "on_error": False, "publish": True})
    assert out == {"done": (EventAction("LogEvent", LogEventAction()),), "on_error": ()}
    assert "publish" not in out and found.added == []


def test_an_action_without_parameters_takes_its_defaults() -> None:
    out = Found().read({"start": [{"Log": None}], "completed": [{"Dummy": {"x": 1}}]})
    assert action_params(out["start"][0]) == {"message": "task {task} {event}", "level": "info"}
    # the pass-through actions keep keys of their own
    assert action_params(out["completed"][0]) == {"message": None, "x": 1}


def test_a_block_that_is_not_a_mapping_gives_nothing_and_no_second_problem() -> None:
    found = Found()
    assert found.read(["done"]) == {} and found.read(None) == {}
    assert found.added == []  # the header check reports the wrong type, once


@pytest.mark.parametrize(
    ("raw", "message", "where", "hint"),
    [
        ({"publish": "yes"}, "`publish` is true or false", ("events", "publish"), None),
        ({"doen": True}, "unknown event `doen`", ("events", "doen"), "did you mean `done`?"),
        (
            {"done": "Log"},
            "an event takes a list of actions, or true / false",
            ("events", "done"),
            None,
        ),
        (
            {"done": ["Log"]},
            "an event action is a mapping with one key, the action name",
            ("events", "done", 0),
            "e.g. `- Log: {message: done}`",
        ),
        (
            {"done": [{"Log": {}, "Command": {}}]},
            "an event action is a mapping with one key, the action name",
            ("events", "done", 0),
            "e.g. `- Log: {message: done}`",
        ),
        (
            {"done": [{"Lgo": {}}]},
            "unknown action `Lgo`",
            ("events", "done", 0),
            "did you mean `Log`?",
        ),
    ],
)
def test_each_mistake_is_one_problem_at_its_key(
    raw: dict[str, Any], message: str, where: Where, hint: str | None
) -> None:
    found = Found()
    found.read(raw)
    assert found.added == [(message, where, hint)]


def test_an_unknown_name_with_nothing_close_lists_the_known_ones() -> None:
    found = Found()
    found.read({"zzzzzzzz": True, "done": [{"Qqqqqqqqq": {}}]})
    (event, action) = found.added
    assert event[2] == f"known: {', '.join(EVENT_NAMES)}"
    assert action[2] == f"known: {', '.join(EVENT_ACTION_MODELS)}"


@pytest.mark.parametrize("name", sorted(NOT_SHIPPED_ACTIONS))
def test_upstreams_saas_actions_are_refused_by_name_with_what_to_use(name: str) -> None:
    found = Found()
    out = found.read({"done": [{name: {}}, {"Log": {}}]})
    ((message, where, hint),) = found.added
    assert message.startswith(f"action `{name}` is not shipped with flowtaskd: upstream's ")
    assert NOT_SHIPPED_ACTIONS[name] in message
    assert where == ("events", "done", 0) and hint is not None and "WebHook" in hint
    assert [a.action for a in out["done"]] == ["Log"]  # the rest of the list still counts


def test_bad_parameters_go_to_the_model_sink_with_the_action_in_the_path() -> None:
    found = Found()
    out = found.read({"done": [{"Log": {"level": "loud"}}, {"WebHook": {"url": "ftp://x"}}]})
    assert found.invalid == [
        (("events", "done", 0, "Log"), {"level": "loud"}, "LogAction"),
        (("events", "done", 1, "WebHook"), {"url": "ftp://x"}, "WebHookAction"),
    ]
    assert out == {"done": ()}


def test_webhook_secrets_must_fit_the_signing_scheme() -> None:
    model = EVENT_ACTION_MODELS["WebHook"]
    ok = model.model_validate({"url": "https://h/x", "secret": ["whsec_a", "whsec_b"]})
    assert action_params(EventAction("WebHook", ok))["secret"] == ["whsec_a", "whsec_b"]
    github = model.model_validate({"url": "https://h/x", "secret": "k", "signing": "github"})
    assert action_params(EventAction("WebHook", github))["signing"] == "github"
    found = Found()
    found.read({"done": [{"WebHook": {"url": "https://h/x", "secret": "plain"}}]})
    assert [w for w, _, _ in found.invalid] == [("events", "done", 0, "WebHook")]
    with pytest.raises(ValueError, match="starts with whsec_"):
        model.model_validate({"url": "https://h/x", "secret": ["whsec_a", "plain"]})


def test_subtask_and_the_notify_family_share_their_models() -> None:
    assert EVENT_ACTION_MODELS["SubTask"] is EVENT_ACTION_MODELS["RunTask"]
    assert EVENT_ACTION_MODELS["SendFile"] is EVENT_ACTION_MODELS["Notify"]
    out = Found().read({"done": [{"SendNotify": {"via": "email", "to": ["a@b"]}}]})
    assert action_params(out["done"][0]) == {"via": "email", "to": ["a@b"]}


def test_through_a_task_file_each_problem_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\n"
        "steps:\n"
        "  - Dummy: {}\n"
        "events:\n"
        "  done:\n"
        "    - Log: {level: loud}\n"
        "  finished: true\n"
        "  on_error:\n"
        "    - Jira: {}\n"
    )
    with pytest.raises(TaskParseError) as caught:
        load_pile(path)
    lines = sorted(str(p) for p in caught.value.problems)
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path}:6: events.done[0].Log.level: ")
    assert lines[1].startswith(f"{path}:7: events.finished: unknown event `finished`")
    assert lines[2].startswith(f"{path}:9: events.on_error[0]: action `Jira` is not shipped")
