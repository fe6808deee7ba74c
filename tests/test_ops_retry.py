"""flowtaskd.daemon.ops.retry: which definition a retry uses, its params, its refusals,
and the request it queues; over a real history file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.options import Overlap
from flowtaskd.core.rules import StepStatus
from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.ops.retry import plan_retry, submit_retry
from flowtaskd.daemon.runs.records import RunRecord
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.engine.runner import Kept
from flowtaskd.tasks import TaskPile

RAW: dict[str, Any] = {
    "name": "two",
    "params": {"day": "today"},
    "steps": [{"Dummy": {"name": "a"}}, {"Dummy": {"name": "b"}}],
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


async def _run(
    store: HistoryStore,
    run_id: str,
    steps: dict[str, str],
    *,
    raw: dict[str, Any] | None = RAW,
    status: str = "failed",
    **kw: Any,
) -> str:
    stats = {"steps": {k: {"status": v, "output": f"{k}-out"} for k, v in steps.items()}}
    await store.insert_run(
        RunRecord(run_id, "two", "schedule", status, stats=stats, source="/lib/two.yaml", **kw)
    )
    if raw is not None:
        await store.put_definition(run_id, TaskPile(raw))
    return run_id


async def test_the_kept_definition_is_used_with_the_run_params(store: HistoryStore) -> None:
    rid = await _run(
        store, "r1", {"a": "done", "b": "failed"}, params={"day": "2026-01-01"}, logical_time=7.0
    )
    plan = plan_retry(store, rid)
    assert [s.id for s in plan.pile] == ["a", "b"]
    assert plan.pile.definition.file == "/lib/two.yaml"
    assert plan.params == {"day": "2026-01-01"}
    assert plan.kept == {"a": Kept(StepStatus.DONE, "a-out", "r1")}
    assert plan.rerun == ["b"]
    assert plan.summary() == {
        "retry_of": "r1",
        "task": "two",
        "kept": ["a"],
        "rerun": ["b"],
        "notes": [],
    }


async def test_submit_retry_queues_a_retry_request(store: HistoryStore) -> None:
    rid = await _run(
        store, "r1", {"a": "done", "b": "failed"}, params={"day": "d"}, logical_time=7.0
    )
    plan = plan_retry(store, rid)
    got: list[RunRequest] = []
    assert submit_retry(plan, lambda req: got.append(req) or req.run_id) == got[0].run_id
    req = got[0]
    assert (req.trigger, req.retry_of, req.overlap, req.source) == (
        "retry",
        "r1",
        Overlap.QUEUE,
        "/lib/two.yaml",
    )
    assert req.kept == plan.kept and dict(req.params) == {"day": "d"}
    assert req.logical == 7.0  # masks evaluate at the retried run's time
    assert submit_retry(plan, lambda req: None) is None


async def test_skipped_steps_are_kept_too(store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "skipped", "b": "timed_out"})
    plan = plan_retry(store, rid)
    assert plan.kept["a"].status == StepStatus.SKIPPED and plan.rerun == ["b"]


async def test_a_step_never_reached_runs_again(store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "done"})  # interrupted before b
    assert plan_retry(store, rid).rerun == ["b"]


async def test_secret_params_are_left_to_the_task_with_a_note(store: HistoryStore) -> None:
    raw = {**RAW, "secrets": ["TOKEN"], "params": {"day": "x"}}
    rid = await _run(store, "r1", {"a": "failed"}, raw=raw, params={"day": "d", "TOKEN": "***"})
    plan = plan_retry(store, rid)
    assert plan.params == {"day": "d"}
    assert plan.notes == ["secret params not kept in the history, left to the task: TOKEN"]


async def test_current_uses_the_task_as_loaded_now(store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "done", "b": "failed"}, raw=None)
    with pytest.raises(
        OpError, match=r"^the history kept no definition for run r1 .*retry with --current$"
    ):
        plan_retry(store, rid)
    now = TaskPile({**RAW, "steps": [*RAW["steps"], {"Dummy": {"name": "c"}}]})
    asked: list[str] = []
    plan = plan_retry(store, rid, current=lambda name: asked.append(name) or now)
    assert asked == ["two"] and plan.pile is now
    assert plan.rerun == ["b", "c"]
    with pytest.raises(OpError, match=r"^--current: no task named 'two' is loaded$"):
        plan_retry(store, rid, current=lambda name: None)


async def test_a_kept_definition_that_no_longer_loads(tmp_path: Path, store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "failed"})
    conn = sqlite3.connect(tmp_path / "history.db")
    with conn:
        conn.execute(
            "UPDATE definitions SET definition = ?",
            ('{"name": "two", "steps": [{"GoneComponent": {"name": "a"}}]}',),
        )
    conn.close()
    with pytest.raises(
        OpError, match=r"^the definition kept for run r1 no longer loads: .*GoneComponent"
    ):
        plan_retry(store, rid)


async def test_nothing_to_run_again(store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "done", "b": "done"})  # failed, yet every step ended well
    with pytest.raises(OpError, match=r"^run r1: nothing to run again \(every step ended well\)$"):
        plan_retry(store, rid)
    assert plan_retry(store, rid, from_step="b").rerun == ["b"]


@pytest.mark.parametrize("status", ["pending", "running"])
async def test_an_unfinished_run_is_refused(store: HistoryStore, status: str) -> None:
    rid = await _run(store, "r1", {}, status=status)
    with pytest.raises(
        OpError, match=rf"^run r1 is still {status}: wait for it, or cancel it first$"
    ):
        plan_retry(store, rid)


async def test_force_on_a_done_run_runs_everything(store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "done", "b": "done"}, status="done")
    with pytest.raises(OpError, match="did not fail"):
        plan_retry(store, rid)
    plan = plan_retry(store, rid, force=True)
    assert plan.rerun == ["a", "b"] and plan.kept == {}
    assert plan_retry(store, rid, force=True, from_step="b").rerun == ["b"]


async def test_from_an_unknown_step_lists_the_steps(store: HistoryStore) -> None:
    rid = await _run(store, "r1", {"a": "failed"})
    with pytest.raises(OpError) as exc:
        plan_retry(store, rid, from_step="x")
    assert str(exc.value) == "--from: task two has no step 'x' (steps: a, b)"
