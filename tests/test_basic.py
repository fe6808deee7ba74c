"""``flowtaskd.components.basic``: ``Dummy`` (message, wait, fail, timeout) and ``RunTask`` /
``SubTask`` (which parameters reach the sub-run), against a real :class:`StepContext`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.components.base import Component
from flowtaskd.components.basic import DummyComponent, RunTaskComponent, SubTaskComponent
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.core.rules import StepStatus


class SubRuns:
    """A :class:`~flowtaskd.components.context.SubRun` that keeps what it was asked."""

    def __init__(self, outcome: StepOutcome) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []

    async def __call__(
        self, ref: str, params: Mapping[str, Any], program: str | None = None
    ) -> StepOutcome:
        self.calls.append((ref, dict(params), program))
        return self.outcome


async def run(comp: type[Component], raw: dict[str, Any], **kw: Any) -> StepOutcome:
    params = comp.Params.model_validate(raw).model_dump()
    ctx = StepContext("t", "r1", f"{comp.name}_1", comp.name, params, **kw)
    return await comp(params).run(ctx)


async def test_dummy_is_done_with_its_message_as_output() -> None:
    out = await run(DummyComponent, {})
    assert out.status is StepStatus.DONE and out.output is None and out.error is None
    out = await run(DummyComponent, {"message": "hello"})
    assert out.ok and out.output == "hello"


async def test_dummy_fails_on_purpose() -> None:
    out = await run(DummyComponent, {"fail": True})
    assert out.status is StepStatus.FAILED and out.error == "failed"
    out = await run(DummyComponent, {"fail": True, "message": "boom"})
    assert (out.status, out.output, out.error) == (StepStatus.FAILED, "boom", "boom")


async def test_dummy_waits_then_finishes() -> None:
    out = await run(DummyComponent, {"sleep": "10ms", "message": "m"}, timeout=5.0)
    assert out.ok and out.output == "m"


async def test_dummy_wait_longer_than_the_timeout_times_out() -> None:
    out = await run(DummyComponent, {"sleep": 30, "fail": True}, timeout=0.05)
    assert out.status is StepStatus.TIMED_OUT and out.error == "timed out"


def test_dummy_params_are_strict() -> None:
    with pytest.raises(ValidationError, match="sleeep"):
        DummyComponent.Params.model_validate({"sleeep": 1})


async def test_run_task_needs_the_local_executor() -> None:
    out = await run(RunTaskComponent, {"task": "other.yaml"})
    assert out.status is StepStatus.FAILED
    assert out.error == "RunTask needs the local executor"
    out = await run(SubTaskComponent, {"task": "other", "program": "p"})
    assert out.error == "SubTask needs the local executor"


async def test_run_task_passes_its_params_and_returns_the_sub_runs_outcome() -> None:
    sub = SubRuns(StepOutcome(StepStatus.DONE, output="sub ok"))
    raw = {"task": "jobs/other.yaml", "params": {"day": "2026-12-08", "n": 2}}
    out = await run(RunTaskComponent, raw, runtime=sub)
    assert out is sub.outcome
    assert sub.calls == [("jobs/other.yaml", {"day": "2026-12-08", "n": 2}, None)]


async def test_a_failed_sub_run_is_the_steps_failure() -> None:
    sub = SubRuns(StepOutcome(StepStatus.FAILED, error="sub-run failed"))
    out = await run(RunTaskComponent, {"task": "x", "program": "prog"}, runtime=sub)
    assert out.status is StepStatus.FAILED and out.error == "sub-run failed"
    assert sub.calls == [("x", {}, "prog")]


async def test_sub_task_other_keys_become_the_sub_runs_params() -> None:
    sub = SubRuns(StepOutcome(StepStatus.DONE))
    raw = {
        "program": "sales",
        "task": "daily",
        "params": {"a": 1, "region": "x"},
        "region": "eu",  # a key of upstream's SubTask: a param of the sub-run, wins over params
        "pass_input": True,  # accepted, not a param
        "conditions": {"k": "v"},  # likewise
    }
    await run(SubTaskComponent, raw, runtime=sub)
    assert sub.calls == [("daily", {"a": 1, "region": "eu"}, "sales")]


def test_run_task_refuses_unknown_keys_but_sub_task_keeps_them() -> None:
    with pytest.raises(ValidationError, match="region"):
        RunTaskComponent.Params.model_validate({"task": "x", "region": "eu"})
    p = SubTaskComponent.Params.model_validate({"task": "x", "region": "eu"})
    assert p.model_dump()["region"] == "eu"
