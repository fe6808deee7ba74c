"""Upstream flowtask's step keys, events forms and actions, read with upstream's meaning."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from flowtaskd.components.base import Component
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.registry import register, registry
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import SkipError, StepStatus, TaskStatus
from flowtaskd.core.schema import validate_definition as _validate
from flowtaskd.engine.events import EventBus
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import Task
from tests.conftest import wait_for, write


def validate_definition(data: dict[str, Any]) -> Any:
    return _validate(data, catalog=registry())


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TaskParseError) as err:
        validate_definition(data)
    return [
        f"{p.path}: {p.message}" + (f" ({p.hint})" if p.hint else "") for p in err.value.problems
    ]


def task(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"name": "t", "steps": list(steps), **top}


def test_refused_upstream_keys_say_why() -> None:
    assert problems(task({"Dummy": {"branch": {"a": "b"}}})) == [
        "steps[0].Dummy.branch: `branch` is not supported: upstream flowtask (5.13.8) stores "
        "it but never acts on it; use `Goto`, `OnError` or `trigger_rule`"
    ]
    got = problems(task({"FileList": {"directory": "/x", "sftp_config": {"host": "h"}}}))
    assert got == ["steps[0].FileList.sftp_config.directory: field required"], got


def test_upstream_keys_are_read() -> None:
    d = validate_definition(
        task(
            {"FileList": {"directory": "in", "pattern": "*.csv", "to_group": "g"}},
            {"Dummy": {"Group": "g", "comments": "x", "skipError": "log_only"}},
            {"Dummy": {"depends": [0, "g_2"], "variables": {"a": 1}, "conditions": {"b": 2}}},
            {"Dummy": {"depends": 1, "arguments": ["x"], "masks": {"d": ["today"]}}},
        )
    )
    assert [s.id for s in d.steps] == ["FileList_1", "Dummy_2_1", "Dummy_3", "Dummy_4"]
    assert d.steps[1].options.skipError is SkipError.LOG
    assert d.steps[2].options.depends == ["FileList_1", "Dummy_2_1"]  # index 0, group id
    assert d.steps[3].options.depends == ["Dummy_2_1"]  # pile index 1: the group


def test_masks_are_checked_when_the_file_is_read() -> None:
    got = problems(
        task(
            {"Dummy": {"masks": {"{d}": ["tody", {"mask": "%Y"}]}}},
            masks={"x": ["fdom", {"zone": 1, "no": 2}]},
        )
    )
    assert got == [
        "masks.x: fdom: got an unexpected keyword argument 'no'",
        "steps[0].Dummy.masks.{d}: unknown mask function `tody` (did you mean `today`?)",
    ]


def test_jumps_go_forward_to_known_steps() -> None:
    got = problems(
        task(
            {"Dummy": {}},
            {"Dummy": {"Goto": "Dummy_1"}},
            {"Dummy": {"OnError": "Dumy_4"}},
            {"Dummy": {}},
        )
    )
    assert got == [
        "steps[1].Dummy.Goto: `Goto: Dummy_1` jumps back to `Dummy_1`: jumps go forward only, "
        "as upstream's",
        "steps[2].Dummy.OnError: `OnError` names an unknown step `Dumy_4` "
        "(did you mean `Dummy_4`?)",
    ]
    d = validate_definition(
        task({"Dummy": {"Goto": "PrintMessage"}}, {"Dummy": {}}, {"PrintMessage": {}})
    )
    assert d.steps[0].options.Goto == "PrintMessage_3"  # found by component, as upstream's
    assert d.steps[1].options.depends == ["Dummy_1"] and d.steps[2].options.depends == ["Dummy_2"]


def test_nexttask_is_reserved_and_numbered() -> None:
    d = validate_definition(
        task({"Dummy": {}}, {"NextTask": {"task": "after", "on": "failure"}}, {"Dummy": {}})
    )
    assert [s.id for s in d.steps] == ["Dummy_1", "Dummy_3"]
    assert [(c.step_id, c.task, str(c.on)) for c in d.continuations] == [
        ("NextTask_2", "after", "failure")
    ]
    got = problems(
        task(
            {"FileList": {"directory": ".", "to_group": "g"}},
            {"Dummy": {"Group": "g"}},
            {"NextTask": {"task": "x", "Group": "g"}},
            {"NextTask": {"tsk": "x"}},
        )
    )
    assert got == [
        "steps[2].NextTask.Group: a NextTask cannot be part of a group (upstream refuses it too)",
        "steps[3].NextTask.task: field required",
        "steps[3].NextTask.tsk: unknown key "
        "(NextTask takes task, program, on, variables, result, ...)",
    ]


def test_events_block_forms_and_not_shipped_actions() -> None:
    d = validate_definition(
        task({"Dummy": {}}, events={"publish": True, "completed": True, "done": False})
    )
    assert [a.action for a in d.events["completed"]] == ["LogEvent"] and d.events["done"] == ()
    got = problems(
        task(
            {"Dummy": {}},
            events={"publish": "yes", "on_error": [{"Jira": {"summary": "x"}}], "data_error": 3},
        )
    )
    assert got == [
        "events.publish: `publish` is true or false",
        "events.on_error[0]: action `Jira` is not shipped with flowtaskd: upstream's opens Jira "
        "issues (a SaaS integration) (use `WebHook`, `Command` or `RunTask` to reach the service)",
        "events.data_error: an event takes a list of actions, or true / false",
    ]


class _NamedParams(StrictModel):
    name: str
    label: str = ""


class _Named(Component):
    name = "NamedThing"
    Params: ClassVar[type[StrictModel]] = _NamedParams

    async def run(self, ctx: StepContext) -> StepOutcome:
        return StepOutcome(StepStatus.DONE, output=f"{ctx.params['name']}:{ctx.params['label']}")


@pytest.fixture
def named() -> Any:
    register(_Named)
    yield _Named
    registry().pop(_Named.name, None)


async def test_a_components_own_name_keeps_upstreams_meaning(named: Any, tmp_path: Path) -> None:
    d = validate_definition(
        task({"NamedThing": {"name": "report", "attributes": {"label": "from-attributes"}}})
    )
    assert d.steps[0].id == "NamedThing_1"
    async with Task(task=d, log_dir=tmp_path) as t:
        stats = await t.run()
    assert stats.steps["NamedThing_1"].output == "report:from-attributes"


def test_runshell_takes_command_or_commands() -> None:
    assert problems(task({"RunShell": {}})) == [
        "steps[0].RunShell: give `command` (a script) or `commands` (a list), once"
    ]


async def test_runshell_commands_stop_at_the_first_failure(tmp_path: Path) -> None:
    d = task(
        {"RunShell": {"commands": ["echo a > a", "exit 4", "echo c > c"], "cwd": str(tmp_path)}}
    )
    async with Task(task=d, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    assert stats.steps["RunShell_1"].status is StepStatus.FAILED
    assert stats.steps["RunShell_1"].exit_code == 4
    assert (tmp_path / "a").exists() and not (tmp_path / "c").exists()


async def test_placeholders_strict_by_default_lenient_on_request(tmp_path: Path) -> None:
    steps = ({"Dummy": {"message": "x {nope} y"}},)
    async with Task(task=task(*steps), log_dir=tmp_path) as t:
        strict = await t.run()
    assert "unknown placeholder {nope}" in (strict.steps["Dummy_1"].error or "")
    async with Task(task=task(*steps, placeholders="lenient"), log_dir=tmp_path) as t:
        lenient = await t.run()
    assert lenient.steps["Dummy_1"].output == "x {nope} y"


async def test_masks_use_the_runs_logical_time_in_the_tasks_zone(tmp_path: Path) -> None:
    fire = datetime(2026, 3, 11, 23, 30, tzinfo=UTC)  # the 12th in Berlin
    d = task(
        {
            "Dummy": {
                "message": "{day} {v} {c}",
                "masks": {"day": ["today", {"mask": "%Y-%m-%d"}]},
                "conditions": {"c": "C"},
            }
        },
        timezone="Europe/Berlin",
        variables={"v": "V"},
    )
    async with Task(task=d, log_dir=tmp_path, logical_time=fire) as t:
        stats = await t.run()
    assert stats.steps["Dummy_1"].output == "2026-03-12 V C"


async def test_filelist_file_pattern_value_from_a_mask_function(tmp_path: Path) -> None:
    day = datetime(2026, 3, 11, 12, tzinfo=UTC)
    (tmp_path / "sales_20260311.csv").write_text("x")
    (tmp_path / "sales_20260310.csv").write_text("y")
    d = task(
        {
            "FileList": {
                "directory": str(tmp_path),
                "file": {"pattern": "sales_{value}.csv", "value": ["today", {"mask": "%Y%m%d"}]},
            }
        }
    )
    async with Task(task=d, log_dir=tmp_path / "logs", logical_time=day) as t:
        stats = await t.run()
    assert stats.steps["FileList_1"].output == str(tmp_path / "sales_20260311.csv")


async def test_filedelete_with_a_directory_deletes_upstreams_selection(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv", "keep.txt"):
        (tmp_path / name).write_text(name)
    d = task(
        {"FileDelete": {"directory": str(tmp_path), "file": {"pattern": "*.csv", "value": ""}}}
    )
    async with Task(task=d, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    assert stats.status is TaskStatus.DONE
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["keep.txt"]


async def test_notify_without_the_sendnotify_component_is_a_clear_error(tmp_path: Path) -> None:
    shipped = registry().pop("SendNotify", None)
    d = task({"Dummy": {}}, events={"done": [{"Notify": {"type": "email", "recipients": []}}]})
    try:
        with capture_logs() as logs:
            async with Task(task=d, log_dir=tmp_path) as t:
                await t.run()
    finally:
        if shipped is not None:
            registry()["SendNotify"] = shipped
    failed = [entry for entry in logs if entry.get("event") == "action_failed"]
    assert failed and "needs the SendNotify component, which is not installed" in failed[0]["error"]


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, str], Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.got.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[Any]]]:
    _Hook.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Hook.got
    server.shutdown()
    server.server_close()
    thread.join()


async def test_teams_message_and_webhook_with_upstreams_auth(
    hook: tuple[str, list[Any]], tmp_path: Path
) -> None:
    url, got = hook
    d = task(
        {"Dummy": {}},
        events={
            "done": [
                {
                    "TeamsMessage": {
                        "webhook": f"{url}/teams",
                        "title": "Nightly",
                        "text": "{task} ok",
                    }
                },
                {
                    "WebHook": {
                        "url": f"{url}/hook",
                        "auth_type": "bearer",
                        "auth_value": "tok-upstream-4711",
                    }
                },
            ]
        },
    )
    async with Task(task=d, log_dir=tmp_path) as t:
        await t.run()
    await wait_for(lambda: len(got) == 2)
    by_path = {path: (headers, body) for path, headers, body in got}
    card = by_path["/teams"][1]
    assert card["@type"] == "MessageCard" and card["title"].endswith("Nightly")
    assert card["text"] == "t ok"
    headers, body = by_path["/hook"]
    assert headers["Authorization"] == "Bearer tok-upstream-4711"
    assert body["task"] == "t" and body["message"] == "Task Completed." and "id" in body


async def test_task_by_program_and_name_in_upstreams_tree(tmp_path: Path) -> None:
    write(
        tmp_path / "etl" / "tasks" / "daily.yaml", "name: daily\nsteps:\n  - Dummy: {message: hi}\n"
    )
    bus = EventBus()
    async with (
        bus,
        Task(
            task="daily", program="etl", tasks_dir=str(tmp_path), events=bus, log_dir=tmp_path / "l"
        ) as t,
    ):
        stats = await t.run()
    assert stats.status is TaskStatus.DONE and stats.steps["Dummy_1"].output == "hi"
    with pytest.raises(Exception, match="no task 'nightly' in program 'etl'"):
        async with Task(task="nightly", program="etl", tasks_dir=str(tmp_path)) as t:
            await t.run()
    await asyncio.sleep(0)
