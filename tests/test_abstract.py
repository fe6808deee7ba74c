"""``flowtaskd.tasks.abstract.AbstractTask``: the async life of a task (flowtask's design)."""

from __future__ import annotations

import pytest

from flowtaskd.core.rules import TaskStatus
from flowtaskd.engine.events import EventBus
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks.abstract import AbstractTask


class Recorded(AbstractTask):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def run(self) -> TaskMonitor:
        self.calls.append("run")
        return self.stats

    async def close(self) -> None:
        self.calls.append("close")


def test_it_is_abstract() -> None:
    with pytest.raises(TypeError):
        AbstractTask()  # type: ignore[abstract]


async def test_async_with_starts_and_closes_even_on_error() -> None:
    task = Recorded("t")
    async with task as entered:
        assert entered is task
        await task.run()
    assert task.calls == ["start", "run", "close"]
    other = Recorded("t")
    with pytest.raises(RuntimeError):
        async with other:
            raise RuntimeError("inside")
    assert other.calls == ["start", "close"]


def test_flowtask_arguments_are_kept() -> None:
    task = Recorded("tid", {"x": 1}, "prog", None, "parser", "user", extra=5)
    assert (task.task_id, task.task, task.program, task.parser, task.userid) == (
        "tid",
        {"x": 1},
        "prog",
        "parser",
        "user",
    )
    assert task.kwargs == {"extra": 5}


def test_stats_are_empty_before_a_run_and_named_for_the_task() -> None:
    task = Recorded("sales")
    stats = task.stats
    assert (stats.task, stats.run_id, stats.status) == ("sales", "", TaskStatus.PENDING)
    assert task.stats is stats
    assert Recorded().stats.task == "task"


def test_task_events_made_once_or_shared() -> None:
    task = Recorded()
    bus = task.task_events()
    assert isinstance(bus, EventBus) and task.task_events() is bus
    shared = EventBus()
    assert Recorded(events=shared).task_events() is shared
    assert Recorded(events="not a bus").task_events() is not None


def test_check_syntax() -> None:
    assert AbstractTask.check_syntax({"name": "t", "steps": [{"Dummy": {}}]}) is True
    with pytest.raises(TaskParseError, match="steps"):
        AbstractTask.check_syntax({"name": "t", "steps": []})
