"""Upstream flowtask's ``NextTask``: tasks started after a task ends, when ``on`` matches.

``on: success`` fires after a run that ended ``done``, ``failure`` after ``failed``,
``always`` after either (and after ``cancelled``); upstream's ``nodata`` and ``warning``
name end states flowtaskd does not have, so they never fire (the README says so). A
continuation runs as a sub-run with its ``variables`` as params, by ``program`` + ``task``
as upstream finds it; it is awaited in turn, and its failure is logged, never the task's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowtaskd.components.context import SubRun
from flowtaskd.core.rules import TaskStatus
from flowtaskd.core.stepkeys import ChainOn, NextTaskSpec
from flowtaskd.engine.stats import TaskMonitor

__all__ = ["fire_continuations", "matches"]


def matches(on: ChainOn, status: TaskStatus) -> bool:
    if on is ChainOn.ALWAYS:
        return True
    if on is ChainOn.SUCCESS:
        return status is TaskStatus.DONE
    if on is ChainOn.FAILURE:
        return status is TaskStatus.FAILED
    return False


async def fire_continuations(
    continuations: Sequence[NextTaskSpec], stats: TaskMonitor, subrun: SubRun, log: Any
) -> None:
    for nt in continuations:
        if not matches(nt.on, stats.status):
            continue
        params = dict(nt.variables)
        log.info("next_task", step=nt.step_id, next=nt.task, program=nt.program)
        outcome = await subrun(nt.task, params, nt.program)
        if not outcome.ok:
            log.warning("next_task_failed", step=nt.step_id, next=nt.task, error=outcome.error)
