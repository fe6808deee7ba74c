"""Subscriber plugins: loaded from config specs and from entry points, failures isolated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from flowtaskd.daemon.outputs.subscribers import ENTRY_POINT_GROUP, load_subscribers
from flowtaskd.engine.events import EventBus
from flowtaskd.tasks.task import Task
from tests import subscriber_plugin
from tests.conftest import wait_for, write


@pytest.fixture(autouse=True)
def seen() -> Iterator[list[tuple[str, str]]]:
    subscriber_plugin.SEEN.clear()
    yield subscriber_plugin.SEEN
    subscriber_plugin.SEEN.clear()


async def test_a_config_spec_sees_a_whole_run_in_order(
    tmp_path: Path, seen: list[tuple[str, str]]
) -> None:
    bus = EventBus()
    with capture_logs() as logs:
        errors = load_subscribers(["tests.subscriber_plugin:setup"], bus, group=None)
    assert errors == []
    assert [e["receivers"] for e in logs if e["event"] == "subscriber_loaded"] == [3]
    task = {"name": "plug", "steps": [{"Dummy": {"name": "a"}}, {"Dummy": {"name": "b"}}]}
    with capture_logs() as logs:
        async with bus, Task(task=task, events=bus, log_dir=tmp_path / "logs") as t:
            await t.run()
            await wait_for(lambda: ("async", "completed") in seen)
    expected = [
        "start",
        "running",
        "step_start",
        "step_done",
        "step_start",
        "step_done",
        "done",
        "completed",
    ]
    assert [name for kind, name in seen if kind == "sync"] == expected
    assert [name for kind, name in seen if kind == "async"] == expected
    assert [e["receiver"] for e in logs if e["event"] == "receiver_failed"] == [
        "tests.subscriber_plugin._explodes"
    ]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("tests.no_such_module:setup", "cannot be loaded: ModuleNotFoundError"),
        ("tests.subscriber_plugin:nope", "cannot be loaded: AttributeError"),
        ("tests.subscriber_plugin", "cannot be loaded: ValueError: expected"),
        ("tests.subscriber_plugin:NOT_CALLABLE", "is not callable (it is a int)"),
        ("tests.subscriber_plugin:broken_setup", "failed in setup: RuntimeError: setup is broken"),
        ("tests.subscriber_plugin:misspelled_setup", "did you mean 'task_loaded'?"),
    ],
)
async def test_a_broken_subscriber_is_reported_not_raised(
    spec: str, why: str, seen: list[tuple[str, str]]
) -> None:
    bus = EventBus()
    with capture_logs() as logs:
        errors = load_subscribers([spec, "tests.subscriber_plugin:setup"], bus, group=None)
    assert len(errors) == 1 and why in errors[0] and repr(spec) in errors[0]
    assert "\n" not in errors[0]
    assert [e["error"] for e in logs if e["event"] == "subscriber_failed"] == errors
    bus.emit("daemon_ready", {"tasks": 0})
    # the good subscriber loaded; the broken one left nothing connected behind
    assert seen == [("sync", "daemon_ready")]


async def test_an_entry_point_is_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: list[tuple[str, str]]
) -> None:
    dist = tmp_path / "site" / "flowtaskd_test_plugin-1.0.dist-info"
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: flowtaskd-test-plugin\nVersion: 1.0\n")
    write(
        dist / "entry_points.txt",
        f"[{ENTRY_POINT_GROUP}]\n"
        "works = tests.subscriber_plugin:setup_from_entry_point\n"
        "broken = tests.subscriber_plugin:broken_setup\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    bus = EventBus()
    with capture_logs():
        errors = load_subscribers([], bus)
    assert len(errors) == 1 and "entry point 'broken'" in errors[0]
    bus.emit("daemon_ready", {"tasks": 0})
    assert seen == [("entry_point", "daemon_ready")]


async def test_async_receivers_connected_before_the_bus_starts_get_early_events(
    seen: list[tuple[str, str]],
) -> None:
    bus = EventBus()
    with capture_logs():
        load_subscribers(["tests.subscriber_plugin:setup"], bus, group=None)
    bus.emit("task_loaded", {"task": "x", "file": "/x.yaml", "reloaded": False})
    async with bus:
        await wait_for(lambda: ("async", "task_loaded") in seen)
    assert seen == [("sync", "task_loaded"), ("async", "task_loaded")]
