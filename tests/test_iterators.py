"""``flowtaskd.components.iterators``: ``DateList`` (days, months, the end of a month),
``ParamIterator`` and ``Loop`` (a list, a generator, the upstream step's output)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.components import iterators
from flowtaskd.components.base import Component
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.iterators import (
    DateListComponent,
    DateListParams,
    LoopComponent,
    ParamIteratorComponent,
    date_range,
)
from flowtaskd.core.rules import StepStatus


async def run(comp: type[Component], raw: dict[str, Any], **kw: Any) -> StepOutcome:
    params = comp.Params.model_validate(raw).model_dump()
    ctx = StepContext("t", "r1", kw.pop("step_id", f"{comp.name}_1"), comp.name, params, **kw)
    return await comp(params).run(ctx)


def days(start: str, end: str, **kw: Any) -> list[str]:
    p = DateListParams.model_validate({"range": {"start": start, "end": end}, **kw})
    return [d.strftime("%Y-%m-%d") for d in date_range(p)]


# -- date_range ----------------------------------------------------------------------------


def test_date_range_includes_both_ends_and_steps_by_inc() -> None:
    assert days("2026-02-27", "2026-03-02") == [
        "2026-02-27",
        "2026-02-28",
        "2026-03-01",
        "2026-03-02",
    ]
    assert days("2026-01-01", "2026-01-08", inc=3) == ["2026-01-01", "2026-01-04", "2026-01-07"]
    assert days("2026-01-02", "2026-01-01") == []  # the end before the start: no dates
    assert days("2026-01-01", "2026-01-01") == ["2026-01-01"]


def test_monthly_keeps_the_day_or_takes_the_last_day_of_a_short_month() -> None:
    assert days("2026-01-31", "2026-05-31", monthly=True) == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",  # counted from the start, so the 31st comes back
        "2026-04-30",
        "2026-05-31",
    ]
    assert days("2027-11-15", "2028-03-01", monthly=True, inc=2) == ["2027-11-15", "2028-01-15"]
    assert days("2028-01-31", "2028-02-29", monthly=True) == ["2028-01-31", "2028-02-29"]


def test_date_range_reads_the_range_format() -> None:
    p = DateListParams.model_validate(
        {"range": {"start": "01/12/2026", "end": "03/12/2026", "format": "%d/%m/%Y"}}
    )
    assert [d.day for d in date_range(p)] == [1, 2, 3]


def test_date_range_has_a_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iterators, "MAX_ITEMS", 5)
    with pytest.raises(ValueError, match="more than 5 dates"):
        days("2026-01-01", "2026-01-31")
    assert len(days("2026-01-01", "2026-01-05")) == 5


# -- DateList ------------------------------------------------------------------------------


async def test_date_list_items_carry_the_date_in_the_item_format() -> None:
    raw = {
        "range": {"start": "2026-12-30", "end": "2027-01-01"},
        "format": "%Y%m%d",
        "vars": {"file": "sales_{date}.csv", "n": 5},
    }
    out = await run(DateListComponent, raw)
    assert out.status is StepStatus.DONE
    assert json.loads(out.output or "") == ["20261230", "20261231", "20270101"]
    assert out.items is not None and out.items[2] == {
        "file": "sales_20270101.csv",
        "n": 5,
        "date": "20270101",
        "filterdate": "20270101",
        "item": "20270101",
        "index": 2,
    }


async def test_date_list_with_a_date_that_does_not_parse_fails_the_step() -> None:
    out = await run(DateListComponent, {"range": {"start": "2026-13-01", "end": "2026-12-31"}})
    assert out.status is StepStatus.FAILED
    assert out.error is not None and out.error.startswith("range: time data '2026-13-01'")


def test_date_list_params() -> None:
    with pytest.raises(ValidationError, match="inc"):
        DateListParams.model_validate({"range": {"start": "a", "end": "b"}, "inc": 0})
    with pytest.raises(ValidationError, match="end"):
        DateListParams.model_validate({"range": {"start": "a"}})


# -- ParamIterator -------------------------------------------------------------------------


async def test_param_iterator_one_item_per_value_of_each_key() -> None:
    out = await run(ParamIteratorComponent, {"params": {"formid": [2552, 2567], "site": ["eu"]}})
    assert out.items == [
        {"formid": 2552, "item": 2552, "value": 2552, "index": 0},
        {"formid": 2567, "item": 2567, "value": 2567, "index": 1},
        {"site": "eu", "item": "eu", "value": "eu", "index": 2},
    ]
    assert json.loads(out.output or "") == [{"formid": 2552}, {"formid": 2567}, {"site": "eu"}]


def test_param_iterator_values_are_lists() -> None:
    with pytest.raises(ValidationError, match="list"):
        ParamIteratorComponent.Params.model_validate({"params": {"formid": 2552}})


# -- Loop ----------------------------------------------------------------------------------


async def test_loop_over_a_list_of_values_and_mappings() -> None:
    out = await run(LoopComponent, {"iterable": ["a", 2, {"id": 7, "value": "v"}, [1]]})
    assert out.items == [
        {"value": "a", "item": "a", "index": 0, "Loop_1_value": "a"},
        {"value": 2, "item": 2, "index": 1, "Loop_1_value": 2},
        {
            "id": 7,
            "value": "v",
            "item": '{"id": 7, "value": "v"}',
            "index": 2,
            "Loop_1_value": '{"id": 7, "value": "v"}',
        },
        {"value": "[1]", "item": "[1]", "index": 3, "Loop_1_value": "[1]"},
    ]
    assert json.loads(out.output or "") == ["a", 2, {"id": 7, "value": "v"}, [1]]


async def test_loop_generators() -> None:
    out = await run(LoopComponent, {"generator": "days_of_week"})
    assert [i["value"] for i in out.items or []][::6] == ["Monday", "Sunday"]
    out = await run(LoopComponent, {"generator": "days_of_month"})
    assert len(out.items or []) == 31 and (out.items or [])[-1]["item"] == "Day 31"


@pytest.mark.parametrize(
    "text,values",
    [
        ('["x", {"id": 7}]', ["x", {"id": 7}]),
        ('{"a": 1, "b": [2]}', [{"key": "a", "value": 1}, {"key": "b", "value": [2]}]),
        ("42", [42]),
        ("one\ntwo\n", ["one", "two"]),  # not JSON: its lines
        ("   ", []),
        (None, []),
    ],
)
async def test_loop_over_the_upstream_output(text: str | None, values: list[Any]) -> None:
    out = await run(LoopComponent, {"iterate": True}, input=text)
    assert out.status is StepStatus.DONE
    assert json.loads(out.output or "") == values
    assert [i["index"] for i in out.items or []] == list(range(len(values)))


async def test_loop_item_of_a_key_value_pair_keeps_the_value() -> None:
    out = await run(LoopComponent, {"iterate": True}, input='{"a": 1}', step_id="L")
    assert out.items == [
        {
            "key": "a",
            "value": 1,
            "item": '{"key": "a", "value": 1}',
            "index": 0,
            "L_value": '{"key": "a", "value": 1}',
        }
    ]


def test_loop_takes_one_source() -> None:
    with pytest.raises(ValidationError, match="give one of `iterable`, `generator`"):
        LoopComponent.Params.model_validate({"iterable": [1], "iterate": True})
    with pytest.raises(ValidationError, match="generator"):
        LoopComponent.Params.model_validate({"generator": "days_of_year"})
