"""flowtaskd.daemon.ops.pause: pause targets and set_pause against a real history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.ops.pause import pause_target, set_pause
from flowtaskd.daemon.runs.store import HistoryStore

NOW = 1_800_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


def test_pause_target_of_a_task_or_a_schedule() -> None:
    assert pause_target("report", None) == "task:report"
    assert pause_target(None, "report#0") == "schedule:report#0"


@pytest.mark.parametrize(("task", "schedule"), [(None, None), ("a", "b")])
def test_pause_target_needs_exactly_one(task: str | None, schedule: str | None) -> None:
    with pytest.raises(OpError, match="name a task, or a schedule"):
        pause_target(task, schedule)


@pytest.mark.parametrize("target", ["report", "task:", "job:x", "schedule:"])
async def test_set_pause_rejects_a_malformed_target(store: HistoryStore, target: str) -> None:
    with pytest.raises(OpError, match="a target is task:<name> or schedule:<id>"):
        await set_pause(store, target, True, NOW)
    assert store.paused_targets() == {}


async def test_pause_is_kept_and_reported(store: HistoryStore) -> None:
    changes: list[tuple[str, bool]] = []
    out = await set_pause(
        store, "task:report", True, NOW, on_change=lambda t, p: changes.append((t, p))
    )
    assert out == {"target": "task:report", "paused": True, "since": NOW}
    assert store.paused_targets() == {"task:report": NOW}
    assert changes == [("task:report", True)]
    out = await set_pause(
        store, "task:report", False, NOW + 5, on_change=lambda t, p: changes.append((t, p))
    )
    assert out == {"target": "task:report", "paused": False, "since": None}
    assert store.paused_targets() == {}
    assert changes[-1] == ("task:report", False)


async def test_pausing_twice_says_since_when(store: HistoryStore) -> None:
    await set_pause(store, "task:report", True, NOW)
    changes: list[tuple[str, bool]] = []
    with pytest.raises(OpError) as exc:
        await set_pause(
            store, "task:report", True, NOW + 60, on_change=lambda t, p: changes.append((t, p))
        )
    assert str(exc.value) == "task report is already paused (since 2027-01-15T08:00:00+00:00)"
    assert changes == []  # a refused pause tells nobody
    assert store.paused_targets() == {"task:report": NOW}


async def test_unpausing_what_is_not_paused(store: HistoryStore) -> None:
    with pytest.raises(OpError, match=r"^schedule s#1 is not paused$"):
        await set_pause(store, "schedule:s#1", False, NOW)


async def test_unknown_task_gets_a_did_you_mean(store: HistoryStore) -> None:
    known = ["task:nightly-report", "task:hourly", "schedule:hourly#0"]
    with pytest.raises(OpError) as exc:
        await set_pause(store, "task:nightly-reprot", True, NOW, known=known)
    assert str(exc.value) == "no task 'nightly-reprot' is loaded; did you mean 'nightly-report'?"
    assert store.paused_targets() == {}


async def test_unknown_schedule_lists_the_schedules(store: HistoryStore) -> None:
    known = ["task:hourly", "schedule:hourly#0", "schedule:hourly#1"]
    with pytest.raises(OpError) as exc:
        await set_pause(store, "schedule:daily#0", True, NOW, known=known)
    assert "no schedule 'daily#0' is loaded" in str(exc.value)
    assert str(exc.value).endswith("(schedules: hourly#0, hourly#1)")


async def test_known_target_is_paused(store: HistoryStore) -> None:
    await set_pause(store, "schedule:hourly#1", True, NOW, known=["schedule:hourly#1"])
    assert store.paused_targets() == {"schedule:hourly#1": NOW}
