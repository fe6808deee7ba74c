"""RunManager in-process: limits, queue order, cancel, drain, history rows.

Runs are real (Dummy steps, real subprocesses for Command); the history is a real SQLite
file; time for the drain's grace comes from a clock the test moves by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowtaskd.clock import Clock, SystemClock
from flowtaskd.daemon.runs.manager import RunManager
from flowtaskd.daemon.runs.records import RunRecord
from flowtaskd.daemon.runs.request import SHUTDOWN, RunRequest
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.engine.events import EventBus
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.execution.local import LocalExecutor
from flowtaskd.tasks import TaskPile
from tests.conftest import FakeClock, wait_for


@dataclass
class Rig:
    runs: RunManager
    store: HistoryStore
    events: list[dict[str, Any]]
    done: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def names(self, event: str) -> list[str]:
        return [e["task"] for e in self.events if e["event"] == event]

    def run(self, run_id: str) -> RunRecord | None:
        found = self.store.get_run(run_id)
        return found[0] if found else None

    def request(self, pile: TaskPile, **kw: Any) -> RunRequest:
        async def on_done(req: RunRequest, stats: TaskMonitor | None, error: str | None) -> None:
            status = str(stats.status) if stats is not None else None
            self.done.append((req.run_id, status, req.cancel_reason or error))

        return RunRequest(pile=pile, trigger=kw.pop("trigger", "manual"), on_done=on_done, **kw)

    async def finished(self, *run_ids: str | None) -> list[RunRecord]:
        async def all_done() -> bool:
            rows = [self.run(r) for r in run_ids if r is not None]
            return len(rows) == len(run_ids) and all(
                r is not None and r.status not in ("pending", "running") for r in rows
            )

        deadline = asyncio.get_running_loop().time() + 15
        while not await all_done():
            assert asyncio.get_running_loop().time() < deadline, "runs did not finish"
            await asyncio.sleep(0.01)
        return [r for r in (self.run(i) for i in run_ids if i is not None) if r is not None]


@asynccontextmanager
async def rig(tmp_path: Path, clock: Clock | None = None, **kw: Any) -> AsyncIterator[Rig]:
    clock = clock or SystemClock()
    store = HistoryStore(tmp_path / "history.db")
    await store.open()
    bus = EventBus(clock=clock.time)
    events: list[dict[str, Any]] = []
    bus.connect("*", events.append)
    executor = LocalExecutor()
    runs = RunManager(
        store=store, bus=bus, executor=executor, clock=clock, log_root=tmp_path / "logs", **kw
    )
    stop = asyncio.Event()
    try:
        async with bus, asyncio.TaskGroup() as tg:
            tg.create_task(runs.run(stop))
            try:
                yield Rig(runs, store, events)
            finally:
                await runs.drain(0)
                stop.set()
    finally:
        await executor.aclose()
        await store.close()


def pile(name: str, *steps: dict[str, Any], **header: Any) -> TaskPile:
    return TaskPile({"name": name, **header, "steps": list(steps) or [{"Dummy": {"name": "a"}}]})


def nap(seconds: float) -> dict[str, Any]:
    return {"Dummy": {"name": "nap", "sleep": seconds}}


def peak(events: list[dict[str, Any]], task: str | None = None) -> int:
    """Most runs (of ``task``, or of all) between their ``start`` and ``completed``."""
    now = most = 0
    for e in events:
        if task is not None and e.get("task") != task:
            continue
        if e["event"] == "start":
            now += 1
            most = max(most, now)
        elif e["event"] == "completed":
            now -= 1
    return most


async def test_history_records_running_then_done_with_every_attempt(tmp_path: Path) -> None:
    flag = tmp_path / "failed-once"
    flaky = {
        "Command": {
            "name": "flaky",
            "command": ["sh", "-c", f"test -e {flag} || {{ touch {flag}; exit 3; }}"],
            "retry": {"attempts": 3, "delay": 60},
        }
    }
    clock = FakeClock()
    async with rig(tmp_path, clock) as r:
        run_id = r.runs.submit(r.request(pile("hist", nap(0.3), flaky), params={"x": 1}))
        assert run_id is not None
        running = await wait_for(lambda: r.run(run_id))
        assert running.status == "running" and running.trigger == "manual"
        assert running.params == {"x": 1} and running.started_at == clock.t
        [row] = await r.finished(run_id)
        assert row.status == "done" and row.finished_at is not None and row.stats is not None
        found = r.store.get_run(run_id)
        assert found is not None
        tries = sorted((a.step_id, a.attempt, a.status, a.exit_code) for a in found[1])
        assert tries == [
            ("flaky", 1, "failed", 3),
            ("flaky", 2, "done", 0),
            ("nap", 1, "done", None),
        ]
    assert clock.sleeps == [60]  # the retry waited on the injected clock
    assert r.done == [(run_id, "done", None)]


async def test_max_runs_caps_runs_across_tasks(tmp_path: Path) -> None:
    async with rig(tmp_path, max_runs=2) as r:
        ids = [r.runs.submit(r.request(pile(f"t{i}", nap(0.1)))) for i in range(5)]
        rows = await r.finished(*ids)
    assert [row.status for row in rows] == ["done"] * 5
    assert peak(r.events) == 2


async def test_max_active_runs_caps_one_task_and_others_pass_it(tmp_path: Path) -> None:
    busy = pile("busy", nap(0.2), max_active_runs=2, overlap="queue")
    async with rig(tmp_path, max_runs=4) as r:
        ids = [r.runs.submit(r.request(busy)) for _ in range(4)]
        other = r.runs.submit(r.request(pile("other")))
        rows = await r.finished(*ids, other)
    assert all(row.status == "done" for row in rows)
    assert peak(r.events, "busy") == 2
    # "other" was queued after all four, yet ran before the last two "busy" ones
    starts = [e["task"] for e in r.events if e["event"] == "start"]
    assert starts.index("other") == 2


async def test_queue_is_first_in_first_out(tmp_path: Path) -> None:
    async with rig(tmp_path, max_runs=1) as r:
        ids = [r.runs.submit(r.request(pile(f"q{i}", nap(0.02)))) for i in range(6)]
        assert [q.task for q in r.runs.queue][-5:] == ["q1", "q2", "q3", "q4", "q5"]
        await r.finished(*ids)
    assert r.names("start") == [f"q{i}" for i in range(6)]
    assert [e["queued"] for e in r.events if e["event"] == "run_queued"] == [1, 2, 3, 4, 5, 6]


async def test_cancel_a_queued_run_records_it_and_hands_it_back(tmp_path: Path) -> None:
    async with rig(tmp_path, max_runs=1) as r:
        first = r.runs.submit(r.request(pile("first", nap(0.3))))
        second = r.runs.submit(r.request(pile("second")))
        assert first is not None and second is not None
        await wait_for(lambda: first in r.runs.active)
        assert not r.runs.cancel("nonexistent")
        assert not r.runs.cancel(second[:4])  # ambiguous: both ids start alike
        assert r.runs.cancel(second)
        rows = await r.finished(first, second)
    assert [(row.status, row.error) for row in rows] == [
        ("done", None),
        ("cancelled", "cancelled while queued"),
    ]
    assert rows[1].started_at is None
    assert "second" not in r.names("start")
    assert "second" in r.names("run_skipped")
    assert (second, None, "cancelled while queued") in r.done


async def test_cancel_a_running_run(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        run_id = r.runs.submit(r.request(pile("long", nap(30))))
        assert run_id is not None
        await wait_for(lambda: "long" in r.names("start"))
        assert r.runs.cancel(run_id)
        [row] = await r.finished(run_id)
    assert (row.status, row.error) == ("cancelled", "cancelled by request")
    assert r.done == [(run_id, "cancelled", "cancelled by request")]


async def test_cancel_before_the_run_begins_is_not_lost(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        run_id = r.runs.submit(r.request(pile("early", nap(30))))
        assert run_id is not None
        await wait_for(lambda: run_id in r.runs.active, interval=0)
        assert r.runs.cancel(run_id)  # while its history row is being written
        [row] = await asyncio.wait_for(r.finished(run_id), 10)
    assert row.status == "cancelled"
    assert "early" not in r.names("start")


async def test_drain_lets_runs_finish_within_the_grace(tmp_path: Path) -> None:
    clock = FakeClock(manual=True)
    async with rig(tmp_path, clock) as r:
        run_id = r.runs.submit(r.request(pile("short", nap(0.2))))
        await wait_for(lambda: "short" in r.names("start"))
        await asyncio.wait_for(r.runs.drain(100), 10)  # the clock never moves
        [row] = await r.finished(run_id)
        assert row.status == "done"
        assert r.runs.submit(r.request(pile("late"))) is None  # no intake after drain
    assert "late" in r.names("run_skipped")


async def test_drain_cancels_what_is_still_running_after_the_grace(tmp_path: Path) -> None:
    clock = FakeClock(manual=True)
    async with rig(tmp_path, clock, max_runs=1) as r:
        long = r.runs.submit(r.request(pile("long", nap(30))))
        waiting = r.runs.submit(r.request(pile("waiting")))
        await wait_for(lambda: "long" in r.names("start"))
        drain = asyncio.create_task(r.runs.drain(5))
        await wait_for(lambda: clock.sleepers == 1)
        assert "waiting" in r.names("run_skipped")  # queued runs never start
        clock.advance(4)
        await asyncio.sleep(0.05)
        assert not drain.done() and long in r.runs.active
        clock.advance(1)
        await asyncio.wait_for(drain, 10)
        assert not r.runs.active
        [row] = await r.finished(long)
    assert (row.status, row.error) == ("cancelled", SHUTDOWN)
    assert r.done == [(long, "cancelled", SHUTDOWN)]
    assert r.run(waiting or "") is None
    assert "waiting" not in r.names("start")


async def test_queue_limit_refuses_runs_but_never_an_inbox_drop(tmp_path: Path) -> None:
    async with rig(tmp_path, max_runs=1, max_queued=2) as r:
        ids = [r.runs.submit(r.request(pile(f"f{i}", nap(0.05)))) for i in range(4)]
        assert ids[2:] == [None, None]
        dropped = r.runs.submit(r.request(pile("drop"), trigger="inbox", inbox_file="/x/drop"))
        assert dropped is not None
        await r.finished(*ids[:2], dropped)
    assert any("queue full" in e["reason"] for e in r.events if e["event"] == "run_skipped")


async def test_a_failing_on_done_does_not_break_the_manager(tmp_path: Path) -> None:
    async def broken(req: RunRequest, stats: TaskMonitor | None, error: str | None) -> None:
        raise OSError("disk full")

    async with rig(tmp_path) as r:
        first = r.runs.submit(RunRequest(pile=pile("a"), trigger="manual", on_done=broken))
        second = r.runs.submit(r.request(pile("b")))
        rows = await r.finished(first, second)
    assert [row.status for row in rows] == ["done", "done"]
