"""flowtaskd.daemon.ops.schedules: ``next`` for intervals, cron expressions and tasks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.ops.schedules import is_schedule, next_times, parse_every, task_next
from flowtaskd.daemon.schedule.scheduler import ScheduleEntry

AFTER = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("every:5m", 300.0),
        ("every 90s", 90.0),
        ("EVERY 2H", 7200.0),
        ("1.5d", 129600.0),
        ("250ms", 0.25),
        ("1w", 604800.0),
        ("every 30", 30.0),
    ],
)
def test_parse_every_reads_intervals(text: str, seconds: float) -> None:
    assert parse_every(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "*/5 * * * *", "@daily", "report", "5 minutes"])
def test_parse_every_leaves_other_text(text: str) -> None:
    assert parse_every(text) is None


def test_parse_every_refuses_zero() -> None:
    with pytest.raises(OpError, match=r"more than zero seconds; got '0s'"):
        parse_every("0s")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("*/5 * * * *", True), ("@hourly", True), ("5m", True), ("nightly-report", False)],
)
def test_is_schedule(text: str, expected: bool) -> None:
    assert is_schedule(text) is expected


def test_next_times_of_an_interval_is_anchored_at_after() -> None:
    got = next_times("every 90s", AFTER, n=3)
    assert [t.isoformat() for t in got] == [
        "2026-03-02T10:09:00+00:00",
        "2026-03-02T10:10:30+00:00",
        "2026-03-02T10:12:00+00:00",
    ]


def test_next_times_of_cron_are_strictly_after() -> None:
    at = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    got = next_times("*/15 * * * *", at, n=2)
    assert got == [
        datetime(2026, 3, 2, 10, 30, tzinfo=UTC),
        datetime(2026, 3, 2, 10, 45, tzinfo=UTC),
    ]


def test_next_times_in_a_timezone_and_naive_after() -> None:
    naive = datetime(2026, 3, 2, 1, 0)  # read in the given zone
    got = next_times("30 2 * * *", naive, n=1, tz="Europe/Berlin")
    assert got[0].isoformat() == "2026-03-02T02:30:00+01:00"


def test_next_times_errors_are_op_errors() -> None:
    with pytest.raises(OpError, match="hour"):
        next_times("0 25 * * *", AFTER)
    with pytest.raises(OpError):
        next_times("* * * * *", AFTER, tz="Mars/Olympus")
    with pytest.raises(OpError, match="-n is one or more; got 0"):
        next_times("5m", AFTER, n=0)


def test_task_next_lists_its_schedules_with_pauses() -> None:
    entries = [
        ScheduleEntry(id="r#1", owner="task:r", task="r", every=600),
        ScheduleEntry(id="r#0", owner="task:r", task="r", cron="0 * * * *"),
        ScheduleEntry(id="other#0", owner="task:other", task="other", cron="0 * * * *"),
    ]
    out = task_next("r", entries, {"schedule:r#1": 1.0}, AFTER, n=1)
    assert out["task"] == "r" and out["paused"] is False
    assert out["schedules"] == [
        {
            "id": "r#0",
            "when": "0 * * * *",
            "timezone": "UTC",
            "paused": False,
            "next": ["2026-03-02T11:00:00+00:00"],
        },
        {
            "id": "r#1",
            "when": "every 600s",
            "timezone": "UTC",
            "paused": True,
            "next": ["2026-03-02T10:17:30+00:00"],
        },
    ]


def test_task_next_a_paused_task_pauses_every_schedule() -> None:
    entries = [ScheduleEntry(id="r#0", owner="task:r", task="r", cron="@daily")]
    out = task_next("r", entries, {"task:r": 1.0}, AFTER, n=2)
    assert out["paused"] is True
    assert out["schedules"][0]["paused"] is True
    assert len(out["schedules"][0]["next"]) == 2


def test_task_next_of_a_task_without_schedules() -> None:
    assert task_next("none", [], {}, AFTER) == {"task": "none", "paused": False, "schedules": []}
