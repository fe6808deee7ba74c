"""Upstream's mask functions give upstream's results (observed by calling upstream's own
querysource functions at these fixed times), and masks evaluate in the task's zone."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from flowtaskd.core.maskfuncs import MASK_FUNCTIONS
from flowtaskd.core.masks import MaskError, call_problem, evaluate_masks, replace_whole, zoned_now

WED = datetime(2026, 3, 11, 23, 30, tzinfo=ZoneInfo("UTC"))  # a Wednesday
MON = datetime(2026, 12, 7, 15, 0, tzinfo=ZoneInfo("UTC"))  # a Monday


# (function, args, kwargs, upstream's result at WED)
UPSTREAM_AT_WED = [
    ("today", [], {}, "03/11/2026"),
    ("today", ["%Y-%m-%d"], {}, "2026-03-11"),
    ("yesterday", [], {}, "2026-03-10"),
    ("yesterday", ["%d/%m"], {}, "10/03"),
    ("current_date", [], {}, date(2026, 3, 11)),
    ("date_diff", ["now", 3], {}, "2026-03-08"),
    ("date_diff", ["today", 2], {}, "2026-03-09"),
    ("date_diff", ["current_date", 1, "weeks"], {}, "2026-03-04"),
    ("date_diff", ["2026-03-10", 2], {}, "2026-03-08"),
    ("date_diff", ["now", 1, "hours", "%Y-%m-%d %H"], {}, "2026-03-11 22"),
    ("date_diff", ["now", -1], {}, "2026-03-12"),
    ("date_sum", ["now", 3], {}, "2026-03-14"),
    ("date_dow", [], {"day_of_week": "monday", "mask": "%Y-%m-%d"}, "2026-03-09"),
    ("date_dow", [], {"day_of_week": "sunday", "mask": "%Y-%m-%d"}, "2026-03-15"),
    ("date_diff_dow", [], {"day_of_week": "monday", "mask": "%Y-%m-%d", "diff": 1}, "2026-03-08"),
    ("date_diff_dow", [], {"day_of_week": "tuesday", "mask": "%Y-%m-%d", "diff": 2}, "2026-03-08"),
    ("date_diff_dow", [], {"day_of_week": "sunday", "mask": "%Y-%m-%d", "diff": -1}, "2026-03-16"),
    ("first_dow", [], {}, "2026-03-09"),
    ("first_dow", [], {"mask": "%d"}, "09"),
    ("last_dow", [], {}, "2026-03-15"),
    ("fdom", [], {}, "2026-03-01"),
    ("fdom", ["2026-03-11"], {}, "2026-03-01"),
    ("ldom", [], {}, "2026-03-31"),
    ("ldom", ["2026-02-11"], {}, "2026-02-28"),
    ("ldopm", [], {}, "2026-02-28"),
    ("fdow", [], {}, "2026-03-09"),
    ("ldow", [], {}, "2026-03-15"),
    ("last_year", [], {}, "2025-03-11"),
    ("current_year", [], {}, 2026),
    ("current_month", [], {}, 3),
    ("previous_month", [], {}, "02/11/2026"),
    ("previous_month", ["%Y-%m", 2], {}, "2026-01"),
    ("days_ago", [], {}, "03/10/2026"),
    ("days_ago", ["%Y-%m-%d", 3], {}, "2026-03-08"),
    ("date_after", [], {"mask": "%Y-%m-%d", "offset": 2, "offset_type": "days"}, "2026-03-13"),
    ("midnight_current", [], {}, "2026-03-11T00:00:00"),
    ("midnight_yesterday", [], {}, "2026-03-10 00:00:00"),
    ("midnight_tomorrow", [], {}, "2026-03-12 00:00:00"),
    ("current_day_of_week", [], {}, 3),
    ("current_weekday", [], {}, 2),
    ("get_last_week_date", [], {}, "2026-03-07"),
    ("format_date", ["2026-03-11", "%d/%m/%Y"], {}, "11/03/2026"),
    ("to_udf", ["TODAY"], {}, "03/11/2026"),
    ("to_udf", ["LDOPM"], {}, "2026-02-28"),
    ("to_udf", ["CURRENT_YEAR"], {}, 2026),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "expected"), UPSTREAM_AT_WED)
def test_functions_give_upstreams_results(
    name: str, args: list[object], kwargs: dict[str, object], expected: object
) -> None:
    assert MASK_FUNCTIONS[name](WED, *args, **kwargs) == expected


def test_functions_at_a_monday_as_upstream() -> None:
    assert MASK_FUNCTIONS["date_dow"](MON, day_of_week="friday", mask="%Y-%m-%d") == "2026-12-11"
    assert MASK_FUNCTIONS["date_diff_dow"](MON, day_of_week="monday", diff=7, mask="%Y-%m-%d") == (
        "2026-11-30"
    )
    assert MASK_FUNCTIONS["date_dow"](MON, "yesterday", "monday", "%Y-%m-%d") == "2026-11-30"
    assert MASK_FUNCTIONS["date_diff"](MON, "2024-01-10", -2) == "2024-01-12"


def test_where_upstream_fails_the_call_does_what_it_asks() -> None:
    # upstream raises for months (timedelta has none) and gives "" as the mask's value
    assert MASK_FUNCTIONS["date_diff"](WED, "now", 1, "months") == "2026-02-11"
    assert MASK_FUNCTIONS["date_diff"](datetime(2026, 3, 31), "now", 1, "months") == "2026-02-28"
    assert MASK_FUNCTIONS["previous_year"](WED) == 2025


def test_masks_evaluate_in_the_given_zone_at_the_given_time() -> None:
    at = WED.timestamp()  # 23:30 UTC is already the 12th in Berlin
    masks = {"{today}": ["today", {"mask": "%Y-%m-%d"}]}
    assert evaluate_masks(masks, zoned_now(at, None), {}).values == {"today": "2026-03-11"}
    berlin = zoned_now(at, "Europe/Berlin")
    assert evaluate_masks(masks, berlin, {}).values == {"today": "2026-03-12"}


def test_key_forms_text_masks_and_overrides() -> None:
    got = evaluate_masks(
        {
            "{a}": ["yesterday"],
            "b": "out-{day}-{a}-{nothing}",
            "#cutoff#": ["current_year"],
            "day": ["today"],
        },
        WED,
        {"day": "2026-01-01"},  # a run param of the mask's name wins, as upstream's
    )
    assert got.values == {
        "a": "2026-03-10",
        "b": "out-2026-01-01-2026-03-10-{nothing}",
        "day": "2026-01-01",
    }
    assert got.whole == {"#cutoff#": 2026}
    assert replace_whole({"k": ["#cutoff#", "x #cutoff#"]}, got.whole) == {
        "k": [2026, "x #cutoff#"]
    }


def test_problems_are_found_without_running() -> None:
    assert call_problem(["today", {"mask": "%Y"}]) is None
    assert call_problem("plain {text}") is None
    assert call_problem(["tody"]) == "unknown mask function `tody`"
    assert "unexpected keyword argument 'masq'" in (call_problem(["today", {"masq": "%Y"}]) or "")
    assert call_problem({"x": 1}) == "a mask is a text or a function call [function, {arguments}]"
    with pytest.raises(MaskError, match="mask x: date_diff: cannot read 'soon' as a date"):
        evaluate_masks({"x": ["date_diff", {"value": "soon"}]}, WED, {})
