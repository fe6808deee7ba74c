"""flowtaskd.daemon.ops.show: one run with every step (started or not), tries, log heads
and retry links; over a real history and real log files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.daemon.ops.common import OpError
from flowtaskd.daemon.ops.show import HEAD_LINES, describe_run
from flowtaskd.daemon.runs.records import AttemptRecord, RunRecord
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.logs import GLOBAL_MASKER
from flowtaskd.tasks import TaskPile

RAW: dict[str, Any] = {
    "name": "t",
    "steps": [{"Dummy": {"name": "a"}}, {"Dummy": {"name": "b"}}, {"Dummy": {"name": "c"}}],
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


def _steps(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in out["steps"]}


async def test_a_finished_run_lists_every_step_in_file_order(
    tmp_path: Path, store: HistoryStore
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.2.out").write_text("".join(f"line {i}\n" for i in range(10)))
    (logs / "a.2.err").write_text("warn\n")
    stats = {
        "steps": {
            "a": {
                "status": "done",
                "component": "Dummy",
                "attempts": 2,
                "exit_code": 0,
                "duration": 1.5,
            },
            "b": {"status": "failed", "component": "Dummy", "attempts": 1, "error": "boom"},
            "c": {
                "status": "upstream_failed",
                "component": "Dummy",
                "attempts": 0,
                "reason": "b failed",
            },
        }
    }
    await store.insert_run(RunRecord("r1", "t", "manual", "failed", stats=stats, log_dir=str(logs)))
    await store.record_attempt(AttemptRecord("r1", "a", 1, "failed", exit_code=1, error="first"))
    await store.record_attempt(AttemptRecord("r1", "a", 2, "done", exit_code=0))
    await store.record_attempt(AttemptRecord("r1", "b", 1, "failed", exit_code=3, error="boom"))
    out = describe_run(store, "r1")
    assert out["run"]["run_id"] == "r1" and "stats" not in out["run"]
    assert [s["id"] for s in out["steps"]] == ["a", "b", "c"]
    a, b, c = (_steps(out)[k] for k in "abc")
    assert [(t["attempt"], t["status"], t["exit_code"]) for t in a["tries"]] == [
        (1, "failed", 1),
        (2, "done", 0),
    ]
    assert a["tries"][1]["stdout"] == str(logs / "a.2.out") and a["tries"][0]["stdout"] is None
    assert a["output_head"] == "\n".join(f"line {i}" for i in range(HEAD_LINES))
    assert a["stderr_head"] == "warn"
    assert (a["status"], a["attempts"], a["started"], a["duration"]) == ("done", 2, True, 1.5)
    assert (b["status"], b["error"], b["output_head"]) == ("failed", "boom", None)
    assert (c["status"], c["reason"], c["started"], c["tries"]) == (
        "upstream_failed",
        "b failed",
        False,
        [],
    )
    assert out["retry_of"] is None and out["retries"] == []


async def test_group_member_tries_go_under_their_step(store: HistoryStore) -> None:
    stats = {"steps": {"m": {"status": "done", "items": 2}}}
    await store.insert_run(RunRecord("r1", "t", "manual", "done", stats=stats))
    await store.record_attempt(AttemptRecord("r1", "m[0]", 1, "done"))
    await store.record_attempt(AttemptRecord("r1", "m[1]", 1, "done"))
    (m,) = describe_run(store, "r1")["steps"]
    assert [t["label"] for t in m["tries"]] == ["m[0]", "m[1]"] and m["items"] == 2


async def test_a_running_run_takes_its_steps_from_the_definition_and_logs(
    tmp_path: Path, store: HistoryStore
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.1.out").write_text("started\n")
    (logs / "unrelated.txt").write_text("x")
    (logs / "ab.1.out").write_text("another step's file\n")
    await store.insert_run(RunRecord("r1", "t", "manual", "running", log_dir=str(logs)))
    await store.put_definition("r1", TaskPile(RAW))
    steps = _steps(describe_run(store, "r1"))
    assert list(steps) == ["a", "b", "c"]
    a = steps["a"]
    assert (a["status"], a["started"], a["attempts"], a["output_head"]) == (
        "running",
        True,
        1,
        "started",
    )
    assert [t["label"] for t in a["tries"]] == ["a"]
    assert steps["b"]["status"] == "pending" and steps["b"]["started"] is False


async def test_an_interrupted_run_without_stats_says_unknown(
    tmp_path: Path, store: HistoryStore
) -> None:
    await store.insert_run(
        RunRecord("r1", "t", "manual", "interrupted", log_dir=str(tmp_path / "gone"))
    )
    await store.put_definition("r1", TaskPile(RAW))
    steps = _steps(describe_run(store, "r1"))
    assert {s["status"] for s in steps.values()} == {"unknown"}
    assert all(s["tries"] == [] for s in steps.values())


async def test_without_stats_or_definition_the_attempts_name_the_steps(store: HistoryStore) -> None:
    await store.insert_run(RunRecord("r1", "t", "manual", "failed"))
    await store.record_attempt(AttemptRecord("r1", "x", 1, "failed"))
    (x,) = describe_run(store, "r1")["steps"]
    assert x["id"] == "x" and x["attempts"] == 1 and x["status"] == "unknown"


async def test_retry_links_go_both_ways(store: HistoryStore) -> None:
    await store.insert_run(RunRecord("r1", "t", "manual", "failed"))
    await store.insert_run(RunRecord("r2", "t", "retry", "done", retry_of="r1"))
    assert describe_run(store, "r1")["retries"] == ["r2"]
    assert describe_run(store, "r2")["retry_of"] == "r1"


async def test_output_heads_are_masked(tmp_path: Path, store: HistoryStore) -> None:
    GLOBAL_MASKER.add("show-secret-value-42")
    (tmp_path / "a.1.out").write_text("token show-secret-value-42\n")
    stats = {"steps": {"a": {"status": "done"}}}
    await store.insert_run(
        RunRecord("r1", "t", "manual", "done", stats=stats, log_dir=str(tmp_path))
    )
    await store.record_attempt(AttemptRecord("r1", "a", 1, "done"))
    try:
        (a,) = describe_run(store, "r1")["steps"]
    finally:
        GLOBAL_MASKER.discard("show-secret-value-42")
    assert a["output_head"] == "token ***"


async def test_an_unknown_run(store: HistoryStore) -> None:
    with pytest.raises(OpError, match="no run 'nope'"):
        describe_run(store, "nope")
