"""Crontab meaning and next fire times, as Vixie cron and cronie define them.

Pure: no scheduler, no asyncio, no clock. The daemon's apscheduler adapter
(:mod:`flowtaskd.daemon.schedule.triggers`) asks :func:`next_fire_times` and nothing else.

Expressions have five fields, ``minute hour day-of-month month day-of-week``:

* ``*``, lists ``1,15``, ranges ``1-5``, steps ``*/5`` and ``1-10/2``; ``N/step`` means
  ``N-max/step`` (as cronie, croniter and apscheduler read it).
* month names ``jan``-``dec`` and day names ``sun``-``sat``, case-insensitive, also in ranges
  (``mon-fri``). Day-of-week 0 and 7 are both Sunday; a range may end on Sunday
  (``fri-sun``, ``5-0`` and ``5-7`` all mean Friday to Sunday). Other ranges do not wrap.
* macros ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight``
  ``@hourly``. ``@reboot`` and 6/7-field expressions (seconds, years) are rejected.
* the OR rule: when day-of-month and day-of-week are both restricted, a day matches if
  either matches. As in Vixie cron, a field is *unrestricted* when its text starts with
  ``*``; so ``0 0 */2 * 1`` means "odd days that are Mondays", not "odd days or Mondays".
* an expression that can never fire (``0 0 30 2 *``, ``0 0 31 4,6 *``) is rejected by
  :func:`parse_cron` with a "never fires" :class:`CronError`. :func:`next_fire_times` on a
  hand-built :class:`CronSpec` that never fires gives up after searching
  ``_HORIZON_YEARS`` years without a fire and returns fewer results than asked (maybe none).

A fire time is a **wall-clock time** in the schedule's time zone; each one fires once, at
one instant. Daylight saving time:

* **Spring forward (skipped hour).** A wall-clock time that does not exist fires at the first
  instant after the gap: ``30 2 * * *`` in Europe/Berlin on the last Sunday of March fires at
  03:00 CEST (01:00 UTC). Several skipped times (``*/15 * * * *`` at 02:00-02:45) fire once
  together at that instant, which is also 03:00's own fire: an instant fires at most once.
* **Fall back (repeated hour).** A wall-clock time that occurs twice fires once, at its first
  occurrence (``fold=0``). This holds for every job, including ``0 * * * *`` and
  ``* * * * *``: they do not fire during the second pass of the repeated hour (cronie fires
  wildcard-hour jobs in both passes; we prefer one rule with no exceptions).

So a daily job fires exactly once on both DST days, and results are strictly increasing
instants. Fixed-offset zones (UTC) have no gaps or folds.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MACROS",
    "CronError",
    "CronSpec",
    "next_fire_times",
    "parse_cron",
    "parse_every",
    "validate_timezone",
]

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Longest stretch searched without a fire before giving up. A possible expression always
# fires within it (the sparsest, Feb 29 on a given weekday, repeats within ~40 years).
_HORIZON_YEARS = 50

_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # by month, leap years
_NUMBER = re.compile(r"[0-9]+")
_EVERY = re.compile(r"(?:([0-9]+)d)?\s*(?:([0-9]+)h)?\s*(?:([0-9]+)m)?\s*(?:([0-9]+)s)?")


class CronError(ValueError):
    """An invalid cron expression, time zone or interval; ``str()`` is the user-facing why."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    lo: int
    hi: int  # highest value accepted in text (7 for day-of-week)
    star_hi: int  # highest value ``*`` and ``N/step`` reach (6 for day-of-week)
    names: Mapping[str, int]
    names_hint: str = ""


_FIELDS = (
    _Field("minute", 0, 59, 59, {}),
    _Field("hour", 0, 23, 23, {}),
    _Field("day-of-month", 1, 31, 31, {}),
    _Field("month", 1, 12, 12, _MONTH_NAMES, " or month name (jan-dec)"),
    _Field("day-of-week", 0, 7, 6, _DAY_NAMES, " or day name (sun-sat)"),
)


@dataclass(frozen=True)
class CronSpec:
    """A parsed crontab expression. Weekdays are 0=Sunday..6 (7 is folded to 0)."""

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool

    def __str__(self) -> str:
        return self.expr

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` is a firing day (month, day-of-month/day-of-week with the OR rule)."""
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        return dom and dow

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock time ``wall`` (its tzinfo is ignored) matches every field."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.matches_day(wall)


def parse_cron(expr: str) -> CronSpec:
    """Parse a 5-field crontab expression or macro; raise :class:`CronError` saying why not."""
    text = expr.strip()
    if not text:
        raise CronError("empty cron expression")
    body = text
    if text.startswith("@"):
        key = text.lower()
        if key == "@reboot":
            raise CronError(
                "@reboot is not supported: a schedule fires at clock times, "
                "and flowtaskd has no boot event"
            )
        if key not in MACROS:
            raise CronError(f"unknown cron macro '{text}' (known: {', '.join(MACROS)})")
        body = MACROS[key]
    parts = body.split()
    if len(parts) in (6, 7):
        raise CronError(
            f"cron expression '{text}' has {len(parts)} fields; seconds and years are not "
            "supported: use 5 fields (minute hour day-of-month month day-of-week)"
        )
    if len(parts) != 5:
        raise CronError(
            f"cron expression '{text}' has {len(parts)} field(s); expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
    )
    spec = CronSpec(
        expr=text,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        dom_restricted=not parts[2].startswith("*"),
        dow_restricted=not parts[4].startswith("*"),
    )
    if not (spec.dom_restricted and spec.dow_restricted) and not any(
        d <= _MAX_DAYS[m] for m in months for d in days
    ):
        raise CronError(
            f"cron expression '{text}' never fires: day-of-month '{parts[2]}' "
            f"does not exist in month '{parts[3]}'"
        )
    return spec


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field.name} field '{text}' has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            step = _parse_number(step_text, field, item, what="step")
            if not 1 <= step <= field.star_hi - field.lo + 1:
                raise CronError(
                    f"{field.name} field '{item}': step {step} out of range "
                    f"1-{field.star_hi - field.lo + 1}"
                )
        if base == "*":
            lo, hi = field.lo, field.star_hi
        elif "-" in base:
            first, _, last = base.partition("-")
            lo, hi = _parse_value(first, field, item), _parse_value(last, field, item)
            if field.name == "day-of-week" and hi == 0 and lo > 0:
                hi = 7  # "fri-sun", "5-0": ranges may end on Sunday
            if lo > hi:
                raise CronError(
                    f"{field.name} field '{item}': range start {lo} is after its end {hi} "
                    "(ranges do not wrap)"
                )
        else:
            lo = _parse_value(base, field, item)
            hi = max(lo, field.star_hi) if slash else lo
        values.update(range(lo, hi + 1, step))
    if field.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _parse_value(token: str, field: _Field, item: str) -> int:
    named = field.names.get(token.lower())
    if named is not None:
        return named
    value = _parse_number(token, field, item, what="value")
    if not field.lo <= value <= field.hi:
        raise CronError(f"{field.name} field '{token}' out of range {field.lo}-{field.hi}")
    return value


def _parse_number(token: str, field: _Field, item: str, what: str) -> int:
    if not _NUMBER.fullmatch(token):
        hint = field.names_hint if what == "value" else ""
        shown = f"'{item}': {what} '{token}'" if token != item else f"'{token}'"
        raise CronError(f"{field.name} field {shown} is not a number{hint}")
    return int(token)


def validate_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``"Europe/Berlin"``, ``"UTC"``); :class:`CronError` if unknown."""
    if name in ("localtime", "posixrules"):  # host files, not portable zone names
        raise CronError(f"unknown timezone '{name}' (use an IANA name such as 'Europe/Paris')")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown timezone '{name}' (use an IANA name such as 'Europe/Paris' or 'UTC')"
        ) from None


def parse_every(text: str) -> timedelta:
    """``"90s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` -> a positive :class:`~datetime.timedelta`.

    Units, largest first: ``d`` (24 hours), ``h``, ``m``, ``s``; case-insensitive.
    """
    raw = text.strip().lower()
    match = _EVERY.fullmatch(raw)
    if not raw or match is None or not any(match.groups()):
        hint = f" (add a unit: '{raw}s' or '{raw}m')" if _NUMBER.fullmatch(raw) else ""
        raise CronError(
            f"invalid interval '{text}': expected a duration like '30s', '5m', '1h30m' or "
            f"'1d'{hint}"
        )
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    try:
        every = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise CronError(f"invalid interval '{text}': too large") from None
    if every <= timedelta(0):
        raise CronError(f"invalid interval '{text}': must be greater than zero")
    return every


def next_fire_times(
    spec: CronSpec | str, tz: str | tzinfo, after: datetime, n: int = 1
) -> list[datetime]:
    """The next ``n`` fire times strictly after the aware instant ``after``.

    Results are aware datetimes in ``tz``, strictly increasing as instants. DST follows the
    rules in the module docstring. Fewer than ``n`` come back only for a hand-built spec that
    never fires (or past year 9998).
    """
    if isinstance(spec, str):
        spec = parse_cron(spec)
    zone = validate_timezone(tz) if isinstance(tz, str) else tz
    if after.tzinfo is None or after.utcoffset() is None:
        raise CronError(f"'after' must be an aware datetime, got naive {after.isoformat()}")
    if n < 0:
        raise CronError(f"n must be zero or more, got {n}")
    after_utc = after.astimezone(UTC)
    start = after_utc.astimezone(zone).replace(tzinfo=None, fold=0, second=0, microsecond=0)
    found: list[datetime] = []
    last = after_utc
    if n == 0:
        return found
    for wall in _candidates(spec, start):
        instant = _resolve(wall, zone)
        if instant <= last:  # before ``after``, or a skipped time that joined an earlier fire
            continue
        found.append(instant.astimezone(zone))
        last = instant
        if len(found) == n:
            break
    return found


def _candidates(spec: CronSpec, start: datetime) -> Iterator[datetime]:
    """Matching naive wall-clock times >= ``start``, in order; skips whole months and days."""
    minutes, hours, months = sorted(spec.minutes), sorted(spec.hours), sorted(spec.months)
    start_day = start.date()
    last_hit_year = year = start.year
    while year <= min(last_hit_year + _HORIZON_YEARS, MAXYEAR - 1):
        for month in months:
            if year == start.year and month < start.month:
                continue
            first = start.day if (year, month) == (start.year, start.month) else 1
            for day_number in range(first, calendar.monthrange(year, month)[1] + 1):
                day = date(year, month, day_number)
                if not spec.matches_day(day):
                    continue
                for hour in hours:
                    if day == start_day and hour < start.hour:
                        continue
                    for minute in minutes:
                        if day == start_day and hour == start.hour and minute < start.minute:
                            continue
                        last_hit_year = year
                        yield datetime(year, month, day_number, hour, minute)
        year += 1


def _resolve(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant a wall-clock time fires at: first occurrence, or the end of a gap."""
    before = wall.replace(tzinfo=zone, fold=0).utcoffset()
    after = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert before is not None and after is not None  # zone is a real tzinfo
    if before >= after:  # ordinary time (equal) or repeated hour (fold=0 is the first pass)
        return (wall - before).replace(tzinfo=UTC)
    # Skipped: the offset jumps from ``before`` to ``after`` somewhere in [lo, hi].
    lo = (wall - after).replace(tzinfo=UTC)
    hi = (wall - before).replace(tzinfo=UTC)
    second = timedelta(seconds=1)
    while hi - lo > second:
        mid = lo + second * ((hi - lo) // second // 2)
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi
