"""flowtaskd.daemon.runs.recorder: a run's row at start, its attempts and end, in a real
history; params masked; write failures logged, never raised."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.daemon.runs.recorder import record_end, record_start
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.engine.stats import AttemptStats, StepMonitor, TaskMonitor
from flowtaskd.tasks import TaskPile


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


def _request(**kw: object) -> RunRequest:
    pile = TaskPile(
        {
            "name": "report",
            "secrets": ["TOKEN"],
            "params": {"TOKEN": "x", "day": "today"},
            "steps": [{"Dummy": {"name": "a"}}, {"Dummy": {"name": "b"}}],
        }
    )
    return RunRequest(pile, "manual", **kw)  # type: ignore[arg-type]


def _stats(req: RunRequest, status: TaskStatus = TaskStatus.DONE) -> TaskMonitor:
    a = StepMonitor("a", "Dummy", StepStatus.DONE, 10.0, 11.0)
    a.attempts = [
        AttemptStats(1, "failed", 10.0, 10.5, exit_code=1, error="boom"),
        AttemptStats(2, "done", 10.5, 11.0, exit_code=0),
    ]
    b = StepMonitor("b", "Dummy", StepStatus.DONE, 11.0, 12.0, items=2)
    b.attempts = [AttemptStats(1, "done", 11.0, 12.0, item=i) for i in range(2)]
    return TaskMonitor(
        "report", req.run_id, status, started_at=10.0, finished_at=12.0, steps={"a": a, "b": b}
    )


async def test_start_writes_the_row_with_secret_params_hidden(store: HistoryStore) -> None:
    req = _request(
        params={"TOKEN": "s3cr3t-value", "day": "2026-01-01"},
        source="cli",
        queued_at=5.0,
        fire_time=4.0,
        retry_of="r0",
        backfill_id="b1",
    )
    await record_start(store, req, "running", started_at=6.0)
    found = store.get_run(req.run_id)
    assert found is not None
    run, attempts = found
    assert attempts == []
    assert (run.task, run.trigger, run.status, run.source) == ("report", "manual", "running", "cli")
    assert run.params == {"TOKEN": "***", "day": "2026-01-01"}
    assert (run.queued_at, run.started_at, run.logical_time) == (5.0, 6.0, 4.0)
    assert (run.retry_of, run.backfill_id) == ("r0", "b1")
    kept = store.get_definition(req.run_id)
    assert kept is not None and kept["name"] == "report"
    assert "s3cr3t-value" not in str(kept)


async def test_end_records_every_attempt_and_the_stats(store: HistoryStore) -> None:
    req = _request()
    await record_start(store, req, "running")
    await record_end(store, req, _stats(req), None, now=99.0)
    found = store.get_run(req.run_id)
    assert found is not None
    run, attempts = found
    assert run.status == "done" and run.finished_at == 12.0 and run.duration == 2.0
    assert run.stats is not None and set(run.stats["steps"]) == {"a", "b"}
    got = sorted((a.step_id, a.attempt, a.status, a.exit_code) for a in attempts)
    assert got == [
        ("a", 1, "failed", 1),
        ("a", 2, "done", 0),
        ("b[0]", 1, "done", None),
        ("b[1]", 1, "done", None),
    ]


async def test_a_cancelled_run_gets_the_cancel_reason(store: HistoryStore) -> None:
    req = _request()
    await record_start(store, req, "running")
    req.cancel_reason = "cancelled by alice"
    await record_end(store, req, _stats(req, TaskStatus.CANCELLED), None, now=99.0)
    found = store.get_run(req.run_id)
    assert found is not None
    assert (found[0].status, found[0].error) == ("cancelled", "cancelled by alice")


@pytest.mark.parametrize(("reason", "status"), [(None, "failed"), ("shutdown", "cancelled")])
async def test_a_run_that_never_ran(store: HistoryStore, reason: str | None, status: str) -> None:
    req = _request()
    await record_start(store, req, "pending")
    req.cancel_reason = reason
    await record_end(store, req, None, "could not start", now=42.0)
    found = store.get_run(req.run_id)
    assert found is not None
    assert (found[0].status, found[0].finished_at, found[0].error) == (
        status,
        42.0,
        "could not start",
    )


async def test_write_failures_are_logged_not_raised(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    await store.open()
    await store.close()  # every write now fails
    req = _request()
    with capture_logs() as logs:
        await record_start(store, req, "running")
        await record_end(store, req, _stats(req), None, now=1.0)
        await record_end(store, req, None, "x", now=1.0)
    failed = [e for e in logs if e["event"] == "history_write_failed"]
    assert len(failed) == 3
    assert all(e["run_id"] == req.run_id and e["task"] == "report" for e in failed)
    assert "not open" in failed[0]["error"]
