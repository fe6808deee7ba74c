"""``flowtaskd.components.context``: the plain data of one step attempt and its outcome."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import pytest

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.core.rules import StepStatus


async def _subrun(ref: str, params: Mapping[str, Any]) -> StepOutcome:
    return StepOutcome(StepStatus.DONE)


def ctx(**kw: Any) -> StepContext:
    return StepContext(**{"task": "t", "run_id": "r", "step_id": "s", "component": "C",
                          "params": {}, **kw})  # fmt: skip


def test_key_and_log_stem_name_the_attempt() -> None:
    c = ctx(attempt=3)
    assert c.key == "t-r-s-3"
    assert c.log_stem == "s.3"


def test_shippable_drops_the_runtime_and_pickles() -> None:
    async def local_subrun(ref: str, params: Mapping[str, Any]) -> StepOutcome:
        return await _subrun(ref, params)

    c = ctx(runtime=local_subrun, env={"A": "1"}, secrets=("x",))
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(c)  # a local function in the runtime: not shippable as it is
    shipped = c.shippable()
    assert shipped.runtime is None and c.runtime is not None
    assert pickle.loads(pickle.dumps(shipped)) == shipped
    assert shipped == c  # the runtime is not part of equality


def test_contexts_are_frozen() -> None:
    c = ctx()
    with pytest.raises(AttributeError):
        c.attempt = 2  # type: ignore[misc]


def test_outcome_ok_only_when_done() -> None:
    assert StepOutcome(StepStatus.DONE).ok
    assert not StepOutcome(StepStatus.FAILED).ok
    assert not StepOutcome(StepStatus.SKIPPED).ok
    o = StepOutcome(StepStatus.DONE)
    assert (o.output, o.skip, o.variables, o.stdout_tail) == (None, (), None, "")
