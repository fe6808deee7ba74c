"""Cron-like schedules: apscheduler 3.11 for the ticking, our own triggers and catch-up.

apscheduler's ``from_crontab`` numbers weekdays from Monday and its default misfire grace
is one second; re-adding jobs at start silently drops runs missed while the daemon was
down. So: triggers come from :mod:`flowtaskd.daemon.triggers` (crontab meaning, defined
DST behaviour), the last fire time of every schedule is kept in the history database, and
at start each schedule's missed fires are planned by ``catchup`` (``none`` | ``latest`` |
``all``) within ``misfire_grace``. A job only hands a run to the daemon and returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from flowtaskd.clock import Clock
from flowtaskd.daemon.store import HistoryStore
from flowtaskd.daemon.triggers import CrontabTrigger, EveryTrigger
from flowtaskd.events import EventBus
from flowtaskd.tasks.options import Overlap

__all__ = ["ScheduleEntry", "Scheduler", "missed_fires", "plan_catchup"]

_log = structlog.get_logger("flowtaskd.scheduler")
_MAX_CATCHUP = 1000
Fire = Callable[["ScheduleEntry", float, str], None]


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One schedule: what to run (a library task or a plain command) and when."""

    id: str
    owner: str  # "config" or "task:<name>"
    task: str | None = None
    command: tuple[str, ...] | None = None
    cron: str | None = None
    every: float | None = None  # seconds
    timezone: str = "UTC"
    jitter: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    catchup: str = "latest"
    misfire_grace: float = 3600.0
    overlap: Overlap | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    timeout: float | None = None

    def trigger(self, last_fire: float | None, now: datetime, *, jitter: bool = True) -> Any:
        j = self.jitter if jitter and self.jitter else None
        if self.cron is not None:
            return CrontabTrigger(self.cron, self.timezone, jitter=j)
        assert self.every is not None
        step = timedelta(seconds=self.every)
        start = datetime.fromtimestamp(last_fire, UTC) + step if last_fire else now + step
        return EveryTrigger(step, self.timezone, start=start, jitter=j)

    @property
    def when(self) -> str:
        return self.cron if self.cron is not None else f"every {self.every:g}s"


def missed_fires(entry: ScheduleEntry, last_fire: float, now: datetime) -> list[datetime]:
    """Fire times after ``last_fire`` and at or before ``now`` (oldest first, capped)."""
    trigger = entry.trigger(last_fire, now, jitter=False)
    prev = datetime.fromtimestamp(last_fire, UTC)
    out: list[datetime] = []
    while len(out) < _MAX_CATCHUP:
        nxt = trigger.get_next_fire_time(prev, now)
        if nxt is None or nxt > now:
            break
        out.append(nxt)
        prev = nxt
    return out


def plan_catchup(
    missed: list[datetime], now: datetime, policy: str, grace: float
) -> tuple[list[datetime], list[datetime]]:
    """Split missed fires into those to run now and those dropped."""
    fresh = [t for t in missed if (now - t).total_seconds() <= grace]
    if policy == "all":
        run = fresh
    elif policy == "latest":
        run = fresh[-1:]
    else:
        run = []
    chosen = set(run)
    return run, [t for t in missed if t not in chosen]


class Scheduler:
    """Holds the schedule entries and their apscheduler jobs."""

    def __init__(self, *, store: HistoryStore, clock: Clock, bus: EventBus, fire: Fire) -> None:
        self.store, self.clock, self.bus, self.fire = store, clock, bus, fire
        self.entries: dict[str, ScheduleEntry] = {}
        self._aps: AsyncIOScheduler | None = None
        self._last: dict[str, float] = {}

    def start(self) -> None:
        """Start ticking (call inside the running loop). Entries added before are planned."""
        self._last = self.store.last_fires()
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._aps.start()
        for entry in list(self.entries.values()):
            self._add_job(entry, catch_up=True)

    def shutdown(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)  # jobs only enqueue: nothing to wait for
        self._aps = None

    def replace(self, owner: str, entries: list[ScheduleEntry]) -> None:
        """Make ``owner``'s schedules exactly ``entries`` (add, update, remove)."""
        new = {e.id: e for e in entries}
        for sid, old in list(self.entries.items()):
            if old.owner == owner and (sid not in new or new[sid] != old):
                self._remove(sid)
        for sid, entry in new.items():
            if sid in self.entries:
                continue
            self.entries[sid] = entry
            if self._aps is not None:
                self._add_job(entry, catch_up=False)

    def _remove(self, sid: str) -> None:
        self.entries.pop(sid, None)
        if self._aps is not None and self._aps.get_job(sid) is not None:
            self._aps.remove_job(sid)

    def _add_job(self, entry: ScheduleEntry, *, catch_up: bool) -> None:
        assert self._aps is not None
        now = self.clock.now()
        last = self._last.get(entry.id)
        if catch_up and last is not None:
            self._catch_up(entry, last, now)
        elif last is None:
            self._last[entry.id] = now.timestamp()  # a baseline, so downtime before the first fire counts
        trigger = entry.trigger(last, now)
        first = trigger.get_next_fire_time(None, now)
        self._aps.add_job(
            self._job, trigger=trigger, args=(entry.id,), id=entry.id, name=entry.id,
            misfire_grace_time=max(1, int(entry.misfire_grace)), coalesce=True,
            max_instances=1000, replace_existing=True, next_run_time=first,
        )
        _log.info("schedule_added", schedule=entry.id, when=entry.when, timezone=entry.timezone,
                  next=first.isoformat() if first else None)

    def _catch_up(self, entry: ScheduleEntry, last: float, now: datetime) -> None:
        missed = missed_fires(entry, last, now)
        if not missed:
            return
        run, dropped = plan_catchup(missed, now, entry.catchup, entry.misfire_grace)
        if dropped:
            self.bus.emit("schedule_missed", {
                "task": entry.task, "schedule": entry.id, "missed": len(dropped),
                "first": dropped[0].isoformat(), "last": dropped[-1].isoformat(),
                "catchup": entry.catchup,
            })
        for t in run:
            self.fire(entry, t.timestamp(), "catchup")
        self._last[entry.id] = now.timestamp()

    async def _job(self, sid: str) -> None:
        entry = self.entries.get(sid)
        if entry is None:
            return
        ts = self.clock.time()
        self.fire(entry, ts, "schedule")
        self._last[sid] = ts
        await self.store.set_last_fire(sid, ts)

    async def record_catchups(self) -> None:
        """Persist the fire times set by catch-up (called once after start)."""
        for sid, ts in self._last.items():
            if sid in self.entries:
                await self.store.set_last_fire(sid, ts)

    def next_fire_times(self) -> dict[str, str | None]:
        if self._aps is None:
            return {}
        out: dict[str, str | None] = {}
        for job in self._aps.get_jobs():
            nrt = getattr(job, "next_run_time", None)
            out[job.id] = nrt.isoformat() if nrt else None
        return out
