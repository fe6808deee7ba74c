"""``backfill``: one run per fire time of a task's schedule in a past range, each at its
logical time.

:func:`backfill_times` lists the fire times in ``[start, end]`` of the task's schedules
(or of an ``every`` interval from ``start``). :class:`Backfills` (one per daemon) starts a
:class:`Backfill`: its runs are made up front (their ids are in the reply), then queued
oldest first, at most ``max_active`` at a time, with trigger ``backfill``, the fire time as
their logical time (``{today}``, ``{yesterday}``, ``{now}`` and ``{logical_time}`` evaluate
at it) and overlap ``queue`` (the task's ``max_active_runs`` and the daemon's limits still
apply). :meth:`Backfills.cancel` cancels one as a whole: nothing more is queued and its
queued and running runs are cancelled.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flowtaskd.core.cron import CronError, next_fire_times, parse_cron, validate_timezone
from flowtaskd.core.options import Overlap
from flowtaskd.core.pile import TaskPile
from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.engine.stats import TaskMonitor

__all__ = ["MAX_BACKFILL", "Backfill", "Backfills", "backfill_times", "parse_moment"]

MAX_BACKFILL = 10_000
"""Most runs one backfill makes."""
_KEEP_ENDED = 100  # backfills that ended, kept for ``backfills`` and ``backfill_cancel``


def parse_moment(text: str, tz: str = "UTC", *, end: bool = False) -> datetime:
    """``2026-01-01`` (the day's start, or with ``end`` its last instant) or an ISO 8601
    time; naive times are in ``tz``."""
    zone = ZoneInfo(str(validate_timezone(tz)))
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            moment = datetime.combine(day, time.max if end else time.min)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise OpError(f"{text!r} is not a date (2026-01-31) or an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def backfill_times(
    schedules: Iterable[str],
    start: datetime,
    end: datetime,
    *,
    every: float | None = None,
    tz: str = "UTC",
) -> list[datetime]:
    """Fire times in ``[start, end]``, oldest first (at most :data:`MAX_BACKFILL`)."""
    if end < start:
        raise OpError(f"backfill: --to {end.isoformat()} is before --from {start.isoformat()}")
    out: set[datetime] = set()
    if every is not None:
        step = timedelta(seconds=every)
        t = start
        while t <= end and len(out) <= MAX_BACKFILL:
            out.add(t)
            t += step
    else:
        exprs = list(schedules)
        if not exprs:
            raise OpError("backfill: the task has no schedule; give --every INTERVAL")
        zone = validate_timezone(tz)
        for expr in exprs:
            try:
                spec = parse_cron(expr)
            except CronError as exc:
                raise OpError(str(exc)) from None
            after = start - timedelta(microseconds=1)
            while len(out) <= MAX_BACKFILL:
                found = next_fire_times(spec, zone, after, 64)
                fresh = [t for t in found if t <= end]
                out.update(fresh)
                if len(fresh) < len(found) or not found:
                    break
                after = found[-1]
    if len(out) > MAX_BACKFILL:
        raise OpError(f"backfill: more than {MAX_BACKFILL} runs in that range; narrow it")
    if not out:
        raise OpError("backfill: no fire time in that range")
    return sorted(out)


Submit = Callable[[RunRequest], str | None]
Cancel = Callable[[str], bool]
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


@dataclass(eq=False)
class Backfill:
    """One backfill: its runs, how far it got, whether it was cancelled."""

    id: str
    task: str
    requests: list[RunRequest]
    max_active: int
    state: str = "running"  # running | done | cancelled
    active: set[str] = field(default_factory=set)
    finished: dict[str, str] = field(default_factory=dict)  # run id -> status
    skipped: list[str] = field(default_factory=list)
    next_index: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for status in self.finished.values():
            counts[status] = counts.get(status, 0) + 1
        return {
            "backfill_id": self.id,
            "task": self.task,
            "state": self.state,
            "total": len(self.requests),
            "queued": max(0, len(self.requests) - self.next_index),
            "active": len(self.active),
            "finished": counts,
            "skipped": len(self.skipped),
        }


class Backfills:
    """The daemon's backfills; runs go through ``submit`` (the run manager's)."""

    def __init__(self, submit: Submit, cancel: Cancel, spawn: Spawn) -> None:
        self.submit, self.cancel_run, self.spawn = submit, cancel, spawn
        self.all: dict[str, Backfill] = {}

    def start(
        self,
        pile: TaskPile,
        times: list[datetime],
        *,
        params: dict[str, Any] | None = None,
        source: str | None = None,
        max_active: int = 1,
    ) -> Backfill:
        if max_active < 1:
            raise OpError(f"backfill: --max-active is one or more; got {max_active}")
        bf_id = "bf-" + secrets.token_hex(4)
        bf = Backfill(bf_id, pile.name, [], max_active)

        async def done(req: RunRequest, stats: TaskMonitor | None, error: str | None) -> None:
            status = str(stats.status) if stats is not None else "cancelled"
            bf.active.discard(req.run_id)
            bf.finished[req.run_id] = status
            bf.changed.set()

        bf.requests = [
            RunRequest(
                pile=pile,
                trigger="backfill",
                params=dict(params or {}),
                source=source,
                overlap=Overlap.QUEUE,
                logical_time=t.timestamp(),
                backfill_id=bf_id,
                on_done=done,
            )
            for t in times
        ]
        self.all[bf_id] = bf
        for old in [k for k, b in self.all.items() if b.state != "running"][:-_KEEP_ENDED]:
            del self.all[old]  # remember the last few that ended, not all of them
        self.spawn(self._feed(bf))
        return bf

    async def _feed(self, bf: Backfill) -> None:
        while bf.state == "running":
            while bf.next_index < len(bf.requests) and len(bf.active) < bf.max_active:
                req = bf.requests[bf.next_index]
                bf.next_index += 1
                if self.submit(req) is None:
                    bf.skipped.append(req.run_id)
                    bf.finished[req.run_id] = "skipped"
                else:
                    bf.active.add(req.run_id)
            if bf.next_index >= len(bf.requests) and not bf.active:
                bf.state = "done"
                break
            bf.changed.clear()
            await bf.changed.wait()
        bf.changed.set()

    def cancel(self, bf_id: str) -> Backfill:
        bf = self.find(bf_id)
        if bf.state != "running":
            raise OpError(f"backfill {bf.id} is {bf.state}: nothing to cancel")
        bf.state = "cancelled"
        for run_id in list(bf.active):
            self.cancel_run(run_id)
        for req in bf.requests[bf.next_index :]:
            bf.finished[req.run_id] = "cancelled"
        bf.next_index = len(bf.requests)
        bf.changed.set()
        return bf

    def find(self, bf_id: str) -> Backfill:
        matches = [b for k, b in self.all.items() if k.startswith(bf_id)]
        if len(matches) != 1:
            known = ", ".join(self.all) or "none"
            what = "ambiguous" if matches else "unknown"
            raise OpError(f"{what} backfill {bf_id!r} (backfills since start: {known})")
        return matches[0]
