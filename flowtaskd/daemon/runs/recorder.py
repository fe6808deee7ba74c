"""Recording runs in the history: a row when a run starts, its attempts and stats at the end.

Write failures are logged, never raised: a full disk must not stop runs. Params are
masked here; stats arrive masked from the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from flowtaskd.core.rules import TaskStatus
from flowtaskd.daemon.runs.records import AttemptRecord, RunRecord, RunStore
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER

if TYPE_CHECKING:
    from flowtaskd.daemon.runs.request import RunRequest

__all__ = ["record_end", "record_start"]

_log = structlog.get_logger("flowtaskd.runs")
_CANCELLED = str(TaskStatus.CANCELLED)
_FAILED = str(TaskStatus.FAILED)


async def record_start(store: RunStore, req: RunRequest, status: str, **fields: Any) -> None:
    """Insert the run's row (``running``, or a final status for a run that never started)."""
    record = RunRecord(
        run_id=req.run_id,
        task=req.task,
        trigger=req.trigger,
        status=status,
        source=req.source,
        params=_masked_params(req),
        queued_at=req.queued_at,
        inbox_file=req.inbox_file,
        schedule_id=req.schedule_id,
        retry_of=req.retry_of,
        logical_time=req.logical,
        backfill_id=req.backfill_id,
        **fields,
    )
    try:
        await store.insert_run(record)
        await store.put_definition(req.run_id, req.pile)
    except FlowtaskError as exc:
        _log.error("history_write_failed", task=req.task, run_id=req.run_id, error=str(exc))


def _masked_params(req: RunRequest) -> dict[str, Any]:
    """The params with the task's secret ones hidden: the row is written before the run
    registers its secret values with the global masker."""
    secret = set(req.pile.definition.header.secrets)
    params = {k: "***" if k in secret else v for k, v in req.params.items()}
    masked: dict[str, Any] = GLOBAL_MASKER.mask_obj(params)
    return masked


async def record_end(
    store: RunStore, req: RunRequest, stats: TaskMonitor | None, error: str | None, now: float
) -> None:
    """Record every attempt and the run's final status and stats."""
    try:
        if stats is None:
            status = _CANCELLED if req.cancel_reason is not None else _FAILED
            await store.update_run(req.run_id, status=status, finished_at=now, error=error)
            return
        d = stats.to_dict()
        for sid, s in d["steps"].items():
            for t in s["tries"]:
                await store.record_attempt(_attempt(req.run_id, sid, t))
        if d["status"] == _CANCELLED and req.cancel_reason is not None:
            d["error"] = req.cancel_reason
        await store.update_run(
            req.run_id,
            status=d["status"],
            finished_at=d["finished_at"],
            duration=d["duration"],
            error=d["error"],
            stats=d,
        )
    except FlowtaskError as exc:
        _log.error("history_write_failed", task=req.task, run_id=req.run_id, error=str(exc))


def _attempt(run_id: str, sid: str, t: Mapping[str, Any]) -> AttemptRecord:
    return AttemptRecord(
        run_id=run_id,
        step_id=sid if t["item"] is None else f"{sid}[{t['item']}]",
        attempt=t["attempt"],
        status=t["status"],
        started_at=t["started_at"],
        finished_at=t["finished_at"],
        duration=t["duration"],
        exit_code=t["exit_code"],
        cpu_user=t["cpu_user"],
        cpu_system=t["cpu_system"],
        max_rss_kb=t["max_rss_kb"],
        bytes_out=t["bytes_out"],
        error=t["error"],
        log_path=t["log_path"],
    )
