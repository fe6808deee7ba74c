"""flowtaskd.daemon.ops.common: ``did_you_mean`` and ``find_run`` against a real history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowtaskd.daemon.ops.common import UNFINISHED, OpError, did_you_mean, find_run
from flowtaskd.daemon.runs.records import AttemptRecord, RunRecord
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.errors import FlowtaskError, StoreError


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


def test_did_you_mean_names_the_nearest_choice() -> None:
    assert did_you_mean("nightly-reprot", ["nightly-report", "hourly"]) == (
        "; did you mean 'nightly-report'?"
    )


def test_did_you_mean_is_empty_without_a_near_choice() -> None:
    assert did_you_mean("zzz", ["nightly-report"]) == ""
    assert did_you_mean("x", []) == ""


def test_unfinished_statuses() -> None:
    assert frozenset({"pending", "running"}) == UNFINISHED


def test_op_error_is_a_flowtask_error() -> None:
    assert issubclass(OpError, FlowtaskError)


async def test_find_run_by_id_and_unique_prefix(store: HistoryStore) -> None:
    await store.insert_run(RunRecord("abc123", "t", "manual", "done"))
    await store.record_attempt(AttemptRecord("abc123", "a", 1, "done"))
    run, attempts = find_run(store, "abc123")
    assert run.run_id == "abc123"
    assert [a.step_id for a in attempts] == ["a"]
    assert find_run(store, "abc")[0].run_id == "abc123"


async def test_find_run_unknown_names_the_history(store: HistoryStore) -> None:
    with pytest.raises(OpError) as exc:
        find_run(store, "nope")
    assert str(exc.value) == f"no run 'nope' in the history at {store.path}"


async def test_find_run_ambiguous_prefix_is_a_store_error(store: HistoryStore) -> None:
    await store.insert_run(RunRecord("abc1", "t", "manual", "done"))
    await store.insert_run(RunRecord("abc2", "t", "manual", "done"))
    with pytest.raises(StoreError):
        find_run(store, "abc")
