"""flowtaskd.daemon.runs.extras: kept definitions (secrets hidden, one copy per digest),
pauses and retry links, in a real SQLite history."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowtaskd.daemon.runs.extras import SECRET_KEPT, without_secrets
from flowtaskd.daemon.runs.records import RunRecord
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.tasks import TaskPile


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _pile(command: str = "a") -> TaskPile:
    return TaskPile(
        {
            "name": "t",
            "secrets": ["TOKEN"],
            "params": {"TOKEN": "p4ssw0rd-123", "day": "today"},
            "env": {"TOKEN": "e4v-secret-1", "HOME": "/h"},
            "steps": [{"Dummy": {"name": command}}],
        }
    )


def test_without_secrets_hides_params_and_env() -> None:
    raw = {"name": "t", "secrets": ["A"], "params": {"A": "1", "B": "2"}, "env": {"A": "3"}}
    out = without_secrets(raw)
    assert out == {
        "name": "t",
        "secrets": ["A"],
        "params": {"A": SECRET_KEPT, "B": "2"},
        "env": {"A": SECRET_KEPT},
    }
    assert raw["params"] == {"A": "1", "B": "2"}  # the input is left alone


def test_without_secrets_a_single_name_and_odd_sections() -> None:
    assert without_secrets({"secrets": "A", "params": {"A": 1}})["params"] == {"A": SECRET_KEPT}
    odd = {"secrets": ["A"], "params": ["A"], "env": None}
    assert without_secrets(odd) == odd
    assert without_secrets({"params": {"A": 1}}) == {"params": {"A": 1}}


async def test_a_definition_is_kept_once_per_digest_and_without_secrets(
    tmp_path: Path, store: HistoryStore
) -> None:
    pile = _pile()
    for rid in ("r1", "r2"):
        await store.insert_run(RunRecord(rid, "t", "manual", "done"))
        await store.put_definition(rid, pile)
    await store.insert_run(RunRecord("r3", "t", "manual", "done"))
    await store.put_definition("r3", _pile("b"))
    assert _count(tmp_path / "history.db", "definitions") == 2
    kept = store.get_definition("r1")
    assert kept == store.get_definition("r2")
    assert kept is not None
    assert kept["params"] == {"TOKEN": SECRET_KEPT, "day": "today"}
    assert kept["env"] == {"TOKEN": SECRET_KEPT, "HOME": "/h"}
    assert store.get_definition("r3") != kept
    assert store.get_definition("unknown") is None


async def test_a_definition_goes_with_its_last_run(tmp_path: Path, store: HistoryStore) -> None:
    db = tmp_path / "history.db"
    for rid in ("r1", "r2"):
        await store.insert_run(RunRecord(rid, "t", "manual", "done", finished_at=1.0))
        await store.put_definition(rid, _pile())
    await store.prune(now=10**10, retention_days=None, max_runs_per_task=1)
    assert _count(db, "run_definitions") == 1 and _count(db, "definitions") == 1
    await store.prune(now=10**10, retention_days=1, max_runs_per_task=None)
    assert _count(db, "run_definitions") == 0 and _count(db, "definitions") == 0


async def test_retries_of_follows_the_links_oldest_first(store: HistoryStore) -> None:
    await store.insert_run(RunRecord("r0", "t", "manual", "failed"))
    await store.insert_run(RunRecord("r2", "t", "retry", "failed", retry_of="r0"))
    await store.insert_run(RunRecord("r1", "t", "retry", "done", retry_of="r0"))
    assert store.retries_of("r0") == ["r2", "r1"]
    assert store.retries_of("r1") == []


async def test_pauses(store: HistoryStore) -> None:
    assert store.paused_targets() == {}
    assert await store.add_pause("task:t", 5.0)
    assert not await store.add_pause("task:t", 6.0)
    assert store.paused_targets() == {"task:t": 5.0}
    assert await store.remove_pause("task:t")
    assert not await store.remove_pause("task:t")
    assert store.paused_targets() == {}


def test_no_history_yet_means_nothing_is_paused(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "none" / "history.db")
    assert store.paused_targets() == {}
