"""``flowtaskd.engine.chain``: upstream's ``NextTask``: when ``on`` fires, and how the
continuations run (in order, each awaited, a failure logged and never raised)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from flowtaskd.components.context import StepOutcome
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.core.stepkeys import ChainOn, NextTaskSpec
from flowtaskd.engine.chain import fire_continuations, matches
from flowtaskd.engine.stats import TaskMonitor

FIRES = {
    ChainOn.SUCCESS: {TaskStatus.DONE},
    ChainOn.FAILURE: {TaskStatus.FAILED},
    ChainOn.ALWAYS: set(TaskStatus),
    ChainOn.NODATA: set(),  # upstream end states flowtaskd does not have: never
    ChainOn.WARNING: set(),
}


@pytest.mark.parametrize("on", list(ChainOn))
def test_matches(on: ChainOn) -> None:
    assert {s for s in TaskStatus if matches(on, s)} == FIRES[on]


class SubRuns:
    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []

    async def __call__(
        self, ref: str, params: Mapping[str, Any], program: str | None = None
    ) -> StepOutcome:
        self.calls.append((ref, dict(params), program))
        if ref in self.fail:
            return StepOutcome(StepStatus.FAILED, error=f"{ref} broke")
        return StepOutcome(StepStatus.DONE)


def nt(i: int, task: str, on: str = "success", **kw: Any) -> NextTaskSpec:
    return NextTaskSpec(step_id=f"NextTask_{i}", index=i, task=task, on=ChainOn(on), **kw)


async def test_the_continuations_that_match_run_in_order_with_their_variables() -> None:
    stats = TaskMonitor("t", "r1", status=TaskStatus.DONE)
    sub = SubRuns()
    chain = [
        nt(2, "report", variables={"day": "2026-12-08"}),
        nt(3, "alarm", on="failure"),
        nt(4, "cleanup", on="always", program="ops"),
    ]
    with capture_logs() as logs:
        await fire_continuations(chain, stats, sub, structlog.get_logger("t"))
    assert sub.calls == [("report", {"day": "2026-12-08"}, None), ("cleanup", {}, "ops")]
    assert [(e["event"], e["next"]) for e in logs] == [
        ("next_task", "report"),
        ("next_task", "cleanup"),
    ]
    assert logs[1]["program"] == "ops" and logs[1]["step"] == "NextTask_4"


async def test_a_failed_continuation_is_logged_and_the_next_still_runs() -> None:
    stats = TaskMonitor("t", "r1", status=TaskStatus.FAILED)
    sub = SubRuns(fail=frozenset({"alarm"}))
    with capture_logs() as logs:
        await fire_continuations(
            [nt(1, "alarm", on="failure"), nt(2, "after", on="always")],
            stats,
            sub,
            structlog.get_logger("t"),
        )
    assert [c[0] for c in sub.calls] == ["alarm", "after"]
    failed = [e for e in logs if e["event"] == "next_task_failed"]
    assert len(failed) == 1 and failed[0]["error"] == "alarm broke"
    assert failed[0]["log_level"] == "warning" and failed[0]["next"] == "alarm"


async def test_the_variables_given_to_a_sub_run_are_a_copy() -> None:
    spec = nt(1, "x", variables={"a": 1})

    class Mutating(SubRuns):
        async def __call__(
            self, ref: str, params: Mapping[str, Any], program: str | None = None
        ) -> StepOutcome:
            assert isinstance(params, dict)
            params["a"] = 2
            return StepOutcome(StepStatus.DONE)

    await fire_continuations(
        [spec], TaskMonitor("t", "r", status=TaskStatus.DONE), Mutating(), structlog.get_logger()
    )
    assert spec.variables == {"a": 1}


async def test_nothing_fires_for_a_cancelled_run_but_always() -> None:
    stats = TaskMonitor("t", "r1", status=TaskStatus.CANCELLED)
    sub = SubRuns()
    chain = [nt(1, "a"), nt(2, "b", on="failure"), nt(3, "c", on="nodata"), nt(4, "d", on="always")]
    await fire_continuations(chain, stats, sub, structlog.get_logger())
    assert [c[0] for c in sub.calls] == ["d"]
