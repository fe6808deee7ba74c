"""apscheduler 3.x triggers that keep crontab meaning exactly.

apscheduler's own ``CronTrigger.from_crontab`` numbers weekdays from Monday (``0 9 * * 1``
would fire on Tuesdays) and has its own DST behaviour, so the scheduler never uses it.
:class:`CrontabTrigger` asks :func:`flowtaskd.core.cron.next_fire_times` instead, so a
schedule means what crontab(5) says and DST follows the rules in :mod:`flowtaskd.core.cron`.
:class:`EveryTrigger` is a fixed interval (``every: 5m``) on a grid anchored at a start time.

Both follow apscheduler's contract for ``get_next_fire_time(previous_fire_time, now)``: with
no previous fire, the first fire time at or after ``now``; otherwise the first one strictly
after ``previous_fire_time`` (which may lie well before ``now``: that is how apscheduler finds
missed runs). ``None`` means "never again". Jitter, as apscheduler applies it, adds a random
0..``jitter`` seconds to each fire time; apscheduler hands the jittered time back as
``previous_fire_time``, so keep ``jitter`` below the gap between fires or some are skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from apscheduler.triggers.base import BaseTrigger

from flowtaskd.core.cron import CronError, CronSpec, next_fire_times, parse_cron, validate_timezone

__all__ = ["CrontabTrigger", "EveryTrigger"]

_TICK = timedelta(microseconds=1)


def _check_jitter(jitter: float | None) -> float | None:
    if jitter is not None and jitter < 0:
        raise CronError(f"jitter must be zero or more seconds, got {jitter}")
    return jitter or None


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # apscheduler ships no type hints
    """Fires at the times a 5-field crontab expression (or ``@daily``-style macro) names."""

    def __init__(
        self, expr: str | CronSpec, timezone: str = "UTC", jitter: float | None = None
    ) -> None:
        self.spec = parse_cron(expr) if isinstance(expr, str) else expr
        self.timezone = validate_timezone(timezone)
        self.jitter = _check_jitter(jitter)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        after = previous_fire_time if previous_fire_time is not None else now - _TICK
        found = next_fire_times(self.spec, self.timezone, after, n=1)
        if not found:
            return None
        return cast(datetime, self._apply_jitter(found[0], self.jitter, now))

    def __str__(self) -> str:
        return f"crontab[{self.spec.expr}, {self.timezone.key}]"

    def __repr__(self) -> str:
        jitter = f", jitter={self.jitter!r}" if self.jitter else ""
        return f"<CrontabTrigger ({self.spec.expr!r}, timezone={self.timezone.key!r}{jitter})>"


class EveryTrigger(BaseTrigger):  # type: ignore[misc]  # apscheduler ships no type hints
    """Fires every ``every`` (absolute time: ``1d`` is 24 hours, not "same time tomorrow").

    Fire times lie on the grid ``start + k * every`` (k >= 0). Without ``start`` the grid is
    anchored at the ``now`` of the first :meth:`get_next_fire_time` call (apscheduler makes it
    when the job is added) and the first fire is one interval later. A naive ``start`` is a
    wall-clock time in ``timezone``. Because the grid is fixed, jitter never makes it drift.
    """

    def __init__(
        self,
        every: timedelta,
        timezone: str = "UTC",
        start: datetime | None = None,
        jitter: float | None = None,
    ) -> None:
        if every <= timedelta(0):
            raise CronError(f"interval must be greater than zero, got {every}")
        self.every = every
        self.timezone = validate_timezone(timezone)
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=self.timezone)
        self.start: datetime | None = start
        self.jitter = _check_jitter(jitter)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if self.start is None:
            self.start = (now + self.every).astimezone(self.timezone)
        if previous_fire_time is None:
            fire = self._grid_at_or_after(now)
        else:
            fire = self._grid_at_or_after(previous_fire_time + _TICK)
        fire = fire.astimezone(self.timezone)
        return cast(datetime, self._apply_jitter(fire, self.jitter, now))

    def _grid_at_or_after(self, moment: datetime) -> datetime:
        assert self.start is not None
        start = self.start.astimezone(UTC)
        behind = start - moment.astimezone(UTC)
        if behind >= timedelta(0):
            return start
        steps = -(behind // self.every)  # ceil((moment - start) / every), exact integers
        return start + steps * self.every

    def __str__(self) -> str:
        return f"every[{self.every}, {self.timezone.key}]"

    def __repr__(self) -> str:
        start = self.start.isoformat() if self.start else None
        jitter = f", jitter={self.jitter!r}" if self.jitter else ""
        return (
            f"<EveryTrigger (every={self.every!r}, timezone={self.timezone.key!r}, "
            f"start={start!r}{jitter})>"
        )
