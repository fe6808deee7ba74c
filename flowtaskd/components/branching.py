"""Choosing and naming: ``IF`` and ``Switch`` (choose the following steps by a condition),
``SetVariables`` (placeholders for later steps) and ``UserFunc`` (upstream's name for our
``Python`` step).

A condition is upstream's: on JSON data, ``"$.path.to.key <op> value"`` with ``op`` one of
``== != >= <= > <`` (numbers compare as numbers, the rest as text); on text, the condition
is a substring test. The data is the upstream step's output, or ``value`` when given
(``value: "{steps.fetch.output}"``, ``value: "{region}"``). The steps not chosen are
skipped (``not chosen by IF_2``), and so is what depends only on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.commands import PythonComponent, PythonParams
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "ConditionError", "evaluate"]

_OPS = ("==", "!=", ">=", "<=", ">", "<")  # two-character ones first
_PATH_PART = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


class ConditionError(ValueError):
    """A condition cannot be read, or cannot be applied to the data."""


def _split(condition: str) -> tuple[str, str, str] | None:
    for op in _OPS:
        left, found, right = condition.partition(op)
        if found:
            return left.strip(), op, right.strip().strip("'\"")
    return None


def _lookup(data: Any, path: str) -> Any:
    rest = path[1:]
    for m in _PATH_PART.finditer(rest):
        key, index = m.group(1), m.group(2)
        try:
            if index is not None or (isinstance(data, list) and key.isdigit()):
                data = data[int(index if index is not None else key)]
            elif isinstance(data, dict):
                data = data[key]
            else:
                return None
        except (KeyError, IndexError):
            return None
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(actual: Any, op: str, expected: str) -> bool:
    a, b = _number(actual), _number(expected)
    left: Any
    right: Any
    if a is not None and b is not None:
        left, right = a, b
    elif isinstance(actual, bool):
        left, right = ("true" if actual else "false"), expected.lower()
    elif actual is None:
        left, right = "null", expected.lower() if expected.lower() in ("null", "none") else expected
        right = "null" if right == "none" else right
    else:
        left, right = str(actual), expected
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if isinstance(left, str) != isinstance(right, str):
        raise ConditionError(f"cannot order {actual!r} and {expected!r}")
    return bool(
        {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]
    )


def evaluate(condition: str, text: str | None) -> bool:
    """Whether ``condition`` holds for ``text`` (JSON data, or plain text)."""
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        data = text
    if isinstance(data, dict | list):
        parts = _split(condition)
        if parts is None or not parts[0].startswith("$"):
            raise ConditionError(f"expected '$.path <op> value' for JSON data: {condition!r}")
        path, op, expected = parts
        return _compare(_lookup(data, path), op, expected)
    shown = "" if text is None else text
    parts = _split(condition)
    if parts is not None and parts[0].startswith("$"):
        if parts[0] != "$":
            raise ConditionError(f"the data is not JSON, so {parts[0]} names nothing")
        return _compare(data if data is not None else shown, parts[1], parts[2])
    return condition in shown


class IFParams(StrictModel):
    condition: str = Field(min_length=1, description="'$.status == ok', or text to look for.")
    true_component: str = Field(description="Step id run when the condition holds.")
    false_component: str = Field(description="Step id run when it does not.")
    value: str | None = Field(default=None, description="Test this instead of the input.")

    def step_targets(self) -> list[tuple[tuple[str | int, ...], str]]:
        return [
            (("true_component",), self.true_component),
            (("false_component",), self.false_component),
        ]

    @model_validator(mode="after")
    def _two(self) -> IFParams:
        if self.true_component == self.false_component:
            raise ValueError("true_component and false_component name the same step")
        return self


class Case(StrictModel):
    condition: str = Field(min_length=1)
    component: str = Field(description="Step id run when this case is the first that holds.")


class SwitchParams(StrictModel):
    cases: list[Case] = Field(min_length=1)
    default: str | None = Field(default=None, description="Step id run when no case holds.")
    value: str | None = Field(default=None, description="Test this instead of the input.")

    def step_targets(self) -> list[tuple[tuple[str | int, ...], str]]:
        found: list[tuple[tuple[str | int, ...], str]] = [
            (("cases", n, "component"), case.component) for n, case in enumerate(self.cases)
        ]
        return found + ([(("default",), self.default)] if self.default is not None else [])


class SetVariablesParams(StrictModel):
    vars: dict[str, Any] = Field(
        description="Name -> value; later steps use {name} and {<step>_<name>}."
    )

    @field_validator("vars")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("set at least one variable")
        bad = [k for k in value if not re.fullmatch(r"[A-Za-z_][\w.-]*", k)]
        if bad:
            raise ValueError(f"not a placeholder name: {', '.join(bad)}")
        return value


class UserFuncParams(PythonParams):
    args: dict[str, Any] = Field(default_factory=dict, description="Upstream's name for kwargs.")


def _choose(ctx: StepContext, chosen: str | None, others: list[str], result: Any) -> StepOutcome:
    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    skip = tuple(s for s in others if s != chosen)
    output = json.dumps({"result": result, "chosen": chosen})
    return StepOutcome(StepStatus.DONE, output=output, skip=skip)


class IFComponent(Component):
    name = "IF"
    Params: ClassVar[type[StrictModel]] = IFParams
    wants_input = True
    summary = "Run true_component or false_component, by a condition; the other is skipped."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

        p = IFParams.model_validate(ctx.params)
        try:
            ok = evaluate(p.condition, p.value if p.value is not None else ctx.input)
        except ConditionError as exc:
            return StepOutcome(StepStatus.FAILED, error=f"condition: {exc}")
        chosen = p.true_component if ok else p.false_component
        return _choose(ctx, chosen, [p.true_component, p.false_component], ok)


class SwitchComponent(Component):
    name = "Switch"
    Params: ClassVar[type[StrictModel]] = SwitchParams
    wants_input = True
    summary = "Run the step of the first case that holds (or default); the others are skipped."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

        p = SwitchParams.model_validate(ctx.params)
        data = p.value if p.value is not None else ctx.input
        names = [c.component for c in p.cases] + ([p.default] if p.default else [])
        for i, case in enumerate(p.cases):
            try:
                if evaluate(case.condition, data):
                    return _choose(ctx, case.component, names, i)
            except ConditionError as exc:
                return StepOutcome(StepStatus.FAILED, error=f"cases[{i}].condition: {exc}")
        if p.default is None:
            return StepOutcome(StepStatus.FAILED, error="no case holds and there is no default")
        return _choose(ctx, p.default, names, "default")


class SetVariablesComponent(Component):
    name = "SetVariables"
    Params: ClassVar[type[StrictModel]] = SetVariablesParams
    summary = "Set placeholders for the steps after this one."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

        p = SetVariablesParams.model_validate(ctx.params)
        variables = {**p.vars, **{f"{ctx.step_id}_{k}": v for k, v in p.vars.items()}}
        return StepOutcome(
            StepStatus.DONE, output=json.dumps(p.vars, default=str), variables=variables
        )


class UserFuncComponent(Component):
    name = "UserFunc"
    Params: ClassVar[type[StrictModel]] = UserFuncParams
    remote = True
    summary = "Upstream's name for Python: call 'package.module:function' with `args`."

    async def run(self, ctx: StepContext) -> StepOutcome:
        kwargs = {**(ctx.params.get("kwargs") or {}), **(ctx.params.get("args") or {})}
        params = {"function": ctx.params["function"], "kwargs": kwargs}
        return await PythonComponent(params).run(replace(ctx, params=params, component="Python"))


COMPONENTS: list[type[Component]] = [
    IFComponent,
    SwitchComponent,
    SetVariablesComponent,
    UserFuncComponent,
]
