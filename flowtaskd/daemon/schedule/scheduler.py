"""Cron-like schedules: apscheduler 3.11 for the ticking, our own triggers and catch-up.

apscheduler's ``from_crontab`` numbers weekdays from Monday and its default misfire grace
is one second; re-adding jobs at start silently drops runs missed while the daemon was
down. So: triggers come from :mod:`flowtaskd.daemon.schedule.triggers` (crontab meaning, defined
DST behaviour), the last fire time of every schedule is kept in the history database, and
at start each schedule's missed fires are planned by ``catchup`` (``none`` | ``latest`` |
``all``) within ``misfire_grace``. A job only hands a run to the daemon and returns.

Catch-up, at :meth:`Scheduler.start`, for each schedule with a recorded last fire: the
fires it missed since then are split by age. Those older than ``misfire_grace`` are
dropped; of the younger ones ``all`` runs every one (oldest first, at most the newest
:data:`MAX_CATCHUP`), ``latest`` only the newest, ``none`` none. The runs are submitted
with trigger ``catchup``; everything dropped is reported once, as ``schedule_missed``
(an event and a log line with the count and the first and last time dropped). A schedule
seen for the first time gets "now" as its baseline, so a later downtime counts.

The first live fire after start is strictly after the clock's "now", so a fire exactly at
start is caught up once, never also fired live. All times come from the injected clock,
except apscheduler's own wake-ups; ``start(paused=True)`` keeps apscheduler from firing
anything, and tests drive :meth:`Scheduler.run_job` (what a tick does) by hand.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from flowtaskd.clock import Clock
from flowtaskd.core.options import Overlap
from flowtaskd.daemon.runs.records import RunStore
from flowtaskd.daemon.schedule.triggers import CrontabTrigger, EveryTrigger
from flowtaskd.engine.events import EventBus

__all__ = ["MAX_CATCHUP", "ScheduleEntry", "Scheduler", "missed_fires", "plan_catchup"]

_log = structlog.get_logger("flowtaskd.scheduler")
MAX_CATCHUP = 1000
"""Most catch-up runs one schedule gets at start (the newest ones)."""
_MAX_SCAN = 100_000  # fires counted when reporting what was dropped
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
        base = datetime.fromtimestamp(last_fire, UTC) if last_fire is not None else now
        start = base + step
        return EveryTrigger(step, self.timezone, start=start, jitter=j)

    @property
    def when(self) -> str:
        return self.cron if self.cron is not None else f"every {self.every:g}s"


def _fires(
    entry: ScheduleEntry, last_fire: float, after: float, until: datetime
) -> Iterator[datetime]:
    """Fire times in ``(after, until]``, oldest first, of a schedule that last fired at
    ``last_fire`` (an ``every`` grid is anchored there); without jitter."""
    trigger = entry.trigger(last_fire, until, jitter=False)
    prev = datetime.fromtimestamp(after, UTC)
    while True:
        nxt = trigger.get_next_fire_time(prev, until)
        if nxt is None or nxt > until:
            return
        yield nxt
        prev = nxt


def missed_fires(
    entry: ScheduleEntry, last_fire: float, now: datetime, *, since: float | None = None
) -> list[datetime]:
    """Fire times after ``last_fire`` (and after ``since``, when given) and at or before
    ``now``; oldest first, at most the newest :data:`MAX_CATCHUP`."""
    after = last_fire if since is None else max(last_fire, since)
    return list(deque(_fires(entry, last_fire, after, now), maxlen=MAX_CATCHUP))


def plan_catchup(
    missed: list[datetime], now: datetime, policy: str, grace: float
) -> tuple[list[datetime], list[datetime]]:
    """Split missed fires into those to run now and those dropped.

    A fire is within the grace window when it is less than ``grace`` seconds old.
    """
    fresh = [t for t in missed if (now - t).total_seconds() < grace]
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

    def __init__(self, *, store: RunStore, clock: Clock, bus: EventBus, fire: Fire) -> None:
        self.store, self.clock, self.bus, self.fire = store, clock, bus, fire
        self.entries: dict[str, ScheduleEntry] = {}
        self._owned: dict[str, dict[str, ScheduleEntry]] = {}  # owner -> its entries by id
        self._aps: AsyncIOScheduler | None = None
        self._last: dict[str, float] = {}
        self.paused: set[str] = set()  # task:<name> / schedule:<id> (see ops.pause)

    def is_paused(self, entry: ScheduleEntry) -> bool:
        return f"schedule:{entry.id}" in self.paused or (
            entry.task is not None and f"task:{entry.task}" in self.paused
        )

    async def set_paused(self, target: str, paused: bool) -> None:
        """Pause or unpause a target; on unpause, the fires missed meanwhile are caught up
        by each schedule's ``catchup`` policy, as after downtime."""
        if paused:
            self.paused.add(target)
            return
        self.paused.discard(target)
        if self._aps is None:
            return
        now = self.clock.now()
        for entry in list(self.entries.values()):
            last = self._last.get(entry.id)
            if last is None or self.is_paused(entry):
                continue
            if target not in (f"schedule:{entry.id}", f"task:{entry.task}"):
                continue
            self._catch_up(entry, last, now)
            await self.store.set_last_fire(entry.id, self._last[entry.id])

    def start(self, *, paused: bool = False) -> None:
        """Start ticking (call inside the running loop); entries added before are caught up.

        ``paused``: plan the jobs but never fire them (tests call :meth:`run_job`).
        """
        self._last = self.store.last_fires()
        self.paused = set(self.store.paused_targets())
        self._aps = AsyncIOScheduler(timezone=UTC)
        # jobs added to a running apscheduler each schedule a wake-up that scans the job
        # store; added before start they go in at once, with a single wake-up
        for entry in list(self.entries.values()):
            self._add_job(entry, catch_up=True)
        self._aps.start(paused=paused)
        _log.info("schedules_started", schedules=len(self.entries))

    def shutdown(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)  # jobs only enqueue: nothing to wait for
        self._aps = None

    def replace(self, owner: str, entries: list[ScheduleEntry]) -> None:
        """Make ``owner``'s schedules exactly ``entries`` (add, update, remove).

        Costs the owner's old and new entries only, not every schedule: a library of
        10,000 scheduled tasks registers each one in constant time.
        """
        new = {e.id: e for e in entries}
        for sid, old in list(self._owned.get(owner, {}).items()):
            if sid not in new or new[sid] != old:
                self._remove(sid)
        for sid, entry in new.items():
            if sid in self.entries:
                continue
            self.entries[sid] = entry
            self._owned.setdefault(entry.owner, {})[sid] = entry
            if self._aps is not None:
                self._add_job(entry, catch_up=False)

    def _remove(self, sid: str) -> None:
        entry = self.entries.pop(sid, None)
        if entry is not None:
            owned = self._owned[entry.owner]
            del owned[sid]
            if not owned:
                del self._owned[entry.owner]
        if self._aps is not None and self._aps.get_job(sid) is not None:
            self._aps.remove_job(sid)
            _log.info("schedule_removed", schedule=sid)

    def _add_job(self, entry: ScheduleEntry, *, catch_up: bool) -> None:
        assert self._aps is not None
        now = self.clock.now()
        last = self._last.get(entry.id)
        if catch_up and last is not None and not self.is_paused(entry):
            self._catch_up(entry, last, now)
        elif last is None:
            self._last[entry.id] = now.timestamp()  # a baseline: a later downtime counts
        trigger = entry.trigger(last, now)
        first = trigger.get_next_fire_time(now, now)  # strictly after now (see docstring)
        self._aps.add_job(
            self.run_job,
            trigger=trigger,
            args=(entry.id,),
            id=entry.id,
            name=entry.id,
            misfire_grace_time=max(1, int(entry.misfire_grace)),
            coalesce=True,
            max_instances=1000,
            replace_existing=True,
            next_run_time=first,
        )
        # at start, one line for all (schedules_started); each one at debug level
        (_log.debug if catch_up else _log.info)(
            "schedule_added",
            schedule=entry.id,
            when=entry.when,
            timezone=entry.timezone,
            next=first.isoformat() if first else None,
        )

    def _catch_up(self, entry: ScheduleEntry, last: float, now: datetime) -> None:
        window = max(last, now.timestamp() - entry.misfire_grace)
        fresh = missed_fires(entry, last, now, since=window)
        run, dropped = plan_catchup(fresh, now, entry.catchup, entry.misfire_grace)
        old_count, old_first, old_last = _span(_fires(entry, last, last, _utc(window)))
        missed = old_count + len(dropped)
        if missed:
            first = old_first or dropped[0]
            latest = dropped[-1] if dropped else old_last
            assert first is not None and latest is not None
            payload = {
                "task": entry.task,
                "schedule": entry.id,
                "missed": missed,
                "first": first.isoformat(),
                "last": latest.isoformat(),
                "catchup": entry.catchup,
                "misfire_grace": entry.misfire_grace,
            }
            self.bus.emit("schedule_missed", payload)
            _log.warning("schedule_missed", **payload)
        for t in run:
            _log.info("schedule_catchup", schedule=entry.id, fire_time=t.isoformat())
            self.fire(entry, t.timestamp(), "catchup")
        self._last[entry.id] = now.timestamp()

    async def run_job(self, sid: str) -> None:
        """One tick of schedule ``sid``: hand a run to the daemon, record the fire time.

        Never waits for the run: the daemon owns it (apscheduler cancels running coroutine
        jobs at shutdown).
        """
        entry = self.entries.get(sid)
        if entry is None:
            return
        if self.is_paused(entry):  # the last fire stays: unpause catches up from it
            payload = {"task": entry.task, "schedule": sid, "reason": "paused"}
            _log.info("run_skipped", trigger="schedule", **payload)
            self.bus.emit("run_skipped", {**payload, "trigger": "schedule"})
            return
        ts = self.clock.time()
        self.fire(entry, ts, "schedule")
        self._last[sid] = ts
        await self.store.set_last_fire(sid, ts)

    async def record_catchups(self) -> None:
        """Persist the fire times set by catch-up (called once after start)."""
        await self.store.set_last_fires(
            {sid: ts for sid, ts in self._last.items() if sid in self.entries}
        )

    def next_fire_times(self) -> dict[str, str | None]:
        if self._aps is None:
            return {}
        out: dict[str, str | None] = {}
        for job in self._aps.get_jobs():
            nrt = getattr(job, "next_run_time", None)
            out[job.id] = nrt.isoformat() if nrt else None
        return out


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _span(fires: Iterator[datetime]) -> tuple[int, datetime | None, datetime | None]:
    """How many fires (at most ``_MAX_SCAN``), the first and the last counted."""
    count, first, last = 0, None, None
    for t in fires:
        if count >= _MAX_SCAN:
            break
        first = first or t
        last = t
        count += 1
    return count, first, last
