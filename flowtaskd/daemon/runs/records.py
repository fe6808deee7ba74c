"""What the history holds (``RunRecord``, ``AttemptRecord``) and ``RunStore``, the
protocol every user of the history goes through.

The daemon's parts (the run manager and its recorder, the scheduler's catch-up, the control
requests, the CLI) know a run store only by this protocol; the SQLite
:class:`~flowtaskd.daemon.runs.store.HistoryStore` is the one the composition root builds.
Another store (PostgreSQL, for a team sharing one history) implements the same methods.
Writes are coroutines (they may wait for a writer); reads are plain calls, made off the
event loop by their callers (``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flowtaskd.core.pile import TaskPile

__all__ = ["AttemptRecord", "RunRecord", "RunStore"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a task, as the history holds it."""

    run_id: str
    task: str
    trigger: str  # schedule | inbox | manual | catchup | exec | subrun | retry | backfill
    status: str  # pending | running | done | failed | cancelled | interrupted
    source: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None
    log_dir: str | None = None
    inbox_file: str | None = None
    schedule_id: str | None = None
    retry_of: str | None = None  # the run this one retries
    logical_time: float | None = None  # a schedule's fire time, a backfill's date
    backfill_id: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of one step of a run."""

    run_id: str
    step_id: str
    attempt: int
    status: str
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    exit_code: int | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss_kb: int | None = None
    bytes_out: int | None = None
    error: str | None = None
    log_path: str | None = None


class RunStore(Protocol):
    """The run history, as its users see it."""

    @property
    def path(self) -> Path: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert_run(self, run: RunRecord) -> None: ...

    async def update_run(self, run_id: str, **fields: Any) -> None: ...

    async def record_attempt(self, attempt: AttemptRecord) -> None: ...

    async def mark_interrupted(self, now: float) -> list[RunRecord]:
        """Mark runs a crash left unfinished ``interrupted``; return them."""
        ...

    async def set_last_fire(self, schedule_id: str, ts: float) -> None: ...

    async def set_last_fires(self, fires: Mapping[str, float]) -> None:
        """:meth:`set_last_fire` for many schedules, in one transaction."""
        ...

    async def prune(
        self, now: float, retention_days: float | None, max_runs_per_task: int | None
    ) -> int:
        """Drop finished runs by age and count per task; return how many went."""
        ...

    def last_fires(self) -> dict[str, float]: ...

    def list_runs(self, task: str | None = None, limit: int = 20) -> list[RunRecord]: ...

    def get_run(self, run_id: str) -> tuple[RunRecord, list[AttemptRecord]] | None:
        """A run by id or unique prefix, with its attempts; None when there is none."""
        ...

    def find_runs(
        self,
        *,
        task: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        since: float | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[RunRecord], int]:
        """A page of matching runs, newest first, without stats; and how many match."""
        ...

    def recent_statuses(
        self, n: int, tasks: Sequence[str] | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        """The newest ``n`` (run_id, status) of each task, newest first."""
        ...

    # -- for operating runs (retry, pause; see flowtaskd.daemon.runs.extras) ------------
    async def put_definition(self, run_id: str, pile: TaskPile) -> None:
        """Keep the definition a run used (secrets hidden)."""
        ...

    def get_definition(self, run_id: str) -> dict[str, Any] | None: ...

    def retries_of(self, run_id: str) -> list[str]: ...

    def paused_targets(self) -> dict[str, float]: ...

    async def add_pause(self, target: str, now: float) -> bool: ...

    async def remove_pause(self, target: str) -> bool: ...
