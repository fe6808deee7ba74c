"""Crontab parsing, next fire times and DST rules of flowtaskd.core.cron."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flowtaskd.core import cron
from flowtaskd.core.cron import (
    CronError,
    CronSpec,
    next_fire_times,
    parse_cron,
    parse_every,
    validate_timezone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expr: str, tz: str, after: str, n: int) -> list[str]:
    """Fire times as local ISO strings, for readable expectations."""
    return [d.isoformat() for d in next_fire_times(expr, tz, utc(after), n)]


# --- parsing -------------------------------------------------------------------------------


def test_star_fields_cover_their_ranges() -> None:
    spec = parse_cron("* * * * *")
    assert spec.minutes == frozenset(range(60))
    assert spec.hours == frozenset(range(24))
    assert spec.days == frozenset(range(1, 32))
    assert spec.months == frozenset(range(1, 13))
    assert spec.weekdays == frozenset(range(7))
    assert not spec.dom_restricted
    assert not spec.dow_restricted
    assert spec.expr == "* * * * *"
    assert str(spec) == "* * * * *"


@pytest.mark.parametrize(
    ("field", "attr", "expected"),
    [
        ("1,15,30", "minutes", {1, 15, 30}),
        ("10-13", "minutes", {10, 11, 12, 13}),
        ("*/15", "minutes", {0, 15, 30, 45}),
        ("1-10/3", "minutes", {1, 4, 7, 10}),
        ("50/5", "minutes", {50, 55}),  # N/step is N-max/step
        ("0-5,*/20,59", "minutes", {0, 1, 2, 3, 4, 5, 20, 40, 59}),
    ],
)
def test_minute_field_forms(field: str, attr: str, expected: set[int]) -> None:
    assert getattr(parse_cron(f"{field} * * * *"), attr) == frozenset(expected)


def test_hour_steps() -> None:
    assert parse_cron("0 */6 * * *").hours == frozenset({0, 6, 12, 18})
    assert parse_cron("0 9-17/4 * * *").hours == frozenset({9, 13, 17})


def test_month_names_are_case_insensitive_and_range() -> None:
    assert parse_cron("0 0 1 JAN,jul,Dec *").months == frozenset({1, 7, 12})
    assert parse_cron("0 0 1 mar-may *").months == frozenset({3, 4, 5})
    assert parse_cron("0 0 1 jan-dec/3 *").months == frozenset({1, 4, 7, 10})


def test_day_names_and_sunday_numbers() -> None:
    assert parse_cron("0 9 * * mon-fri").weekdays == frozenset({1, 2, 3, 4, 5})
    assert parse_cron("0 9 * * SUN,Sat").weekdays == frozenset({0, 6})
    assert parse_cron("0 9 * * 0").weekdays == frozenset({0})
    assert parse_cron("0 9 * * 7").weekdays == frozenset({0})
    assert parse_cron("0 9 * * 5-7").weekdays == frozenset({0, 5, 6})
    # A range may end on Sunday, by name or as 0.
    assert parse_cron("0 9 * * fri-sun").weekdays == frozenset({0, 5, 6})
    assert parse_cron("0 9 * * 5-0").weekdays == frozenset({0, 5, 6})
    assert parse_cron("0 9 * * mon-sun").weekdays == frozenset(range(7))
    assert parse_cron("0 9 * * */2").weekdays == frozenset({0, 2, 4, 6})


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, equivalent: str) -> None:
    spec, plain = parse_cron(macro), parse_cron(equivalent)
    assert spec.expr == macro
    fields = ("minutes", "hours", "days", "months", "weekdays", "dom_restricted")
    for name in (*fields, "dow_restricted"):
        assert getattr(spec, name) == getattr(plain, name), name


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute field '61' out of range 0-59"),
        ("0 24 * * *", "hour field '24' out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0' out of range 1-31"),
        ("0 0 32 * *", "day-of-month field '32' out of range 1-31"),
        ("0 0 * 13 *", "month field '13' out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8' out of range 0-7"),
        ("x * * * *", "minute field 'x' is not a number"),
        ("0 0 * foo *", "month field 'foo' is not a number or month name (jan-dec)"),
        ("0 0 * * funday", "day-of-week field 'funday' is not a number or day name"),
        ("1-x * * * *", "minute field '1-x': value 'x' is not a number"),
        ("*/x * * * *", "minute field '*/x': step 'x' is not a number"),
        ("*/0 * * * *", "minute field '*/0': step 0 out of range 1-60"),
        ("*/61 * * * *", "step 61 out of range 1-60"),
        ("10-5 * * * *", "range start 10 is after its end 5"),
        ("0 0 * * sat-mon", "range start 6 is after its end 1"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("-5 * * * *", "minute field '-5': value '' is not a number"),
        ("0 0 * jan-foo *", "value 'foo' is not a number or month name"),
        ("", "empty cron expression"),
        ("   ", "empty cron expression"),
        ("* * * *", "has 4 field(s); expected 5"),
        ("* * * * * * *", "has 7 fields; seconds and years are not supported"),
        ("0 0 9 * * *", "has 6 fields; seconds and years are not supported"),
        ("@reboot", "@reboot is not supported"),
        ("@fortnightly", "unknown cron macro '@fortnightly' (known: @yearly"),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 30,31 feb *", "never fires"),
        ("0 0 ٣ * *", "is not a number"),  # non-ASCII digits are not numbers
    ],
)
def test_bad_expressions_say_why(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_possible_sparse_days_are_accepted() -> None:
    assert parse_cron("0 0 29 2 *").days == frozenset({29})
    assert parse_cron("0 0 31 1-3 *").months == frozenset({1, 2, 3})
    # Both day fields restricted: the OR rule makes it fire on Mondays.
    assert parse_cron("0 0 30 2 1").dow_restricted


# --- the day-of-month / day-of-week rule ---------------------------------------------------


def test_or_rule_when_both_day_fields_are_restricted() -> None:
    # The 13th of each month, and every Friday.
    got = fires("0 0 13 * 5", "UTC", "2024-09-01T00:00:00", 6)
    assert got == [
        "2024-09-06T00:00:00+00:00",  # Friday
        "2024-09-13T00:00:00+00:00",  # Friday the 13th: once
        "2024-09-20T00:00:00+00:00",
        "2024-09-27T00:00:00+00:00",
        "2024-10-04T00:00:00+00:00",
        "2024-10-11T00:00:00+00:00",
    ]
    got = fires("0 0 13 * 5", "UTC", "2024-10-11T00:00:00", 2)
    assert got == ["2024-10-13T00:00:00+00:00", "2024-10-18T00:00:00+00:00"]  # a Sunday 13th


def test_and_rule_when_a_day_field_starts_with_star() -> None:
    # Vixie cron: "*/2" counts as unrestricted, so the fields AND: odd days that are Mondays.
    got = fires("0 0 */2 * 1", "UTC", "2024-01-01T00:00:00", 4)
    assert got == [
        "2024-01-15T00:00:00+00:00",
        "2024-01-29T00:00:00+00:00",
        "2024-02-05T00:00:00+00:00",
        "2024-02-19T00:00:00+00:00",
    ]
    assert fires("0 0 1 * *", "UTC", "2024-01-01T00:00:00", 2) == [
        "2024-02-01T00:00:00+00:00",
        "2024-03-01T00:00:00+00:00",
    ]
    assert fires("0 0 * * sun", "UTC", "2024-01-01T00:00:00", 1) == ["2024-01-07T00:00:00+00:00"]


def test_weekday_numbers_are_crontab_not_python() -> None:
    monday = next_fire_times("0 9 * * 1", "UTC", utc("2024-01-03T00:00:00"))[0]
    assert monday.weekday() == 0
    sundays = [next_fire_times(f"0 9 * * {d}", "UTC", utc("2024-01-03T00:00:00")) for d in (0, 7)]
    assert sundays[0] == sundays[1]
    assert sundays[0][0].isoweekday() == 7


# --- time zones and intervals --------------------------------------------------------------


def test_validate_timezone() -> None:
    assert validate_timezone("Europe/Berlin") == BERLIN
    assert validate_timezone("UTC").key == "UTC"
    for bad in ("Europe/Pariss", "", "/etc/passwd", "../zoneinfo/UTC", "localtime", "utc"):
        with pytest.raises(CronError, match=f"unknown timezone '{bad}'"):
            validate_timezone(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 2H 15M ", timedelta(hours=2, minutes=15)),
    ],
)
def test_parse_every(text: str, expected: timedelta) -> None:
    assert parse_every(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a duration like '30s'"),
        ("30", "add a unit: '30s' or '30m'"),
        ("0s", "must be greater than zero"),
        ("0h0m", "must be greater than zero"),
        ("5x", "invalid interval '5x'"),
        ("30m1h", "invalid interval"),  # largest unit first
        ("-5m", "invalid interval"),
        ("1.5h", "invalid interval"),
        ("999999999999d", "too large"),
    ],
)
def test_parse_every_rejects(text: str, message: str) -> None:
    with pytest.raises(CronError, match="invalid interval") as info:
        parse_every(text)
    assert message in str(info.value)


# --- next fire times -----------------------------------------------------------------------


def test_strictly_after_and_in_the_zone() -> None:
    after = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    got = next_fire_times("0 9 * * *", ZoneInfo("UTC"), after, n=2)
    assert got == [datetime(2024, 5, 2, 9, 0, tzinfo=UTC), datetime(2024, 5, 3, 9, 0, tzinfo=UTC)]
    got = next_fire_times("0 9 * * *", "UTC", after - timedelta(microseconds=1))
    assert got == [after]
    local = next_fire_times("0 9 * * *", "Europe/Berlin", after)[0]
    assert local.tzinfo == BERLIN
    assert (local.isoformat(), local.astimezone(UTC).hour) == ("2024-05-02T09:00:00+02:00", 7)


def test_after_in_another_zone_is_the_same_instant() -> None:
    after = datetime(2024, 5, 1, 8, 59, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2024-04-30 23:59Z
    assert fires("0 0 * * *", "UTC", "2024-04-30T23:59:00", 1) == [
        d.isoformat() for d in next_fire_times("0 0 * * *", "UTC", after)
    ]


def test_accepts_a_spec_and_rejects_bad_arguments() -> None:
    spec = parse_cron("@hourly")
    assert len(next_fire_times(spec, "UTC", utc("2024-01-01T00:00:00"), 3)) == 3
    assert next_fire_times(spec, "UTC", utc("2024-01-01T00:00:00"), 0) == []
    with pytest.raises(CronError, match="aware datetime"):
        next_fire_times(spec, "UTC", datetime(2024, 1, 1))
    with pytest.raises(CronError, match="unknown timezone"):
        next_fire_times(spec, "Mars/Olympus", utc("2024-01-01T00:00:00"))
    with pytest.raises(CronError, match="zero or more"):
        next_fire_times(spec, "UTC", utc("2024-01-01T00:00:00"), -1)
    with pytest.raises(CronError, match="out of range"):
        next_fire_times("99 * * * *", "UTC", utc("2024-01-01T00:00:00"))


def test_sparse_schedules_skip_ahead() -> None:
    assert fires("0 0 29 2 *", "UTC", "2095-01-01T00:00:00", 3) == [
        "2096-02-29T00:00:00+00:00",
        "2104-02-29T00:00:00+00:00",  # 2100 is not a leap year
        "2108-02-29T00:00:00+00:00",
    ]
    assert fires("@yearly", "UTC", "2024-06-01T00:00:00", 2) == [
        "2025-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
    ]
    assert fires("59 23 31 dec *", "UTC", "2024-12-31T23:59:00", 1) == ["2025-12-31T23:59:00+00:00"]


def test_a_hand_built_spec_that_never_fires_gives_up() -> None:
    never = CronSpec(
        expr="0 0 30 2 *",
        minutes=frozenset({0}),
        hours=frozenset({0}),
        days=frozenset({30}),
        months=frozenset({2}),
        weekdays=frozenset(range(7)),
        dom_restricted=True,
        dow_restricted=False,
    )
    assert next_fire_times(never, "UTC", utc("2024-01-01T00:00:00"), 2) == []
    near_the_end = datetime(9998, 12, 31, 23, 0, tzinfo=UTC)
    assert next_fire_times("0 0 * * *", "UTC", near_the_end) == []


# --- daylight saving time ------------------------------------------------------------------


def test_berlin_spring_forward_daily_job_fires_once_after_the_gap() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2024-03-29T12:00:00", 3) == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # 02:30 does not exist: first instant after the gap
        "2024-04-01T02:30:00+02:00",
    ]
    first_after_gap = next_fire_times("30 2 * * *", BERLIN, utc("2024-03-30T12:00:00"))[0]
    assert first_after_gap.astimezone(UTC) == utc("2024-03-31T01:00:00")
    # After the gap instant itself, the next fire is the next day.
    assert fires("30 2 * * *", "Europe/Berlin", "2024-03-31T01:00:00", 1) == [
        "2024-04-01T02:30:00+02:00"
    ]


def test_berlin_fall_back_daily_job_fires_once_at_first_occurrence() -> None:
    got = next_fire_times("30 2 * * *", BERLIN, utc("2024-10-26T12:00:00"), 2)
    assert [d.isoformat() for d in got] == [
        "2024-10-27T02:30:00+02:00",  # first pass, CEST
        "2024-10-28T02:30:00+01:00",
    ]
    assert got[0].astimezone(UTC) == utc("2024-10-27T00:30:00")
    # Asked during the second pass of 02:xx, the 02:30 of that day has already fired.
    assert fires("30 2 * * *", "Europe/Berlin", "2024-10-27T01:10:00", 1) == [
        "2024-10-28T02:30:00+01:00"
    ]


def test_berlin_hourly_and_quarter_hourly_jobs_across_both_transitions() -> None:
    spring = next_fire_times("*/15 * * * *", BERLIN, utc("2024-03-31T00:20:00"), 4)
    assert [d.astimezone(UTC).strftime("%H:%M") for d in spring] == [
        "00:30",
        "00:45",
        "01:00",  # 02:00-02:45 skipped, fire once at 03:00 CEST together with 03:00 itself
        "01:15",
    ]
    fall = next_fire_times("0 * * * *", BERLIN, utc("2024-10-26T22:30:00"), 4)
    assert [d.isoformat() for d in fall] == [
        "2024-10-27T01:00:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T03:00:00+01:00",  # no fire in the second pass of 02:00 (01:00Z)
        "2024-10-27T04:00:00+01:00",
    ]
    assert fires("*/15 * * * *", "Europe/Berlin", "2024-10-27T01:10:00", 1) == [
        "2024-10-27T03:00:00+01:00"
    ]


def test_new_york_both_transitions() -> None:
    assert fires("30 2 * * *", "America/New_York", "2024-03-09T12:00:00", 3) == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
        "2024-03-12T02:30:00-04:00",
    ]
    assert fires("30 2 * * *", "America/New_York", "2024-11-02T12:00:00", 2) == [
        "2024-11-03T02:30:00-05:00",  # 02:30 exists once on fall-back day in New York
        "2024-11-04T02:30:00-05:00",
    ]
    got = next_fire_times("30 1 * * *", NEW_YORK, utc("2024-11-02T12:00:00"), 2)
    assert [d.isoformat() for d in got] == [
        "2024-11-03T01:30:00-04:00",  # first of the two 01:30s, once
        "2024-11-04T01:30:00-05:00",
    ]
    assert got[0].astimezone(UTC) == utc("2024-11-03T05:30:00")


def test_a_gap_at_midnight_and_a_skipped_day() -> None:
    # Sao Paulo skipped 00:00-00:59 on 2018-11-04; midnight jobs fired at 01:00.
    assert fires("@daily", "America/Sao_Paulo", "2018-11-03T12:00:00", 2) == [
        "2018-11-04T01:00:00-02:00",
        "2018-11-05T00:00:00-02:00",
    ]
    # Samoa skipped 2011-12-30 entirely; its 09:00 fired when the day after began.
    assert fires("0 9 * * *", "Pacific/Apia", "2011-12-29T12:00:00", 3) == [
        "2011-12-29T09:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T09:00:00+14:00",
    ]


def test_the_core_imports_no_runtime() -> None:
    tree = ast.parse(inspect.getsource(cron))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    allowed = {"__future__", "calendar", "re", "collections.abc", "dataclasses", "datetime"}
    assert imported <= allowed | {"zoneinfo"}, imported


# --- properties ----------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo"]
_RANGES = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 7)}


@st.composite
def _field(draw: st.DrawFn, lo: int, hi: int) -> str:
    items = []
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(a, hi))
        step = draw(st.integers(1, hi - lo + 1))
        item = draw(st.sampled_from(["*", f"*/{step}", f"{a}", f"{a}-{b}", f"{a}-{b}/{step}"]))
        items.append(item)
    return ",".join(items)


@st.composite
def _expressions(draw: st.DrawFn) -> str:
    parts = [draw(_field(lo, hi)) for lo, hi in _RANGES.values()]
    if draw(st.booleans()):  # keep many examples dense enough to cross DST transitions
        parts[2:] = ["*", "*", "*"]
    return " ".join(parts)


_AFTERS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=150, deadline=None)
@given(expr=_expressions(), zone_name=st.sampled_from(ZONES), after=_AFTERS, n=st.integers(1, 30))
def test_fire_times_increase_follow_after_and_match_the_spec(
    expr: str, zone_name: str, after: datetime, n: int
) -> None:
    try:
        spec = parse_cron(expr)
    except CronError:
        assume(False)
        raise
    zone = ZoneInfo(zone_name)
    got = next_fire_times(spec, zone, after, n)
    assert len(got) == n
    stamps = [d.timestamp() for d in got]
    assert stamps[0] > after.timestamp()
    assert all(a < b for a, b in pairwise(stamps))
    for fire in got:
        assert fire.tzinfo is zone
        assert (fire.second, fire.microsecond) == (0, 0)
        local = fire.astimezone(zone)
        if spec.matches(local):
            # A repeated wall time fires at its first occurrence only.
            assert local.replace(fold=0).timestamp() == fire.timestamp()
        else:
            # Otherwise it is the first instant after a skipped stretch of wall time.
            before = (fire - timedelta(seconds=1)).astimezone(zone)
            assert before.utcoffset() != local.utcoffset(), fire


def _oracle(spec: CronSpec, zone: ZoneInfo, after: datetime, minutes: int) -> list[datetime]:
    """Minute by minute over real instants, applying the documented DST rules directly."""
    out = []
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for i in range(minutes):
        instant = start + timedelta(minutes=i)
        local = instant.astimezone(zone)
        first_pass = local.replace(fold=0).timestamp() == instant.timestamp()
        hit = spec.matches(local) and first_pass
        now_offset = local.utcoffset()
        before_offset = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        assert now_offset is not None and before_offset is not None
        jump = now_offset - before_offset
        if jump > timedelta(0):  # a gap just ended: its skipped wall times fire now
            wall = local.replace(tzinfo=None)
            skipped = [
                wall - jump + timedelta(minutes=k) for k in range(jump // timedelta(minutes=1))
            ]
            hit = hit or any(spec.matches(w) for w in skipped)
        if hit:
            out.append(instant)
    return out


_TRANSITIONS = [
    ("Europe/Berlin", "2024-03-31T01:00:00"),
    ("Europe/Berlin", "2024-10-27T01:00:00"),
    ("America/New_York", "2024-03-10T07:00:00"),
    ("America/New_York", "2024-11-03T06:00:00"),
    ("Australia/Lord_Howe", "2024-04-06T15:00:00"),  # 30-minute shift
    ("Australia/Lord_Howe", "2024-10-05T15:30:00"),
    ("UTC", "2024-02-29T00:00:00"),
]


@settings(max_examples=80, deadline=None)
@given(
    expr=_expressions(),
    where=st.sampled_from(_TRANSITIONS),
    offset_minutes=st.integers(-7 * 60, 60),
)
def test_matches_a_minute_by_minute_oracle_around_transitions(
    expr: str, where: tuple[str, str], offset_minutes: int
) -> None:
    try:
        spec = parse_cron(expr)
    except CronError:
        assume(False)
        raise
    zone = ZoneInfo(where[0])
    after = utc(where[1]) + timedelta(minutes=offset_minutes, seconds=17)
    window = 8 * 60  # the transition is always inside
    expected = _oracle(spec, zone, after, window)
    got = next_fire_times(spec, zone, after, len(expected) + 1)
    end = after + timedelta(minutes=window)
    # Compare instants: == between zones is False for a wall time in a fold (PEP 495).
    assert [d.timestamp() for d in got if d.timestamp() <= end.timestamp()] == [
        d.timestamp() for d in expected
    ]
