"""``flowtaskd.core.maskfuncs``: the mask functions' own rules. How a ``value`` argument is
read (keywords, dates, date texts), month and year arithmetic at month ends, weekday names,
zones, epochs, and the errors for arguments that do not fit. (Upstream's results at fixed
dates are checked in test_masks.py.)"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from flowtaskd.core.maskfuncs import MASK_FUNCTIONS, MaskError

UTC = ZoneInfo("UTC")
WED = datetime(2026, 3, 11, 23, 30, tzinfo=UTC)  # a Wednesday, already the 12th in Berlin
F = MASK_FUNCTIONS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "2026-03-11"),
        ("now", "2026-03-11"),
        (" Today ", "2026-03-11"),
        ("CURRENT_DATE", "2026-03-11"),
        ("yesterday", "2026-03-10"),
        ("tomorrow", "2026-03-12"),
        ("fdom", "2026-03-01"),
        ("ldom", "2026-03-31"),
        ("fdcw", "2026-03-09"),  # the Monday of this week
        ("2026-02-03", "2026-02-03"),
        ("2026-02-03 04:05:06", "2026-02-03"),
        ("2026-02-03T04:05:06", "2026-02-03"),
        ("02/03/2026", "2026-02-03"),
        ("20260203", "2026-02-03"),
        (date(2025, 12, 24), "2025-12-24"),
        (datetime(2025, 12, 24, 8, tzinfo=UTC), "2025-12-24"),
    ],
)
def test_a_value_argument_reads_keywords_dates_and_date_texts(value: object, expected: str) -> None:
    assert F["date_sum"](WED, value, 0) == expected


def test_a_value_text_that_is_no_date_is_a_mask_error_saying_what_works() -> None:
    with pytest.raises(MaskError, match=r"cannot read 'next week' as a date \(use now"):
        F["date_diff"](WED, "next week")
    assert issubclass(MaskError, ValueError)  # evaluate_masks reports ValueErrors as problems


def test_a_date_text_takes_the_zone_of_now() -> None:
    berlin = WED.astimezone(ZoneInfo("Europe/Berlin"))
    moment = F["to_date"](berlin, "03/10/2026")  # not the mask: read as a date text
    assert moment == datetime(2026, 3, 10, tzinfo=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(
    ("start", "diff", "mode", "expected"),
    [
        ("2026-01-31", 1, "months", "2026-02-28"),  # clamped to the month's last day
        ("2024-01-31", 1, "month", "2024-02-29"),  # a leap year
        ("2026-12-15", 1, "months", "2027-01-15"),  # across the year
        ("2026-01-15", -13, "months", "2024-12-15"),
        ("2024-02-29", 1, "years", "2025-02-28"),
        ("2026-03-11", 2, "weeks", "2026-03-25"),
        ("2026-03-11", 36, "hours", "2026-03-12"),
        ("2026-03-11", 1, "DAYS", "2026-03-12"),  # modes are read case-blind
    ],
)
def test_date_sum_moves_by_each_mode(start: str, diff: int, mode: str, expected: str) -> None:
    assert F["date_sum"](WED, start, diff, mode) == expected


def test_date_diff_is_date_sum_backwards_and_takes_a_numeric_text() -> None:
    assert F["date_diff"](WED, "2026-03-31", "1", "months") == "2026-02-28"
    assert F["date_diff"](WED, "2026-03-11", 3) == F["date_sum"](WED, "2026-03-11", -3)


def test_an_unknown_mode_is_a_mask_error_listing_the_modes() -> None:
    with pytest.raises(MaskError, match=r"mode 'fortnights': expected one of days, .*months"):
        F["date_sum"](WED, "now", 1, "fortnights")
    with pytest.raises(MaskError, match="mode 'week'"):
        F["date_ago"](WED, None, "%Y", 1, "week")


def test_weekdays_are_named_in_full_or_by_three_letters_and_wrong_ones_refused() -> None:
    assert F["date_dow"](WED, None, "fri", "%Y-%m-%d") == "2026-03-13"
    assert F["date_dow"](WED, "2026-01-01", " Sunday ", "%Y-%m-%d") == "2026-01-04"
    assert F["date_dow"](WED, "2026-01-01", "mon") == datetime(2025, 12, 29, tzinfo=UTC)
    with pytest.raises(MaskError, match=r"day_of_week 'funday': expected monday \.\.\. sunday"):
        F["date_diff_dow"](WED, day_of_week="funday")


def test_zone_arguments_move_now_into_that_zone() -> None:
    assert F["today"](WED, "%Y-%m-%d") == "2026-03-11"
    assert F["today"](WED, "%Y-%m-%d", "Europe/Berlin") == "2026-03-12"
    assert F["current_date"](WED, "Asia/Tokyo") == date(2026, 3, 12)
    assert F["now"](WED, "America/New_York").isoformat() == "2026-03-11T19:30:00-04:00"
    assert F["fdom"](datetime(2026, 3, 31, 23, tzinfo=UTC), None, "%d", "Europe/Berlin") == "01"
    assert F["current_weekday"](WED, "Europe/Berlin") == 3  # Thursday there
    assert F["current_day_of_week"](WED) == 3  # Wednesday, ISO numbering
    assert F["midnight_current"](WED, "%Y-%m-%d %H:%M", "Europe/Berlin") == "2026-03-12 00:00"
    assert F["yesterday_midnight"](WED) == datetime(2026, 3, 10)
    assert F["tomorrow_midnight"](WED, "Europe/Berlin") == datetime(2026, 3, 13)


def test_month_edges() -> None:
    jan = datetime(2026, 1, 15, 12, tzinfo=UTC)
    assert F["ldopm"](jan) == "2025-12-31"
    assert F["last_day_of_previous_month"](jan).date() == date(2025, 12, 31)
    assert F["last_day_of_month"](jan, "2028-02-10").date() == date(2028, 2, 29)
    assert F["first_day_of_month"](jan, "yesterday").date() == date(2026, 1, 1)
    assert F["last_year"](datetime(2024, 2, 29, tzinfo=UTC)) == "2023-02-28"
    assert F["previous_month"](datetime(2026, 3, 31, tzinfo=UTC), "%Y-%m-%d") == "2026-02-28"


def test_last_weeks_saturday_from_every_day_of_a_week() -> None:
    days = [datetime(2026, 3, d, tzinfo=UTC) for d in range(9, 16)]  # Monday .. Sunday
    assert {F["get_last_week_date"](d) for d in days} == {"2026-03-07"}


def test_epochs_in_seconds_and_milliseconds() -> None:
    assert F["current_epoch"](WED) == int(WED.timestamp())
    assert F["current_epoch"](WED, True) == int(WED.timestamp()) * 1000
    midnight = datetime(2026, 3, 10, tzinfo=UTC).timestamp()
    assert F["yesterday_epoch"](WED) == int(midnight)
    assert F["yesterday_epoch"](WED, milliseconds=True) == int(midnight * 1000)
    berlin = WED.astimezone(ZoneInfo("Europe/Berlin"))  # yesterday there is the 11th
    assert F["yesterday_epoch"](berlin) == int(
        datetime(2026, 3, 11, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    )


def test_to_date_reads_its_mask_in_its_zone_else_falls_back_to_a_date_text() -> None:
    got = F["to_date"](WED, "2026-03-01 10:00:00")
    assert got == datetime(2026, 3, 1, 10, tzinfo=UTC)
    tokyo = F["to_date"](WED, "01.03.2026", "%d.%m.%Y", "Asia/Tokyo")
    assert tokyo == datetime(2026, 3, 1, tzinfo=ZoneInfo("Asia/Tokyo"))
    with pytest.raises(MaskError):
        F["to_date"](WED, "soon")


def test_format_date_reformats_any_readable_value() -> None:
    assert F["format_date"](WED, "yesterday", "%d.%m.%Y") == "10.03.2026"
    assert F["format_date"](WED, "20260102") == "2026-01-02 00:00:00"


def test_to_udf_names_are_case_blind_and_unknown_ones_listed() -> None:
    assert F["to_udf"](WED, " fdom ") == "2026-03-01"
    assert F["to_udf"](WED, "current_month") == 3
    with pytest.raises(MaskError, match=r"to_udf: 'EASTER' is not one of CURRENT_YEAR, "):
        F["to_udf"](WED, "EASTER")


def test_file_name_functions_ignore_now() -> None:
    assert F["filename"](WED, "/data/in/sales.csv") == "sales.csv"
    assert F["file_extension"](WED, "/data/in/SALES.CSV") == "csv"
    assert F["file_extension"](WED, "/data/in/archive.tar.GZ") == "gz"
    assert F["file_extension"](WED, "/data/in/README") == ""


def test_aliases_name_the_same_functions() -> None:
    assert F["get_current_date"] is F["current_date"]
    assert F["midnight"] is F["midnight_current"]
    assert all(callable(f) for f in F.values())
