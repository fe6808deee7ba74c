"""apscheduler adapters in flowtaskd.daemon.schedule.triggers keep crontab meaning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from flowtaskd.core.cron import CronError, CronSpec, parse_cron
from flowtaskd.daemon.schedule.triggers import CrontabTrigger, EveryTrigger

BERLIN = ZoneInfo("Europe/Berlin")
WEDNESDAY = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)


def _job() -> None:
    """A job target; never run by these tests."""


def _next(trigger: CrontabTrigger, previous: datetime | None, now: datetime) -> datetime:
    fire = trigger.get_next_fire_time(previous, now)
    assert fire is not None
    return fire


# --- CrontabTrigger ------------------------------------------------------------------------


def test_is_an_apscheduler_trigger() -> None:
    trigger = CrontabTrigger("0 9 * * 1")
    assert isinstance(trigger, BaseTrigger)
    assert trigger.spec == parse_cron("0 9 * * 1")
    assert trigger.timezone.key == "UTC"


def test_weekday_1_is_monday_unlike_apscheduler_from_crontab() -> None:
    ours = _next(CrontabTrigger("0 9 * * 1"), None, WEDNESDAY)
    assert ours == datetime(2024, 1, 8, 9, 0, tzinfo=UTC)
    assert ours.weekday() == 0  # Monday
    theirs = CronTrigger.from_crontab("0 9 * * 1", timezone="UTC").get_next_fire_time(
        None, WEDNESDAY
    )
    assert theirs.weekday() == 1  # apscheduler 3.x counts from Monday=0: a Tuesday


def test_weekday_0_and_7_are_both_sunday() -> None:
    sunday = datetime(2024, 1, 7, 9, 0, tzinfo=UTC)
    assert CrontabTrigger("0 9 * * 0").get_next_fire_time(None, WEDNESDAY) == sunday
    assert CrontabTrigger("0 9 * * 7").get_next_fire_time(None, WEDNESDAY) == sunday
    assert CrontabTrigger("0 9 * * sun").get_next_fire_time(None, WEDNESDAY) == sunday


def test_first_fire_is_at_or_after_now() -> None:
    trigger = CrontabTrigger("0 9 * * *")
    nine = datetime(2024, 1, 3, 9, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, nine) == nine
    later = nine + timedelta(microseconds=1)
    assert trigger.get_next_fire_time(None, later) == nine + timedelta(days=1)


def test_next_fire_is_strictly_after_previous_even_when_now_is_later() -> None:
    trigger = CrontabTrigger("0 9 * * *")
    previous = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    now = datetime(2024, 1, 5, 12, 0, tzinfo=UTC)  # apscheduler catching up on missed runs
    assert trigger.get_next_fire_time(previous, now) == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


def test_time_zone_and_dst_follow_the_cron_module() -> None:
    trigger = CrontabTrigger("30 2 * * *", timezone="Europe/Berlin")
    now = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)
    first = _next(trigger, None, now)
    assert first.tzinfo == BERLIN
    assert first.isoformat() == "2024-03-31T03:00:00+02:00"  # 02:30 skipped: after the gap
    second = _next(trigger, first, first)
    assert second.isoformat() == "2024-04-01T02:30:00+02:00"


def test_jitter_adds_up_to_jitter_seconds() -> None:
    trigger = CrontabTrigger("0 9 * * *", jitter=30)
    base = datetime(2024, 1, 4, 9, 0, tzinfo=UTC)
    got = {_next(trigger, None, WEDNESDAY) for _ in range(50)}
    assert all(base <= t <= base + timedelta(seconds=30) for t in got)
    assert len(got) > 1
    # A jittered previous fire still leads to the next scheduled time.
    assert _next(trigger, max(got), max(got)) >= base + timedelta(days=1)
    assert CrontabTrigger("0 9 * * *", jitter=0).get_next_fire_time(None, WEDNESDAY) == base


def test_a_spec_that_never_fires_returns_none() -> None:
    never = CronSpec(
        expr="0 0 31 2 *",
        minutes=frozenset({0}),
        hours=frozenset({0}),
        days=frozenset({31}),
        months=frozenset({2}),
        weekdays=frozenset(range(7)),
        dom_restricted=True,
        dow_restricted=False,
    )
    assert CrontabTrigger(never).get_next_fire_time(None, WEDNESDAY) is None


def test_bad_input_raises_cron_error() -> None:
    with pytest.raises(CronError, match="minute field '61' out of range 0-59"):
        CrontabTrigger("61 * * * *")
    with pytest.raises(CronError, match="unknown timezone 'Europe/Pariss'"):
        CrontabTrigger("@daily", timezone="Europe/Pariss")
    with pytest.raises(CronError, match="jitter"):
        CrontabTrigger("@daily", jitter=-1)


def test_crontab_str_and_repr() -> None:
    trigger = CrontabTrigger("0 9 * * mon-fri", timezone="Europe/Berlin", jitter=5)
    assert str(trigger) == "crontab[0 9 * * mon-fri, Europe/Berlin]"
    assert repr(trigger) == (
        "<CrontabTrigger ('0 9 * * mon-fri', timezone='Europe/Berlin', jitter=5)>"
    )


async def test_apscheduler_schedules_and_catches_up_with_it() -> None:
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.start(paused=True)
    try:
        job: Job = scheduler.add_job(_job, CrontabTrigger("0 9 * * 1", timezone="Europe/Berlin"))
        assert job.next_run_time.weekday() == 0
        assert (job.next_run_time.hour, job.next_run_time.minute) == (9, 0)
        missed = job._get_run_times(job.next_run_time + timedelta(weeks=2, hours=1))
        assert [t.isoformat()[:10] for t in missed] == [
            (job.next_run_time + timedelta(weeks=k)).isoformat()[:10] for k in range(3)
        ]
    finally:
        scheduler.shutdown(wait=False)


# --- EveryTrigger --------------------------------------------------------------------------


def test_every_without_start_anchors_at_the_first_call() -> None:
    trigger = EveryTrigger(timedelta(minutes=5))
    first = trigger.get_next_fire_time(None, WEDNESDAY)
    assert first == WEDNESDAY + timedelta(minutes=5)
    assert trigger.get_next_fire_time(first, first) == WEDNESDAY + timedelta(minutes=10)
    # Resumed later (previous unknown): the next grid point at or after now.
    later = WEDNESDAY + timedelta(minutes=12)
    assert trigger.get_next_fire_time(None, later) == WEDNESDAY + timedelta(minutes=15)


def test_every_with_start() -> None:
    start = datetime(2024, 1, 3, 12, 0, 30, tzinfo=UTC)
    trigger = EveryTrigger(timedelta(seconds=90), start=start)
    assert trigger.get_next_fire_time(None, start - timedelta(hours=1)) == start
    assert trigger.get_next_fire_time(None, start) == start
    now = start + timedelta(seconds=91)
    assert trigger.get_next_fire_time(None, now) == start + timedelta(seconds=180)
    previous = start + timedelta(seconds=90)
    assert trigger.get_next_fire_time(previous, now + timedelta(hours=1)) == previous + timedelta(
        seconds=90
    )


def test_every_naive_start_is_local_and_results_are_in_the_zone() -> None:
    trigger = EveryTrigger(timedelta(hours=1), timezone="Europe/Berlin", start=datetime(2024, 1, 3))
    first = trigger.get_next_fire_time(None, datetime(2024, 1, 1, tzinfo=UTC))
    assert first.tzinfo == BERLIN
    assert first.astimezone(UTC) == datetime(2024, 1, 2, 23, 0, tzinfo=UTC)


def test_every_day_is_24_hours_across_dst() -> None:
    start = datetime(2024, 3, 30, 12, 0, tzinfo=BERLIN)
    trigger = EveryTrigger(timedelta(days=1), timezone="Europe/Berlin", start=start)
    after = trigger.get_next_fire_time(start, start)
    assert after.isoformat() == "2024-03-31T13:00:00+02:00"


def test_every_jitter_does_not_drift() -> None:
    start = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)
    trigger = EveryTrigger(timedelta(minutes=1), start=start, jitter=20)
    previous = trigger.get_next_fire_time(None, start)
    for k in range(1, 30):
        grid = start + timedelta(minutes=k)
        previous = trigger.get_next_fire_time(previous, previous)
        assert grid <= previous <= grid + timedelta(seconds=20)


def test_every_rejects_bad_input_and_prints() -> None:
    with pytest.raises(CronError, match="greater than zero"):
        EveryTrigger(timedelta(0))
    with pytest.raises(CronError, match="unknown timezone"):
        EveryTrigger(timedelta(minutes=1), timezone="Nowhere/Town")
    trigger = EveryTrigger(timedelta(minutes=90), timezone="Europe/Berlin")
    assert str(trigger) == "every[1:30:00, Europe/Berlin]"
    assert "EveryTrigger" in repr(trigger)
    assert "start=None" in repr(trigger)
