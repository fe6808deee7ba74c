"""Per-run and per-step statistics: ``TaskMonitor`` and ``StepMonitor``.

Filled in by the engine as a run goes; ``to_dict()`` is the JSON shape of ``flowtaskd exec
--json``, of the ``completed`` event's payload and of the history's stats column. CPU
times and peak RSS come from the OS's accounting of each finished child (``wait4``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowtaskd.components.context import StepOutcome
from flowtaskd.core.rules import StepStatus, TaskStatus

__all__ = ["AttemptStats", "StepMonitor", "TaskMonitor"]


@dataclass(slots=True)
class AttemptStats:
    attempt: int
    status: str
    started_at: float
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss_kb: int | None = None
    bytes_out: int | None = None
    log_path: str | None = None
    item: int | None = None
    worker: str | None = None  # where it ran, when not in the daemon (a Dask worker)

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "exit_code": self.exit_code,
            "error": self.error,
            "cpu_user": self.cpu_user,
            "cpu_system": self.cpu_system,
            "max_rss_kb": self.max_rss_kb,
            "bytes_out": self.bytes_out,
            "log_path": self.log_path,
            "item": self.item,
            "worker": self.worker,
        }


@dataclass(slots=True)
class StepMonitor:
    """What one step did over all its attempts (and all its group items)."""

    step_id: str
    component: str
    status: StepStatus = StepStatus.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    reason: str | None = None
    error: str | None = None
    output: str | None = None
    exit_code: int | None = None
    items: int | None = None
    attempts: list[AttemptStats] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def record(self, a: AttemptStats, outcome: StepOutcome) -> None:
        a.status = str(outcome.status)
        a.exit_code = outcome.exit_code
        a.error = outcome.error
        a.cpu_user, a.cpu_system = outcome.cpu_user, outcome.cpu_system
        a.max_rss_kb, a.bytes_out, a.log_path = (
            outcome.max_rss_kb,
            outcome.bytes_out,
            outcome.log_path,
        )
        a.worker = outcome.worker
        self.exit_code = outcome.exit_code
        if outcome.output is not None:
            self.output = outcome.output

    def _sum(self, name: str) -> float | None:
        values = [getattr(a, name) for a in self.attempts if getattr(a, name) is not None]
        return sum(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        rss = [a.max_rss_kb for a in self.attempts if a.max_rss_kb is not None]
        return {
            "status": str(self.status),
            "component": self.component,
            "attempts": max((a.attempt for a in self.attempts), default=0),
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "output": self.output,
            "error": self.error,
            "reason": self.reason,
            "items": self.items,
            "cpu_user": self._sum("cpu_user"),
            "cpu_system": self._sum("cpu_system"),
            "max_rss_kb": max(rss) if rss else None,
            "bytes_out": self._sum("bytes_out"),
            "tries": [a.to_dict() for a in self.attempts],
        }


@dataclass(slots=True)
class TaskMonitor:
    """Everything collected about one run (flowtask's ``TaskMonitor``)."""

    task: str
    run_id: str
    status: TaskStatus = TaskStatus.PENDING
    trigger: str = "manual"
    params: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    steps: dict[str, StepMonitor] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps.values():
            out[str(s.status)] = out.get(str(s.status), 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "run_id": self.run_id,
            "status": str(self.status),
            "trigger": self.trigger,
            "params": self.params,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "error": self.error,
            "steps": {sid: s.to_dict() for sid, s in self.steps.items()},
        }
