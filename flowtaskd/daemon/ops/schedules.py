"""``next``: the next fire times of a cron expression, an ``every`` interval or a task.

``next 5m`` (or ``every:5m``, ``every 90s``) is an interval on a grid anchored at
``after``; anything else is a crontab expression or macro. :func:`task_next` lists a
loaded task's schedules (a running daemon's scheduler), each with its next fire times and
whether it is paused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from flowtaskd.core.cron import CronError, next_fire_times, parse_cron, validate_timezone
from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.schedule.scheduler import ScheduleEntry

__all__ = ["is_schedule", "next_times", "parse_every", "task_next"]

_EVERY = re.compile(r"^(?:every[: ]\s*)?(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_every(text: str) -> float | None:
    """Seconds of ``5m`` / ``every:5m`` / ``every 90s``; None if ``text`` is not one."""
    m = _EVERY.match(text.strip())
    if m is None or (m.group(2) is None and not text.strip().lower().startswith("every")):
        return None
    seconds = float(m.group(1)) * _UNIT[m.group(2).lower() if m.group(2) else None]
    if seconds <= 0:
        raise OpError(f"an interval is more than zero seconds; got {text!r}")
    return seconds


def is_schedule(text: str) -> bool:
    """Whether ``text`` reads as a cron expression or interval rather than a task name."""
    return " " in text.strip() or text.startswith("@") or parse_every(text) is not None


def next_times(expr: str, after: datetime, n: int = 5, tz: str = "UTC") -> list[datetime]:
    """The next ``n`` fire times of a cron expression or interval, strictly after ``after``."""
    if n < 1:
        raise OpError(f"next: -n is one or more; got {n}")
    try:
        zone = validate_timezone(tz)
        if after.tzinfo is None:
            after = after.replace(tzinfo=zone)
        every = parse_every(expr)
        if every is not None:
            step = timedelta(seconds=every)
            return [(after + step * (i + 1)).astimezone(zone) for i in range(n)]
        return next_fire_times(parse_cron(expr), zone, after, n)
    except CronError as exc:
        raise OpError(str(exc)) from None


def task_next(
    task: str,
    entries: Iterable[ScheduleEntry],
    paused: Mapping[str, float],
    after: datetime,
    n: int = 5,
) -> dict[str, Any]:
    """A task's schedules with their next ``n`` fire times and pause state."""
    mine = [e for e in entries if e.task == task]
    task_paused = f"task:{task}" in paused
    schedules = []
    for e in sorted(mine, key=lambda e: e.id):
        expr = e.cron if e.cron is not None else f"every:{e.every:g}s"
        times = next_times(expr, after, n, e.timezone)
        schedules.append(
            {
                "id": e.id,
                "when": e.when,
                "timezone": e.timezone,
                "paused": task_paused or f"schedule:{e.id}" in paused,
                "next": [t.isoformat() for t in times],
            }
        )
    return {"task": task, "paused": task_paused, "schedules": schedules}
