"""The scheduler in-process with an injected clock: catch-up, every, overlap, DST.

apscheduler is started paused (it never fires on its own); each test moves a fake clock
and calls ``run_job`` (what a tick does), or starts the scheduler after a simulated
downtime and looks at what catch-up fired. Runs are real, through the real Intake and
RunManager, against a real SQLite history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flowtaskd.core.options import Overlap
from flowtaskd.daemon.intake.dispatch import Intake
from flowtaskd.daemon.intake.library import Library
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.daemon.schedule.scheduler import ScheduleEntry, Scheduler, missed_fires, plan_catchup
from flowtaskd.engine.events import EventBus
from tests.conftest import FakeClock, wait_for, write
from tests.test_manager import Rig, peak, rig

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def next_fire(sched: Scheduler, sid: str) -> datetime:
    text = sched.next_fire_times()[sid]
    assert text is not None
    return datetime.fromisoformat(text)


def hourly(**kw: Any) -> ScheduleEntry:
    return ScheduleEntry(id="hourly", owner="config", task="job", cron="0 * * * *", **kw)


@dataclass
class Fired:
    fires: list[tuple[str, datetime, str]]
    events: list[dict[str, Any]]
    scheduler: Scheduler

    def missed(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "schedule_missed"]


@asynccontextmanager
async def scheduler_after_downtime(
    tmp_path: Path, entry: ScheduleEntry, last: datetime | None, now: datetime
) -> AsyncIterator[Fired]:
    """A scheduler started at ``now`` whose schedule last fired at ``last``."""
    store = HistoryStore(tmp_path / "history.db")
    await store.open()
    try:
        if last is not None:
            await store.set_last_fire(entry.id, last.timestamp())
        clock = FakeClock(now.timestamp())
        bus = EventBus(clock=clock.time)
        events: list[dict[str, Any]] = []
        bus.connect("*", events.append)
        fires: list[tuple[str, datetime, str]] = []

        def fire(e: ScheduleEntry, ts: float, trigger: str) -> None:
            fires.append((e.id, datetime.fromtimestamp(ts, UTC), trigger))

        sched = Scheduler(store=store, clock=clock, bus=bus, fire=fire)
        sched.replace(entry.owner, [entry])
        sched.start(paused=True)
        await sched.record_catchups()
        try:
            yield Fired(fires, events, sched)
        finally:
            sched.shutdown()
    finally:
        await store.close()


# -- catch-up ------------------------------------------------------------------------------

DOWN = utc(2027, 1, 15, 10, 0)  # the last fire before the downtime
UP = utc(2027, 1, 15, 15, 30)  # back up: 11:00 .. 15:00 were missed


async def test_catchup_none_runs_nothing_and_reports_every_missed_fire(tmp_path: Path) -> None:
    async with scheduler_after_downtime(tmp_path, hourly(catchup="none"), DOWN, UP) as f:
        assert f.fires == []
        [missed] = f.missed()
    assert missed["missed"] == 5 and missed["schedule"] == "hourly"
    assert missed["first"] == "2027-01-15T11:00:00+00:00"
    assert missed["last"] == "2027-01-15T15:00:00+00:00"


async def test_catchup_latest_runs_the_newest_fire_within_the_grace(tmp_path: Path) -> None:
    async with scheduler_after_downtime(tmp_path, hourly(catchup="latest"), DOWN, UP) as f:
        assert f.fires == [("hourly", utc(2027, 1, 15, 15), "catchup")]
        [missed] = f.missed()
        assert (missed["missed"], missed["last"]) == (4, "2027-01-15T14:00:00+00:00")
        # the first live fire is the next hour, and "now" is the new baseline
        nxt = next_fire(f.scheduler, "hourly")
        assert nxt == utc(2027, 1, 15, 16)
        assert f.scheduler.store.last_fires() == {"hourly": UP.timestamp()}


async def test_catchup_latest_drops_a_fire_older_than_the_grace(tmp_path: Path) -> None:
    entry = hourly(catchup="latest", misfire_grace=600)  # 15:00 is 30 minutes old
    async with scheduler_after_downtime(tmp_path, entry, DOWN, UP) as f:
        assert f.fires == []
        assert f.missed()[0]["missed"] == 5


async def test_catchup_all_runs_every_fire_within_the_grace_oldest_first(tmp_path: Path) -> None:
    entry = hourly(catchup="all", misfire_grace=3 * 3600)  # back to 12:30
    async with scheduler_after_downtime(tmp_path, entry, DOWN, UP) as f:
        assert [t for _, t, _ in f.fires] == [utc(2027, 1, 15, h) for h in (13, 14, 15)]
        assert {trigger for *_, trigger in f.fires} == {"catchup"}
        [missed] = f.missed()
    assert (missed["missed"], missed["first"], missed["last"]) == (
        2,
        "2027-01-15T11:00:00+00:00",
        "2027-01-15T12:00:00+00:00",
    )


async def test_catchup_all_with_a_wide_grace_misses_nothing(tmp_path: Path) -> None:
    entry = hourly(catchup="all", misfire_grace=86400)
    async with scheduler_after_downtime(tmp_path, entry, DOWN, UP) as f:
        assert len(f.fires) == 5 and f.missed() == []


async def test_a_fire_exactly_at_start_runs_once(tmp_path: Path) -> None:
    now = utc(2027, 1, 15, 15)
    async with scheduler_after_downtime(tmp_path, hourly(catchup="latest"), DOWN, now) as f:
        assert f.fires == [("hourly", now, "catchup")]
        nxt = next_fire(f.scheduler, "hourly")
        assert nxt == utc(2027, 1, 15, 16)  # not 15:00 again


async def test_a_new_schedule_gets_a_baseline_and_no_catchup(tmp_path: Path) -> None:
    async with scheduler_after_downtime(tmp_path, hourly(catchup="all"), None, UP) as f:
        assert f.fires == [] and f.missed() == []
        assert f.scheduler.store.last_fires() == {"hourly": UP.timestamp()}


async def test_every_catches_up_on_its_own_grid(tmp_path: Path) -> None:
    entry = ScheduleEntry(id="ten", owner="config", task="job", every=600, catchup="latest")
    up = DOWN + timedelta(minutes=35)
    async with scheduler_after_downtime(tmp_path, entry, DOWN, up) as f:
        assert f.fires == [("ten", DOWN + timedelta(minutes=30), "catchup")]
        assert f.missed()[0]["missed"] == 2
        nxt = next_fire(f.scheduler, "ten")
        assert nxt == DOWN + timedelta(minutes=40)


async def test_a_long_downtime_of_a_fast_schedule_still_runs_the_latest_fire(
    tmp_path: Path,
) -> None:
    entry = ScheduleEntry(
        id="fast", owner="config", task="job", every=10, catchup="latest", misfire_grace=60
    )
    up = DOWN + timedelta(days=2, seconds=5)
    async with scheduler_after_downtime(tmp_path, entry, DOWN, up) as f:
        assert f.fires == [("fast", DOWN + timedelta(days=2), "catchup")]
        assert f.missed()[0]["missed"] == 2 * 8640 - 1


def test_plan_catchup_is_pure() -> None:
    missed = [utc(2027, 1, 1, h) for h in range(5)]
    now = utc(2027, 1, 1, 4, 30)
    assert plan_catchup(missed, now, "none", 7200) == ([], missed)
    assert plan_catchup(missed, now, "latest", 7200) == (missed[-1:], missed[:-1])
    assert plan_catchup(missed, now, "all", 7200) == (missed[3:], missed[:3])
    assert plan_catchup(missed, now, "all", 0) == ([], missed)


async def test_run_job_fires_now_and_records_the_fire_time(tmp_path: Path) -> None:
    async with scheduler_after_downtime(tmp_path, hourly(), None, UP) as f:
        clock = f.scheduler.clock
        assert isinstance(clock, FakeClock)
        clock.t += 1800
        await f.scheduler.run_job("hourly")
        await f.scheduler.run_job("unknown")  # a removed schedule: nothing happens
        assert f.fires == [("hourly", UP + timedelta(minutes=30), "schedule")]
        assert f.scheduler.store.last_fires()["hourly"] == clock.t


async def test_replace_adds_changes_and_removes_jobs(tmp_path: Path) -> None:
    async with scheduler_after_downtime(tmp_path, hourly(), None, UP) as f:
        s = f.scheduler
        daily = ScheduleEntry(id="daily", owner="config", task="job", cron="0 3 * * *")
        s.replace("config", [hourly(), daily])
        assert set(s.next_fire_times()) == {"hourly", "daily"}
        s.replace(
            "config", [ScheduleEntry(id="daily", owner="config", task="job", cron="0 4 * * *")]
        )
        assert set(s.next_fire_times()) == {"daily"}
        assert next_fire(s, "daily") == utc(2027, 1, 16, 4)
        s.replace("task:other", [])  # another owner's entries are left alone
        assert set(s.entries) == {"daily"}


async def test_replace_per_owner_among_many_owners(tmp_path: Path) -> None:
    async with scheduler_after_downtime(tmp_path, hourly(), None, UP) as f:
        s = f.scheduler
        for i in range(300):
            owner = f"task:t{i}"
            entries = [
                ScheduleEntry(id=f"{owner}:{k}", owner=owner, task=f"t{i}", cron="0 3 * * *")
                for k in range(2)
            ]
            s.replace(owner, entries)
        assert len(s.next_fire_times()) == 601
        s.replace("task:t7", [])
        s.replace("task:t8", [ScheduleEntry(id="task:t8:0", owner="task:t8", cron="0 5 * * *")])
        jobs = s.next_fire_times()
        assert len(jobs) == 598
        assert "task:t7:0" not in jobs and "task:t8:1" not in jobs
        assert next_fire(s, "task:t8:0") == utc(2027, 1, 16, 5)
        assert set(s.entries) == set(jobs)


# -- DST -----------------------------------------------------------------------------------


def berlin_daily() -> ScheduleEntry:
    return ScheduleEntry(
        id="berlin", owner="config", task="job", cron="30 2 * * *", timezone="Europe/Berlin"
    )


def test_daily_job_fires_once_on_the_spring_forward_day() -> None:
    # 2027-03-28: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day
    fires = missed_fires(berlin_daily(), utc(2027, 3, 27, 12).timestamp(), utc(2027, 3, 29, 12))
    assert fires == [utc(2027, 3, 28, 1, 0), utc(2027, 3, 29, 0, 30)]
    assert [t.astimezone(BERLIN).strftime("%d %H:%M") for t in fires] == ["28 03:00", "29 02:30"]


def test_daily_job_fires_once_on_the_fall_back_day() -> None:
    # 2027-10-31: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, fires at the first
    fires = missed_fires(berlin_daily(), utc(2027, 10, 30, 12).timestamp(), utc(2027, 11, 1, 12))
    # (compared in UTC: Python never equates a time in a repeated hour across zones)
    assert [t.astimezone(UTC) for t in fires] == [utc(2027, 10, 31, 0, 30), utc(2027, 11, 1, 1, 30)]
    assert [t.astimezone(BERLIN).strftime("%d %H:%M %Z") for t in fires] == [
        "31 02:30 CEST",
        "01 02:30 CET",
    ]


def test_the_live_trigger_fires_once_a_day_across_both_dst_changes() -> None:
    trigger = berlin_daily().trigger(None, utc(2027, 3, 20), jitter=False)
    prev, days = None, []
    now = utc(2027, 3, 20)
    while True:
        prev = trigger.get_next_fire_time(prev, now)
        if prev > utc(2027, 11, 10):
            break
        days.append(prev.astimezone(BERLIN).date())
    assert len(days) == len(set(days)) == (datetime(2027, 11, 10) - datetime(2027, 3, 20)).days


async def test_the_first_live_fire_after_start_skips_the_missing_hour(tmp_path: Path) -> None:
    start = utc(2027, 3, 27, 12)
    async with scheduler_after_downtime(tmp_path, berlin_daily(), None, start) as f:
        nxt = next_fire(f.scheduler, "berlin")
        assert nxt == utc(2027, 3, 28, 1, 0)  # 03:00 CEST


# -- through the intake and the run manager ------------------------------------------------


@asynccontextmanager
async def daemon_parts(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[Rig, Scheduler, Library]]:
    """The real scheduler -> intake -> run manager chain, with a fake clock."""
    clock = FakeClock(UP.timestamp())
    library = Library([tmp_path / "tasks"], trust_all=True)
    async with rig(tmp_path, clock, **kw) as r:
        config = SimpleNamespace(
            state_dir=tmp_path / "state",
            inboxes=[],
            security=SimpleNamespace(trust_all_files=True),
        )
        parts = SimpleNamespace(config=config, library=library, runs=r.runs, bus=r.runs.bus)
        intake = Intake(parts)  # type: ignore[arg-type]
        sched = Scheduler(store=r.store, clock=clock, bus=r.runs.bus, fire=intake.fire_schedule)
        try:
            yield r, sched, library
        finally:
            sched.shutdown()


def job_file(tmp_path: Path, name: str = "job", sleep: float = 30, **header: Any) -> None:
    extra = "".join(f"{k}: {v}\n" for k, v in header.items())
    write(
        tmp_path / "tasks" / f"{name}.yaml",
        f"name: {name}\n{extra}steps:\n  - Dummy: {{name: nap, sleep: {sleep}}}\n",
    )


async def tick(sched: Scheduler, sid: str, times: int = 1) -> None:
    clock = sched.clock
    assert isinstance(clock, FakeClock)
    for _ in range(times):
        clock.t += 60
        await sched.run_job(sid)


def every_minute(task: str = "job", **kw: Any) -> ScheduleEntry:
    return ScheduleEntry(id="tick", owner="config", task=task, every=60, **kw)


async def test_a_job_only_enqueues_and_the_run_outlives_the_scheduler(tmp_path: Path) -> None:
    job_file(tmp_path)
    async with daemon_parts(tmp_path) as (r, sched, library):
        await asyncio.to_thread(library.scan)
        sched.replace("config", [every_minute()])
        sched.start(paused=True)
        await asyncio.wait_for(tick(sched, "tick"), 1)  # a 30 s run: the job did not wait
        await wait_for(lambda: "job" in r.names("start"))
        sched.shutdown()
        await asyncio.sleep(0.05)
        [active] = r.runs.active.values()
        assert active.request.trigger == "schedule" and active.request.schedule_id == "tick"
        assert active.request.fire_time == UP.timestamp() + 60


@pytest.mark.parametrize(
    ("overlap", "peak_runs"), [("skip", 1), ("queue", 1), ("cancel", 1), ("allow", 3)]
)
async def test_overlap_policies(tmp_path: Path, overlap: str, peak_runs: int) -> None:
    job_file(tmp_path, sleep=0.3, overlap=overlap)
    async with daemon_parts(tmp_path) as (r, sched, library):
        await asyncio.to_thread(library.scan)
        sched.replace("config", [every_minute()])
        sched.start(paused=True)
        await tick(sched, "tick")
        await wait_for(lambda: "job" in r.names("start"))
        await tick(sched, "tick", times=2)

        def ended() -> int:  # every fire ends as a finished run or a skip
            return r.names("completed").count("job") + r.names("run_skipped").count("job")

        await wait_for(lambda: ended() == 3, timeout=10)
        assert not r.runs.active and not r.runs.queue
    statuses = [e["status"] for e in r.events if e["event"] == "completed"]
    assert peak(r.events, "job") == peak_runs
    if overlap == "skip":  # the two ticks during the first run are dropped
        assert statuses == ["done"] and r.names("run_skipped") == ["job", "job"]
    elif overlap == "cancel":  # each newer run cancels the one going; the last one finishes
        assert statuses[0] == "cancelled" and statuses[-1] == "done"
        reasons = [e["reason"] for e in r.events if e["event"] == "run_skipped"]
        assert all("overlap: cancel" in why for why in reasons)
    else:  # queue: one after another; allow: all at once
        assert statuses == ["done"] * 3 and r.names("run_skipped") == []


async def test_max_active_runs_then_skip(tmp_path: Path) -> None:
    job_file(tmp_path, sleep=30, max_active_runs=2)
    async with daemon_parts(tmp_path) as (r, sched, library):
        await asyncio.to_thread(library.scan)
        sched.replace("config", [every_minute()])
        sched.start(paused=True)
        await tick(sched, "tick", times=3)
        await wait_for(lambda: r.names("start").count("job") == 2)
        assert len(r.runs.active) == 2 and not r.runs.queue
        [skip] = [e for e in r.events if e["event"] == "run_skipped"]
        assert skip["schedule"] == "tick" and "overlap: skip" in skip["reason"]


async def test_a_schedule_entry_overrides_the_task_overlap(tmp_path: Path) -> None:
    job_file(tmp_path, sleep=0.1)  # the task says skip (the default)
    async with daemon_parts(tmp_path) as (r, sched, library):
        await asyncio.to_thread(library.scan)
        sched.replace("config", [every_minute(overlap=Overlap.QUEUE)])
        sched.start(paused=True)
        await tick(sched, "tick", times=3)
        await wait_for(lambda: r.names("completed").count("job") == 3)
    assert r.names("run_skipped") == []


async def test_catchup_all_runs_every_missed_fire_despite_overlap_skip(tmp_path: Path) -> None:
    job_file(tmp_path, sleep=0.05)
    async with daemon_parts(tmp_path) as (r, sched, library):
        await asyncio.to_thread(library.scan)
        await r.store.set_last_fire("tick", UP.timestamp() - 300)
        sched.replace("config", [every_minute(catchup="all")])
        sched.start(paused=True)
        await wait_for(lambda: r.names("completed").count("job") == 5, timeout=10)
    runs = r.store.list_runs("job")
    assert {(x.trigger, x.status) for x in runs} == {("catchup", "done")} and len(runs) == 5


async def test_a_config_command_schedule_runs_a_command_task(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    entry = ScheduleEntry(
        id="nightly:cleanup",
        owner="config",
        command=("sh", "-c", f'echo "$GREETING" > {out}'),
        every=60,
        env={"GREETING": "hello"},
    )
    async with daemon_parts(tmp_path) as (r, sched, _library):
        (tmp_path / "tasks").mkdir()
        sched.replace("config", [entry])
        sched.start(paused=True)
        await tick(sched, "nightly:cleanup")
        await wait_for(lambda: "nightly-cleanup" in r.names("completed"))
        # the history records the run's end just after its completed event
        await wait_for(lambda: [x.status for x in r.store.list_runs("nightly-cleanup")] == ["done"])
        [run] = r.store.list_runs("nightly-cleanup")
    assert out.read_text() == "hello\n"
    assert (run.status, run.trigger, run.schedule_id) == ("done", "schedule", "nightly:cleanup")
    assert run.stats is not None and list(run.stats["steps"]) == ["command"]


async def test_a_schedule_of_a_task_not_loaded_is_skipped(tmp_path: Path) -> None:
    async with daemon_parts(tmp_path) as (r, sched, _library):
        sched.replace("config", [every_minute("ghost")])
        sched.start(paused=True)
        await tick(sched, "tick")
    [skip] = [e for e in r.events if e["event"] == "run_skipped"]
    assert skip["task"] == "ghost" and "ghost" in skip["reason"]


# -- pause -----------------------------------------------------------------------------------


async def test_paused_fires_are_skipped_and_unpause_catches_up(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    await store.open()
    await store.add_pause("task:job", DOWN.timestamp())  # paused before the start: kept
    async with scheduler_after_downtime(tmp_path, hourly(catchup="latest"), DOWN, UP) as f:
        assert f.fires == [] and f.missed() == []  # no catch-up for a paused task at start
        clock = f.scheduler.clock
        assert isinstance(clock, FakeClock)
        clock.t = utc(2027, 1, 15, 16).timestamp()
        await f.scheduler.run_job("hourly")
        skipped = [e for e in f.events if e["event"] == "run_skipped"]
        assert [(e["reason"], e["schedule"], e["task"]) for e in skipped] == [
            ("paused", "hourly", "job")
        ]
        assert f.fires == []
        assert f.scheduler.store.last_fires()["hourly"] == DOWN.timestamp()
        clock.t = utc(2027, 1, 15, 16, 20).timestamp()
        await f.scheduler.set_paused("task:job", False)
        # the fires missed meanwhile follow catchup: latest (16:00), the rest are reported
        assert f.fires == [("hourly", utc(2027, 1, 15, 16), "catchup")]
        [missed] = f.missed()
        assert missed["missed"] == 5 and missed["last"] == "2027-01-15T15:00:00+00:00"
        assert f.scheduler.store.last_fires()["hourly"] == clock.t
    await store.close()
