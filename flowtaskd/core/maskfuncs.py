"""Upstream flowtask's mask functions (its ``querysource`` date helpers), by name.

Each takes the run's ``now`` (an aware datetime in the task's zone) first, then upstream's
parameters with upstream's names and defaults; the results match upstream's own, called
at fixed dates. A ``value`` argument takes upstream's keywords (``now``, ``yesterday``,
``fdom``, ...), a date, or a date text. Pure: no clock here.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["MASK_FUNCTIONS", "MaskError"]


class MaskError(ValueError):
    """A mask that cannot be evaluated (unknown function, arguments that do not fit)."""


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _in_zone(now: datetime, zone: str | None) -> datetime:
    return now.astimezone(ZoneInfo(zone)) if zone else now


def _moment(now: datetime, value: Any, zone: str | None = None) -> datetime:
    """Upstream's ``value`` argument: a keyword (``now``, ``today``, ``yesterday``, ...), a
    date or datetime, or a date text (``2026-03-10``, ``03/10/2026``)."""
    now = _in_zone(now, zone)
    if value is None:
        return now
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(), now.tzinfo)
    text = str(value).strip()
    key = text.lower()
    keywords: dict[str, Callable[[], datetime]] = {
        "now": lambda: now,
        "today": lambda: now,
        "current_date": lambda: now,
        "yesterday": lambda: now - timedelta(days=1),
        "tomorrow": lambda: now + timedelta(days=1),
        "fdom": lambda: now.replace(day=1),
        "ldom": lambda: now.replace(day=calendar.monthrange(now.year, now.month)[1]),
        "fdcw": lambda: now - timedelta(days=now.weekday()),
    }
    if key in keywords:
        return keywords[key]()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%m/%d/%Y", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=now.tzinfo)
        except ValueError:
            continue
    raise MaskError(f"cannot read {text!r} as a date (use now, yesterday, or YYYY-MM-DD)")


def _fmt(moment: datetime | date, mask: str | None) -> Any:
    return moment.strftime(mask) if mask else moment


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _shift(moment: datetime, diff: int, mode: str) -> datetime:
    mode = mode.lower()
    if mode in ("months", "month"):
        return _add_months(moment, diff)
    if mode in ("years", "year"):
        return _add_months(moment, 12 * diff)
    units = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")
    if mode not in units:
        raise MaskError(f"mode {mode!r}: expected one of {', '.join(units)}, months, years")
    return moment + timedelta(**{mode: diff})


def _weekday(name: str) -> int:
    key = str(name).strip().lower()
    for i, day in enumerate(_WEEKDAYS):
        if key in (day, day[:3]):
            return i
    raise MaskError(f"day_of_week {name!r}: expected monday ... sunday")


def today(now: datetime, mask: str = "%m/%d/%Y", tz: str | None = None) -> str:
    return _in_zone(now, tz).strftime(mask)


def yesterday(now: datetime, mask: str = "%Y-%m-%d") -> str:
    return (now - timedelta(days=1)).strftime(mask)


def current_date(now: datetime, tz: str | None = None) -> date:
    return _in_zone(now, tz).date()


def current_timestamp(now: datetime, tz: str | None = None) -> datetime:
    return _in_zone(now, tz)


def now_(now: datetime, zone: str | None = None) -> datetime:
    return _in_zone(now, zone)


def date_diff(
    now: datetime,
    value: Any = "now",
    diff: int = 1,
    mode: str = "days",
    mask: str = "%Y-%m-%d",
    tz: str | None = None,
) -> str:
    return _shift(_moment(now, value, tz), -int(diff), mode).strftime(mask)


def date_sum(
    now: datetime,
    value: Any = "now",
    diff: int = 1,
    mode: str = "days",
    mask: str = "%Y-%m-%d",
    tz: str | None = None,
) -> str:
    return _shift(_moment(now, value, tz), int(diff), mode).strftime(mask)


def date_dow(
    now: datetime,
    value: Any = None,
    day_of_week: str = "monday",
    mask: str | None = None,
    tz: str | None = None,
) -> Any:
    """That weekday in the Monday-to-Sunday week of ``value`` (default: now)."""
    moment = _moment(now, value, tz)
    return _fmt(moment + timedelta(days=_weekday(day_of_week) - moment.weekday()), mask)


def date_diff_dow(
    now: datetime,
    value: Any = None,
    day_of_week: str = "monday",
    mask: str | None = None,
    tz: str | None = None,
    diff: int = 0,
) -> Any:
    """``date_dow`` minus ``diff`` days (upstream: ``monday, diff: 7`` is last week's Monday)."""
    moment = _moment(now, value, tz)
    start = moment + timedelta(days=_weekday(day_of_week) - moment.weekday())
    return _fmt(start - timedelta(days=int(diff)), mask)


def first_dow(now: datetime, value: Any = None, mask: str = "%Y-%m-%d") -> str:
    moment = _moment(now, value)
    return (moment - timedelta(days=moment.weekday())).strftime(mask)


def last_dow(now: datetime, value: Any = None, mask: str = "%Y-%m-%d") -> str:
    moment = _moment(now, value)
    return (moment + timedelta(days=6 - moment.weekday())).strftime(mask)


def fdow(now: datetime, value: Any = None, mask: str = "%Y-%m-%d", zone: str | None = None) -> str:
    return first_dow(_in_zone(now, zone), value, mask)


def ldow(now: datetime, value: Any = None, mask: str = "%Y-%m-%d", zone: str | None = None) -> str:
    return last_dow(_in_zone(now, zone), value, mask)


def first_day_of_month(now: datetime, value: Any = None, zone: str | None = None) -> datetime:
    return _moment(now, value, zone).replace(day=1)


def last_day_of_month(now: datetime, value: Any = None, zone: str | None = None) -> datetime:
    moment = _moment(now, value, zone)
    return moment.replace(day=calendar.monthrange(moment.year, moment.month)[1])


def last_day_of_previous_month(
    now: datetime, value: Any = None, zone: str | None = None
) -> datetime:
    return first_day_of_month(now, value, zone) - timedelta(days=1)


def fdom(now: datetime, value: Any = None, mask: str = "%Y-%m-%d", zone: str | None = None) -> str:
    return first_day_of_month(now, value, zone).strftime(mask)


def ldom(now: datetime, value: Any = None, mask: str = "%Y-%m-%d", zone: str | None = None) -> str:
    return last_day_of_month(now, value, zone).strftime(mask)


def ldopm(now: datetime, value: Any = None, mask: str = "%Y-%m-%d", zone: str | None = None) -> str:
    return last_day_of_previous_month(now, value, zone).strftime(mask)


def last_year(
    now: datetime, value: Any = None, mask: str = "%Y-%m-%d", zone: str | None = None
) -> str:
    return _add_months(_moment(now, value, zone), -12).strftime(mask)


def previous_month(now: datetime, mask: str = "%m/%d/%Y", months: int = 1) -> str:
    return _add_months(now, -int(months)).strftime(mask)


def days_ago(now: datetime, mask: str = "%m/%d/%Y", offset: int = 1) -> str:
    return (now - timedelta(days=int(offset))).strftime(mask)


def date_ago(
    now: datetime,
    value: Any = None,
    mask: str = "%m/%d/%Y",
    offset: int = 1,
    offset_type: str = "seconds",
) -> str:
    return _shift(_moment(now, value), -int(offset), offset_type).strftime(mask)


def date_after(
    now: datetime,
    value: Any = None,
    mask: str = "%m/%d/%Y",
    offset: int = 1,
    offset_type: str = "seconds",
) -> str:
    return _shift(_moment(now, value), int(offset), offset_type).strftime(mask)


def get_last_week_date(now: datetime, mask: str = "%Y-%m-%d") -> str:
    """The Saturday of last week (upstream's result)."""
    return (now - timedelta(days=now.weekday() + 2)).strftime(mask)


def _midnight(now: datetime, days: int = 0) -> datetime:
    return datetime.combine(now.date() + timedelta(days=days), time())


def midnight_current(now: datetime, mask: str = "%Y-%m-%dT%H:%M:%S", tz: str | None = None) -> str:
    return _midnight(_in_zone(now, tz)).strftime(mask)


def midnight_yesterday(
    now: datetime, mask: str = "%Y-%m-%d %H:%M:%S", tz: str | None = None
) -> str:
    return _midnight(_in_zone(now, tz), -1).strftime(mask)


def midnight_tomorrow(now: datetime, mask: str = "%Y-%m-%d %H:%M:%S", tz: str | None = None) -> str:
    return _midnight(_in_zone(now, tz), 1).strftime(mask)


def current_midnight(now: datetime, tz: str | None = None) -> datetime:
    return _midnight(_in_zone(now, tz))


def yesterday_midnight(now: datetime, tz: str | None = None) -> datetime:
    return _midnight(_in_zone(now, tz), -1)


def tomorrow_midnight(now: datetime, tz: str | None = None) -> datetime:
    return _midnight(_in_zone(now, tz), 1)


def yesterday_timestamp(now: datetime, zone: str | None = None) -> datetime:
    return _in_zone(now, zone) - timedelta(days=1)


def current_year(now: datetime) -> int:
    return now.year


def current_month(now: datetime) -> int:
    return now.month


def previous_year(now: datetime) -> int:
    return now.year - 1


def current_weekday(now: datetime, tz: str | None = None) -> int:
    return _in_zone(now, tz).weekday()


def current_day_of_week(now: datetime, tz: str | None = None) -> int:
    return _in_zone(now, tz).isoweekday()


def current_epoch(now: datetime, milliseconds: bool = False, tz: str | None = None) -> int:
    seconds = now.timestamp()
    return int(seconds * 1000) if milliseconds else int(seconds)


def yesterday_epoch(now: datetime, milliseconds: bool = False, tz: str | None = None) -> int:
    midnight = datetime.combine(now.date() - timedelta(days=1), time(), now.tzinfo)
    return int(midnight.timestamp() * (1000 if milliseconds else 1))


def format_date(
    now: datetime, value: Any, mask: str = "%Y-%m-%d %H:%M:%S", expected_mask: str = "%Y-%m-%d"
) -> str:
    return _moment(now, value).strftime(mask)


def to_date(now: datetime, value: Any, mask: str = "%Y-%m-%d %H:%M:%S", tz: Any = None) -> datetime:
    try:
        return datetime.strptime(str(value), mask).replace(tzinfo=ZoneInfo(tz or "UTC"))
    except ValueError:
        return _moment(now, value)


_UDF: dict[str, Callable[[datetime], Any]] = {
    "CURRENT_YEAR": current_year,
    "CURRENT_MONTH": current_month,
    "TODAY": today,
    "YESTERDAY": yesterday,
    "LAST_YEAR": last_year,
    "FDOM": fdom,
    "LDOM": ldom,
    "FDOW": fdow,
    "LDOW": ldow,
    "LDOPM": ldopm,
}


def to_udf(now: datetime, value: str, *args: Any, **kwargs: Any) -> Any:
    key = str(value).strip().upper()
    if key not in _UDF:
        raise MaskError(f"to_udf: {value!r} is not one of {', '.join(_UDF)}")
    return _UDF[key](now)


def filename(now: datetime, path: str) -> str:
    return os.path.basename(str(path))


def file_extension(now: datetime, path: str) -> str:
    return os.path.splitext(str(path))[1].lstrip(".").lower()


MASK_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "today": today,
    "yesterday": yesterday,
    "current_date": current_date,
    "get_current_date": current_date,
    "current_timestamp": current_timestamp,
    "now": now_,
    "date_diff": date_diff,
    "date_sum": date_sum,
    "date_dow": date_dow,
    "date_diff_dow": date_diff_dow,
    "first_dow": first_dow,
    "last_dow": last_dow,
    "fdow": fdow,
    "ldow": ldow,
    "fdom": fdom,
    "ldom": ldom,
    "ldopm": ldopm,
    "first_day_of_month": first_day_of_month,
    "last_day_of_month": last_day_of_month,
    "last_day_of_previous_month": last_day_of_previous_month,
    "last_year": last_year,
    "previous_month": previous_month,
    "days_ago": days_ago,
    "date_ago": date_ago,
    "date_after": date_after,
    "get_last_week_date": get_last_week_date,
    "midnight_current": midnight_current,
    "midnight": midnight_current,
    "midnight_yesterday": midnight_yesterday,
    "midnight_tomorrow": midnight_tomorrow,
    "current_midnight": current_midnight,
    "yesterday_midnight": yesterday_midnight,
    "tomorrow_midnight": tomorrow_midnight,
    "yesterday_timestamp": yesterday_timestamp,
    "current_year": current_year,
    "current_month": current_month,
    "previous_year": previous_year,
    "current_weekday": current_weekday,
    "current_day_of_week": current_day_of_week,
    "current_epoch": current_epoch,
    "yesterday_epoch": yesterday_epoch,
    "format_date": format_date,
    "to_date": to_date,
    "to_udf": to_udf,
    "filename": filename,
    "file_extension": file_extension,
}
"""Upstream's mask functions by name (each takes the run's ``now`` first)."""
