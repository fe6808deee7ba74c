"""``RunRequest``: one run to make (which definition, with what, and why), as every
trigger hands it to the run manager."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowtaskd.core.options import Overlap
from flowtaskd.core.pile import TaskPile
from flowtaskd.engine.runner import Kept
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.tasks.task import new_run_id

__all__ = ["SHUTDOWN", "OnDone", "RunRequest"]

SHUTDOWN = "cancelled at shutdown"
"""The ``cancel_reason`` of runs the drain cancelled."""

OnDone = Callable[["RunRequest", TaskMonitor | None, str | None], Awaitable[None]]
"""``on_done(request, stats, error)`` once a run is over and recorded; ``stats`` is None
when the run never ran (cancelled while queued) or could not start."""


@dataclass(slots=True)
class RunRequest:
    """One run to make: which definition (a snapshot), with what, and why."""

    pile: TaskPile
    trigger: str  # schedule | inbox | manual | catchup | exec | retry | backfill
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    schedule_id: str | None = None
    overlap: Overlap | None = None  # overrides the task's (a schedule entry may)
    inbox_file: str | None = None
    inbox: str | None = None  # the inbox's name, for bounded metric labels
    fire_time: float | None = None
    on_done: OnDone | None = None
    run_id: str = field(default_factory=new_run_id)
    queued_at: float = 0.0
    cancel_reason: str | None = None  # set when the manager cancels it
    logical_time: float | None = None  # masks evaluate at it (default: ``fire_time``)
    retry_of: str | None = None  # the run this one retries
    kept: Mapping[str, Kept] | None = None  # the steps a retry does not run again
    backfill_id: str | None = None

    @property
    def logical(self) -> float | None:
        return self.logical_time if self.logical_time is not None else self.fire_time

    @property
    def task(self) -> str:
        return self.pile.name
