"""flowtaskd.daemon.ops.backfill: moments, fire times in a range, and the feeding of a
backfill's runs (at most max_active at a time, skips, cancel)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from flowtaskd.core.options import Overlap
from flowtaskd.core.rules import TaskStatus
from flowtaskd.daemon.ops.backfill import Backfills, backfill_times, parse_moment
from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.tasks import TaskPile
from tests.conftest import wait_for

PILE = TaskPile({"name": "report", "steps": [{"Dummy": {"name": "a"}}]})


def test_parse_moment_days_and_times() -> None:
    assert parse_moment("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    end = parse_moment("2026-01-31", end=True)
    assert (end.hour, end.minute, end.second, end.microsecond) == (23, 59, 59, 999999)
    berlin = parse_moment("2026-01-31T06:00", "Europe/Berlin")
    assert berlin.isoformat() == "2026-01-31T06:00:00+01:00"
    explicit = parse_moment("2026-01-31T06:00:00+00:00", "Europe/Berlin")
    assert explicit.utcoffset() is not None and explicit.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "31/01/2026"])
def test_parse_moment_refuses_other_text(text: str) -> None:
    with pytest.raises(OpError, match=r"is not a date \(2026-01-31\) or an ISO 8601 time"):
        parse_moment(text)


def test_backfill_times_is_inclusive_and_merges_schedules() -> None:
    start = parse_moment("2026-01-01")
    end = parse_moment("2026-01-01T02:00")
    times = backfill_times(["0 * * * *", "0 */2 * * *"], start, end)
    assert [t.hour for t in times] == [0, 1, 2]  # both ends; 00:00 and 02:00 once


def test_backfill_times_every_starts_at_start() -> None:
    start = parse_moment("2026-01-01T00:10")
    times = backfill_times([], start, parse_moment("2026-01-01T00:40"), every=600)
    assert [t.minute for t in times] == [10, 20, 30, 40]


def test_backfill_times_refusals() -> None:
    start = parse_moment("2026-01-02")
    with pytest.raises(OpError, match=r"--to 2026-01-01T00:00:00\+00:00 is before --from"):
        backfill_times(["@daily"], start, parse_moment("2026-01-01"))
    with pytest.raises(OpError, match="no fire time in that range"):
        backfill_times(["0 3 * * *"], start, parse_moment("2026-01-02T02:00"))
    with pytest.raises(OpError, match="hour"):
        backfill_times(["0 25 * * *"], start, parse_moment("2026-01-03"))


class _Manager:
    """Stands for the run manager: accepts runs, finishes them when the test says."""

    def __init__(self, refuse: int = 0) -> None:
        self.submitted: list[RunRequest] = []
        self.cancelled: list[str] = []
        self.refuse = refuse
        self.tasks: set[asyncio.Task[Any]] = set()

    def submit(self, req: RunRequest) -> str | None:
        if self.refuse:
            self.refuse -= 1
            return None
        self.submitted.append(req)
        return req.run_id

    def cancel(self, run_id: str) -> bool:
        self.cancelled.append(run_id)
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)

    async def finish(self, req: RunRequest, status: TaskStatus = TaskStatus.DONE) -> None:
        assert req.on_done is not None
        await req.on_done(req, TaskMonitor(req.task, req.run_id, status), None)


def _times(n: int) -> list[datetime]:
    return [datetime(2026, 1, d + 1, tzinfo=UTC) for d in range(n)]


async def test_runs_are_made_up_front_and_fed_max_active_at_a_time() -> None:
    m = _Manager()
    bfs = Backfills(m.submit, m.cancel, m.spawn)
    bf = bfs.start(PILE, _times(3), params={"x": 1}, source="cli", max_active=2)
    assert bf.id.startswith("bf-") and len(bf.requests) == 3
    r0 = bf.requests[0]
    assert (r0.trigger, r0.overlap, r0.backfill_id, r0.source) == (
        "backfill",
        Overlap.QUEUE,
        bf.id,
        "cli",
    )
    assert r0.logical == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert dict(r0.params) == {"x": 1}
    await wait_for(lambda: len(m.submitted) == 2, what="two runs fed")
    assert bf.summary()["queued"] == 1 and bf.summary()["active"] == 2
    await m.finish(m.submitted[0], TaskStatus.FAILED)
    await wait_for(lambda: len(m.submitted) == 3, what="the third run fed")
    assert [r.logical for r in m.submitted] == [r.logical for r in bf.requests]  # oldest first
    for req in m.submitted[1:]:
        await m.finish(req)
    await wait_for(lambda: bf.state == "done", what="the backfill done")
    assert bf.summary() == {
        "backfill_id": bf.id,
        "task": "report",
        "state": "done",
        "total": 3,
        "queued": 0,
        "active": 0,
        "finished": {"failed": 1, "done": 2},
        "skipped": 0,
    }


async def test_a_refused_run_counts_as_skipped() -> None:
    m = _Manager(refuse=1)
    bf = Backfills(m.submit, m.cancel, m.spawn).start(PILE, _times(2))
    await wait_for(lambda: len(m.submitted) == 1, what="the second run fed")
    assert bf.skipped == [bf.requests[0].run_id]
    await m.finish(m.submitted[0])
    await wait_for(lambda: bf.state == "done")
    assert bf.summary()["finished"] == {"skipped": 1, "done": 1}


async def test_cancel_stops_feeding_and_cancels_active_runs() -> None:
    m = _Manager()
    bfs = Backfills(m.submit, m.cancel, m.spawn)
    bf = bfs.start(PILE, _times(4), max_active=1)
    await wait_for(lambda: len(m.submitted) == 1)
    assert bfs.cancel(bf.id[:6]) is bf
    assert m.cancelled == [bf.requests[0].run_id]
    assert bf.state == "cancelled"
    assert [bf.finished[r.run_id] for r in bf.requests[1:]] == ["cancelled"] * 3
    await m.finish(m.submitted[0], TaskStatus.CANCELLED)
    await asyncio.gather(*m.tasks)  # the feeder ends
    assert len(m.submitted) == 1
    with pytest.raises(OpError, match=rf"backfill {bf.id} is cancelled: nothing to cancel"):
        bfs.cancel(bf.id)


async def test_find_unknown_and_ambiguous() -> None:
    m = _Manager()
    bfs = Backfills(m.submit, m.cancel, m.spawn)
    with pytest.raises(OpError, match=r"unknown backfill 'bf-x' \(backfills since start: none\)"):
        bfs.find("bf-x")
    a = bfs.start(PILE, _times(1))
    b = bfs.start(PILE, _times(1))
    with pytest.raises(OpError, match=rf"ambiguous backfill 'bf-' .*{a.id}, {b.id}"):
        bfs.find("bf-")
    assert bfs.find(a.id) is a
    for task in m.tasks:
        task.cancel()
    await asyncio.gather(*m.tasks, return_exceptions=True)


async def test_max_active_is_one_or_more() -> None:
    m = _Manager()
    with pytest.raises(OpError, match="--max-active is one or more; got 0"):
        Backfills(m.submit, m.cancel, m.spawn).start(PILE, _times(1), max_active=0)
