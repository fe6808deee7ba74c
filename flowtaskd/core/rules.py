"""Step and run statuses, and the trigger rules that decide whether a step runs.

Pure: no I/O, no asyncio. The engine asks :func:`decide` once every upstream step of a
step is final.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FINAL_STEP_STATUSES",
    "Decision",
    "SkipError",
    "StepStatus",
    "TaskStatus",
    "TriggerRule",
    "decide",
]


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ALL_FAILED = "all_failed"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"
    ALWAYS = "always"


class SkipError(StrEnum):
    """What a step's failure means for the run (upstream flowtask's ``skipError``)."""

    ENFORCE = "enforce"  # the step fails, and so does the task
    SKIP = "skip"  # the run goes on as if the step were done
    LOG = "log"  # the failure is recorded; downstream sees it failed; the task does not fail


FINAL_STEP_STATUSES = frozenset(
    {
        StepStatus.DONE,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.UPSTREAM_FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.CANCELLED,
    }
)
_SUCCESS = frozenset({StepStatus.DONE})
_FAILURE = frozenset(
    {StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.UPSTREAM_FAILED, StepStatus.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """``run`` or a final status the step takes without running, and why."""

    run: bool
    status: StepStatus | None = None
    reason: str = ""


_RUN = Decision(run=True)


def decide(rule: TriggerRule, upstream: Iterable[tuple[str, StepStatus]]) -> Decision:
    """Decide what a step does once every upstream step is final.

    ``upstream`` pairs each upstream step id with its (effective) final status. A step with
    no upstream always runs. ``skipped`` upstreams count as neither success nor failure,
    except under ``all_success``, where a skipped upstream skips the step (as Airflow does).
    """
    ups = list(upstream)
    if not ups or rule is TriggerRule.ALWAYS:
        return _RUN
    failed = [sid for sid, st in ups if st in _FAILURE]
    succeeded = [sid for sid, st in ups if st in _SUCCESS]
    skipped = [sid for sid, st in ups if st is StepStatus.SKIPPED]
    match rule:
        case TriggerRule.ALL_SUCCESS:
            if failed:
                return Decision(
                    False, StepStatus.UPSTREAM_FAILED, _names("upstream failed", failed)
                )
            if skipped:
                return Decision(False, StepStatus.SKIPPED, _names("upstream skipped", skipped))
            return _RUN
        case TriggerRule.ALL_DONE:
            return _RUN
        case TriggerRule.ALL_FAILED:
            if len(failed) == len(ups):
                return _RUN
            return Decision(False, StepStatus.SKIPPED, "all_failed: not every upstream failed")
        case TriggerRule.ONE_SUCCESS:
            if succeeded:
                return _RUN
            return Decision(False, StepStatus.UPSTREAM_FAILED, "one_success: no upstream succeeded")
        case TriggerRule.ONE_FAILED:
            if failed:
                return _RUN
            return Decision(False, StepStatus.SKIPPED, "one_failed: no upstream failed")
        case TriggerRule.NONE_FAILED:
            if failed:
                return Decision(
                    False, StepStatus.UPSTREAM_FAILED, _names("upstream failed", failed)
                )
            return _RUN
    return _RUN  # pragma: no cover - every rule handled above


def _names(what: str, ids: list[str]) -> str:
    return f"{what}: {', '.join(sorted(ids))}"
