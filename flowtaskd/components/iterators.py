"""Fan-out beyond files: ``DateList``, ``ParamIterator`` and ``Loop``.

Each is an iterator like ``FileList``: with ``to_group: G`` the steps of group ``G`` run
once per item, and each item's keys are placeholders in them (``{date}``, ``{value}``,
``{item}``, ``{index}``). Without a group the items are the step's JSON output.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "date_range"]

MAX_ITEMS = 100_000


class DateRange(StrictModel):
    start: str = Field(description="First date, written in `format`.")
    end: str = Field(description="Last date (included), written in `format`.")
    format: str = Field(default="%Y-%m-%d", description="strptime format of start and end.")


class DateListParams(StrictModel):
    range: DateRange
    inc: int = Field(default=1, ge=1, description="Step: days (or months with `monthly`).")
    monthly: bool = False
    format: str = Field(default="%Y-%m-%d", description="strftime format of each item's {date}.")
    vars: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra item keys; '{{date}}' in a value becomes the item's date.",
    )
    iterate: bool = Field(default=True, description="Accepted for upstream; always iterates.")


class ParamIteratorParams(StrictModel):
    params: dict[str, list[Any]] = Field(
        description="Key -> values; one item per value, e.g. {formid: [2552, 2567]}."
    )


class Generator(StrEnum):
    DAYS_OF_WEEK = "days_of_week"
    DAYS_OF_MONTH = "days_of_month"


class LoopParams(StrictModel):
    iterable: list[Any] | None = Field(default=None, description="The values to loop over.")
    generator: Generator | None = None
    iterate: bool = Field(
        default=False, description="Loop over the upstream step's output (a JSON list, or lines)."
    )
    onDone: str | None = Field(default=None, description="Accepted for upstream; not used.")

    @model_validator(mode="after")
    def _source(self) -> LoopParams:
        given = sum([self.iterable is not None, self.generator is not None, self.iterate])
        if given > 1:
            raise ValueError("give one of `iterable`, `generator` or `iterate: true`")
        return self


def _add_months(day: datetime, months: int) -> datetime:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for d in (day.day, 30, 29, 28):  # the 31st of a short month: its last day
        try:
            return day.replace(year=year, month=month, day=d)
        except ValueError:
            continue
    raise ValueError(f"no day {day.day} in {year}-{month}")


def date_range(p: DateListParams) -> list[datetime]:
    """The dates from ``range.start`` to ``range.end`` (included), every ``inc`` days/months."""
    start = datetime.strptime(p.range.start, p.range.format)
    end = datetime.strptime(p.range.end, p.range.format)
    out: list[datetime] = []
    day, n = start, 0
    while day <= end:
        out.append(day)
        if len(out) > MAX_ITEMS:
            raise ValueError(f"more than {MAX_ITEMS} dates")
        n += 1
        day = _add_months(start, n * p.inc) if p.monthly else start + timedelta(days=n * p.inc)
    return out


def _items_outcome(items: list[dict[str, Any]], values: list[Any]) -> StepOutcome:
    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    return StepOutcome(StepStatus.DONE, output=json.dumps(values, default=str), items=items)


class DateListComponent(Component):
    name = "DateList"
    Params: ClassVar[type[StrictModel]] = DateListParams
    iterator = True
    summary = "A range of dates; feeds a group once per date."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

        p = DateListParams.model_validate(ctx.params)
        try:
            days = date_range(p)
            texts = [d.strftime(p.format) for d in days]
        except ValueError as exc:
            return StepOutcome(StepStatus.FAILED, error=f"range: {exc}")
        items = []
        for i, text in enumerate(texts):
            extra = {
                k: v.replace("{date}", text) if isinstance(v, str) else v for k, v in p.vars.items()
            }
            items.append({**extra, "date": text, "filterdate": text, "item": text, "index": i})
        return _items_outcome(items, texts)


class ParamIteratorComponent(Component):
    name = "ParamIterator"
    Params: ClassVar[type[StrictModel]] = ParamIteratorParams
    iterator = True
    summary = "One group item per value of each listed parameter."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = ParamIteratorParams.model_validate(ctx.params)
        items: list[dict[str, Any]] = []
        values: list[Any] = []
        for key, vals in p.params.items():
            for v in vals:
                items.append({key: v, "item": v, "value": v, "index": len(items)})
                values.append({key: v})
        return _items_outcome(items, values)


_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _from_input(text: str | None) -> list[Any]:
    if text is None or not text.strip():
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return text.splitlines()
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [{"key": k, "value": v} for k, v in value.items()]
    return [value]


class LoopComponent(Component):
    name = "Loop"
    Params: ClassVar[type[StrictModel]] = LoopParams
    iterator = True
    wants_input = True
    summary = "Loop a group over a list, a generator, or the upstream step's output."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = LoopParams.model_validate(ctx.params)
        if p.iterable is not None:
            values = list(p.iterable)
        elif p.generator is Generator.DAYS_OF_WEEK:
            values = list(_DAYS)
        elif p.generator is Generator.DAYS_OF_MONTH:
            values = [f"Day {d}" for d in range(1, 32)]
        else:
            values = _from_input(ctx.input)
        items = []
        for i, v in enumerate(values):
            item: dict[str, Any] = dict(v) if isinstance(v, dict) else {}
            shown = v if isinstance(v, str | int | float) else json.dumps(v, default=str)
            item.setdefault("value", shown)
            item.update({"item": shown, "index": i})
            item[f"{ctx.step_id}_value"] = shown
            items.append(item)
        return _items_outcome(items, values)


COMPONENTS: list[type[Component]] = [DateListComponent, ParamIteratorComponent, LoopComponent]
