"""Trigger rules (``core.rules.decide``): what a step does once its upstream is final,
rule by rule and status by status, as the README's table says (Airflow's meanings)."""

from __future__ import annotations

import pytest

from flowtaskd.core.rules import FINAL_STEP_STATUSES, Decision, StepStatus, TriggerRule, decide

S = StepStatus
RUN = Decision(run=True)


def ups(*statuses: StepStatus) -> list[tuple[str, StepStatus]]:
    return [(f"u{i}", st) for i, st in enumerate(statuses)]


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_root_always_runs(rule: TriggerRule) -> None:
    assert decide(rule, []) == RUN


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [
        (TriggerRule.ALL_SUCCESS, [S.DONE, S.DONE], None),
        (TriggerRule.ALL_SUCCESS, [S.DONE, S.FAILED], S.UPSTREAM_FAILED),
        (TriggerRule.ALL_SUCCESS, [S.DONE, S.TIMED_OUT], S.UPSTREAM_FAILED),
        (TriggerRule.ALL_SUCCESS, [S.DONE, S.CANCELLED], S.UPSTREAM_FAILED),
        (TriggerRule.ALL_SUCCESS, [S.DONE, S.SKIPPED], S.SKIPPED),
        (TriggerRule.ALL_SUCCESS, [S.SKIPPED, S.FAILED], S.UPSTREAM_FAILED),  # failure wins
        (TriggerRule.ALL_DONE, [S.FAILED, S.SKIPPED, S.UPSTREAM_FAILED], None),
        (TriggerRule.ALL_FAILED, [S.FAILED, S.UPSTREAM_FAILED], None),
        (TriggerRule.ALL_FAILED, [S.FAILED, S.DONE], S.SKIPPED),
        (TriggerRule.ONE_SUCCESS, [S.FAILED, S.DONE], None),
        (TriggerRule.ONE_SUCCESS, [S.FAILED, S.SKIPPED], S.UPSTREAM_FAILED),
        (TriggerRule.ONE_FAILED, [S.DONE, S.TIMED_OUT], None),
        (TriggerRule.ONE_FAILED, [S.DONE, S.SKIPPED], S.SKIPPED),
        (TriggerRule.NONE_FAILED, [S.DONE, S.SKIPPED], None),
        (TriggerRule.NONE_FAILED, [S.DONE, S.CANCELLED], S.UPSTREAM_FAILED),
        (TriggerRule.ALWAYS, [S.FAILED, S.CANCELLED], None),
    ],
)
def test_each_rule(rule: TriggerRule, upstream: list[StepStatus], expected: S | None) -> None:
    got = decide(rule, ups(*upstream))
    if expected is None:
        assert got == RUN
    else:
        assert (got.run, got.status) == (False, expected)
        assert got.reason  # a step that does not run always says why


def test_the_reason_names_the_upstream_steps_in_order() -> None:
    got = decide(TriggerRule.ALL_SUCCESS, [("zeta", S.FAILED), ("alpha", S.TIMED_OUT)])
    assert got.reason == "upstream failed: alpha, zeta"


def test_a_decision_never_leaves_a_step_unfinished() -> None:
    for rule in TriggerRule:
        for st in FINAL_STEP_STATUSES:
            got = decide(rule, ups(st, S.DONE))
            assert got.run or got.status in FINAL_STEP_STATUSES
