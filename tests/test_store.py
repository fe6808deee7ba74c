"""HistoryStore against a real SQLite file in tmp_path, with real competing connections."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowtaskd.daemon.runs.records import AttemptRecord, RunRecord
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.errors import StoreError

WRITER = "flowtaskd-store-writer"


def _run(run_id: str, task: str = "t", status: str = "done", **kw: object) -> RunRecord:
    return RunRecord(run_id=run_id, task=task, trigger="manual", status=status, **kw)  # type: ignore[arg-type]


def _re(path: Path) -> str:
    return re.escape(str(path))


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WRITER]


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.db"  # "state" does not exist yet


@pytest.fixture
async def store(db: Path) -> AsyncIterator[HistoryStore]:
    s = HistoryStore(db)
    await s.open()
    yield s
    await s.close()


async def test_open_creates_dirs_schema_and_wal(db: Path, store: HistoryStore) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert {"runs", "step_attempts", "schedule_state", "runs_task_started", "runs_status"} <= names


async def test_run_round_trip(store: HistoryStore) -> None:
    run = _run(
        "r1",
        status="running",
        source="/tasks/a.yaml",
        params={"n": 1, "who": "***"},
        queued_at=10.0,
        started_at=11.5,
        stats={"steps": {"a": {"rss": 12}}},
        log_dir="/logs/r1",
        inbox_file="/spool/x.csv",
        schedule_id="nightly",
    )
    await store.insert_run(run)
    assert store.list_runs() == [run]
    assert store.get_run("r1") == (run, [])
    bare = _run("r2", status="pending")
    await store.insert_run(bare)
    got = store.get_run("r2")
    assert got is not None and got[0] == bare and got[0].params == {} and got[0].stats is None


async def test_update_after_insert(store: HistoryStore) -> None:
    await store.insert_run(_run("r1", status="pending", queued_at=1.0))
    await store.update_run("r1", status="running", started_at=2.0)
    await store.update_run("r1", status="failed", finished_at=5.0, duration=3.0, error="boom",
                           stats={"k": [1, 2]})  # fmt: skip
    got = store.get_run("r1")
    assert got is not None
    assert got[0] == _run("r1", status="failed", queued_at=1.0, started_at=2.0, finished_at=5.0,
                          duration=3.0, error="boom", stats={"k": [1, 2]})  # fmt: skip
    with pytest.raises(TypeError, match="nonsense"):
        await store.update_run("r1", nonsense=1)
    with pytest.raises(StoreError, match="no run 'zz' to update"):
        await store.update_run("zz", status="done")


async def test_attempt_upsert_and_order(store: HistoryStore) -> None:
    await store.insert_run(_run("r1"))
    await store.record_attempt(AttemptRecord("r1", "b", 1, "running", started_at=2.0))
    await store.record_attempt(AttemptRecord("r1", "a", 1, "failed", started_at=1.0, exit_code=3))
    await store.record_attempt(AttemptRecord("r1", "a", 2, "running", started_at=3.0))
    done = AttemptRecord("r1", "b", 1, "done", 2.0, 4.0, 2.0, 0, 0.1, 0.2, 1024, 77, None, "/l/b")
    await store.record_attempt(done)  # same key: replaces the running row
    got = store.get_run("r1")
    assert got is not None
    assert [(a.step_id, a.attempt, a.status) for a in got[1]] == [
        ("a", 1, "failed"),
        ("b", 1, "done"),
        ("a", 2, "running"),
    ]
    assert got[1][1] == done
    with pytest.raises(StoreError, match="write rejected"):  # no such run: foreign key
        await store.record_attempt(AttemptRecord("nope", "a", 1, "done"))


async def test_many_concurrent_writes_all_land_in_order(db: Path, store: HistoryStore) -> None:
    await store.insert_run(_run("r1"))
    await asyncio.gather(
        *(store.record_attempt(AttemptRecord("r1", f"s{i}", 1, "done")) for i in range(1000))
    )
    # the same row written 300 times: the last write submitted is the one that stays
    await asyncio.gather(
        *(store.record_attempt(AttemptRecord("r1", "same", 1, "running", error=str(i)))
          for i in range(300))
    )  # fmt: skip
    got = store.get_run("r1")
    assert got is not None
    assert {a.step_id for a in got[1]} == {f"s{i}" for i in range(1000)} | {"same"}
    assert next(a for a in got[1] if a.step_id == "same").error == "299"
    assert _count(db, "step_attempts") == 1001


async def test_rejected_write_fails_alone(store: HistoryStore) -> None:
    results = await asyncio.gather(
        store.insert_run(_run("a")),
        store.insert_run(_run("a", task="other")),
        store.insert_run(_run("b")),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreError) and "UNIQUE" in str(results[1])
    assert sorted(r.run_id for r in store.list_runs()) == ["a", "b"]
    assert store.get_run("a") == (_run("a"), [])


async def test_list_runs_newest_first_filter_and_limit(store: HistoryStore) -> None:
    await store.insert_run(_run("old", started_at=1.0))
    await store.insert_run(_run("other", task="u", started_at=2.0))
    await store.insert_run(_run("mid", started_at=3.0))
    await store.insert_run(_run("queued", status="pending", queued_at=4.0))
    assert [r.run_id for r in store.list_runs()] == ["queued", "mid", "other", "old"]
    assert [r.run_id for r in store.list_runs(task="t")] == ["queued", "mid", "old"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["queued", "mid"]
    assert [r.run_id for r in store.list_runs(task="u", limit=0)] == ["other"]
    assert store.list_runs(task="nobody") == []


async def test_mark_interrupted(store: HistoryStore) -> None:
    await store.insert_run(_run("p", status="pending", queued_at=1.0, inbox_file="/spool/a"))
    await store.insert_run(_run("r", status="running", started_at=10.0, duration=None))
    await store.insert_run(_run("d", status="done", started_at=1.0, finished_at=2.0))
    await store.record_attempt(AttemptRecord("r", "s", 1, "running", started_at=11.0))
    await store.record_attempt(AttemptRecord("d", "s", 1, "done", started_at=1.0))
    out = await store.mark_interrupted(now=20.0)
    why = "daemon stopped before the run finished"
    assert out == [
        _run("p", status="interrupted", queued_at=1.0, inbox_file="/spool/a", finished_at=20.0,
             error=why),
        _run("r", status="interrupted", started_at=10.0, finished_at=20.0, duration=10.0,
             error=why),
    ]  # fmt: skip
    assert {r.run_id: r for r in store.list_runs()}["p"] == out[0]
    r = store.get_run("r")
    assert r is not None and r[0] == out[1]
    assert (r[1][0].status, r[1][0].finished_at, r[1][0].duration) == ("cancelled", 20.0, 9.0)
    d = store.get_run("d")
    assert d is not None and d[0].status == "done" and d[1][0].status == "done"
    assert await store.mark_interrupted(now=30.0) == []


async def test_last_fire_times_persist(db: Path) -> None:
    first = HistoryStore(db)
    await first.open()
    assert first.last_fires() == {}
    await first.set_last_fire("nightly", 100.0)
    await first.set_last_fire("hourly", 50.0)
    await first.set_last_fire("nightly", 200.0)
    await first.set_last_fires({})  # nothing to write
    await first.set_last_fires({"weekly": 7.0, "hourly": 60.0})
    await first.close()
    second = HistoryStore(db)
    await second.open()
    try:
        assert second.last_fires() == {"nightly": 200.0, "hourly": 60.0, "weekly": 7.0}
    finally:
        await second.close()
    expected = {"nightly": 200.0, "hourly": 60.0, "weekly": 7.0}
    assert HistoryStore.open_readonly(db).last_fires() == expected


async def test_prune_by_age_keeps_running_and_cascades(db: Path, store: HistoryStore) -> None:
    day = 86400.0
    now = 100 * day
    await store.insert_run(_run("old", started_at=now - 10 * day, finished_at=now - 9 * day))
    await store.insert_run(_run("old-failed", status="failed", finished_at=now - 3 * day))
    await store.insert_run(_run("old-running", status="running", started_at=now - 30 * day))
    await store.insert_run(_run("old-pending", status="pending", queued_at=now - 30 * day))
    await store.insert_run(_run("new", started_at=now - day / 2, finished_at=now - day / 4))
    await store.record_attempt(AttemptRecord("old", "s", 1, "done"))
    await store.record_attempt(AttemptRecord("new", "s", 1, "done"))
    assert await store.prune(now, retention_days=2, max_runs_per_task=None) == 2
    assert {r.run_id for r in store.list_runs()} == {"old-running", "old-pending", "new"}
    assert _count(db, "step_attempts") == 1  # the attempt of "old" went with it
    assert await store.prune(now, retention_days=2, max_runs_per_task=None) == 0
    assert await store.prune(now, retention_days=None, max_runs_per_task=None) == 0


async def test_prune_by_count_keeps_newest_per_task(store: HistoryStore) -> None:
    for i in range(5):
        await store.insert_run(_run(f"a{i}", task="a", started_at=float(i), finished_at=i + 0.5))
    await store.insert_run(_run("a-run", task="a", status="running", started_at=-5.0))
    await store.insert_run(_run("b0", task="b", status="failed", started_at=1.0))
    await store.insert_run(_run("b1", task="b", status="cancelled", started_at=2.0))
    assert await store.prune(1000.0, retention_days=None, max_runs_per_task=2) == 3
    assert [r.run_id for r in store.list_runs(task="a")] == ["a4", "a3", "a-run"]
    assert [r.run_id for r in store.list_runs(task="b")] == ["b1", "b0"]
    assert await store.prune(1000.0, retention_days=None, max_runs_per_task=0) == 4
    assert [r.run_id for r in store.list_runs()] == ["a-run"]


async def test_prefix_lookup(store: HistoryStore) -> None:
    for rid in ("abc123", "abc456", "xyz789"):
        await store.insert_run(_run(rid))
    await store.record_attempt(AttemptRecord("xyz789", "s", 1, "done"))
    got = store.get_run("xy")
    assert got is not None and got[0].run_id == "xyz789" and len(got[1]) == 1
    got = store.get_run("abc4")
    assert got is not None and got[0].run_id == "abc456"
    with pytest.raises(StoreError, match=r"ambiguous.*abc123, abc456"):
        store.get_run("abc")
    assert store.get_run("abd") is None
    assert store.get_run("") is None
    assert store.get_run("xyz7890") is None


async def test_readonly_reads_while_daemon_writes(db: Path, store: HistoryStore) -> None:
    reader = HistoryStore.open_readonly(db)
    await store.insert_run(_run("r1", status="running"))
    assert [r.run_id for r in reader.list_runs()] == ["r1"]
    await store.update_run("r1", status="done")
    got = reader.get_run("r1")
    assert got is not None and got[0].status == "done"
    with pytest.raises(StoreError, match="read-only"):
        await reader.insert_run(_run("r2"))
    with pytest.raises(StoreError, match="read-only"):
        await reader.open()


async def test_missing_history(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"^no history at {_re(tmp_path / 'nope.db')}$"):
        HistoryStore.open_readonly(tmp_path / "nope.db")
    with pytest.raises(StoreError, match="no history at"):
        HistoryStore.open_readonly(tmp_path)  # a directory


@pytest.mark.parametrize(
    "content", [b"garbage bytes " * 1000, b"SQLite format 3\x00" + b"\xff" * 4080]
)
async def test_corrupt_file(db: Path, content: bytes) -> None:
    db.parent.mkdir()
    db.write_bytes(content)
    expected = rf"^run history at {_re(db)} is not a SQLite database \(corrupt\?\): move it"
    with pytest.raises(StoreError, match=expected) as info:
        await HistoryStore(db).open()
    assert "\n" not in str(info.value) and info.value.__cause__ is None
    assert _writer_threads() == []
    with pytest.raises(StoreError, match=expected):
        HistoryStore.open_readonly(db)


async def test_not_a_flowtaskd_history(db: Path) -> None:
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a flowtaskd run history"):
        await HistoryStore(db).open()
    with pytest.raises(StoreError, match="not a flowtaskd run history"):
        HistoryStore.open_readonly(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema 99, newer than this flowtaskd"):
        await HistoryStore(db).open()
    assert _writer_threads() == []


@pytest.mark.parametrize("wal", [True, False])
async def test_locked_at_open(db: Path, wal: bool) -> None:
    if wal:  # a history the daemon made earlier
        s = HistoryStore(db)
        await s.open()
        await s.close()
    else:  # a rollback-journal database held exclusively: cannot even switch to WAL
        db.parent.mkdir()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match=f"^run history at {_re(db)} is locked by another"):
            await HistoryStore(db, busy_timeout=0.05).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _writer_threads() == []
    s = HistoryStore(db, busy_timeout=0.05)
    await s.open()  # works again once the lock is gone
    await s.close()


async def test_locked_write_fails_then_recovers(db: Path) -> None:
    store = HistoryStore(db, busy_timeout=0.05)
    await store.open()
    try:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="is locked by another process"):
                await store.insert_run(_run("r1"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await store.insert_run(_run("r1"))
        assert [r.run_id for r in store.list_runs()] == ["r1"]
    finally:
        await store.close()


async def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=f"^cannot create run history at {_re(blocker / 'h.db')}"):
        await HistoryStore(blocker / "h.db").open()
    with pytest.raises(StoreError, match=f"^cannot open run history at {_re(tmp_path)}"):
        await HistoryStore(tmp_path).open()  # a directory, not a file
    assert _writer_threads() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreError, match=r"run history at .*ro/h\.db"):
            await HistoryStore(locked / "h.db").open()
    finally:
        locked.chmod(0o700)


async def test_writer_thread_lifecycle_and_flush_on_close(db: Path) -> None:
    store = HistoryStore(db)
    assert _writer_threads() == []
    await store.open()
    await store.open()  # already open: no second thread
    assert len(_writer_threads()) == 1
    pending = [asyncio.ensure_future(store.insert_run(_run(f"r{i}"))) for i in range(200)]
    await asyncio.sleep(0)  # the writes are queued, not yet committed
    await store.close()
    assert _writer_threads() == []
    await asyncio.gather(*pending)
    assert _count(db, "runs") == 200
    with pytest.raises(StoreError, match="is not open"):
        await store.insert_run(_run("late"))
    await store.close()  # twice is fine


@pytest.mark.timeout(10)  # a writer on the loop thread hangs here: fail fast
async def test_loop_stays_responsive_while_writes_wait(db: Path, store: HistoryStore) -> None:
    """500 writes stuck behind another process's lock; only the loop can release it."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    writes = asyncio.gather(*(store.insert_run(_run(f"r{i}")) for i in range(500)))
    ticks = 0
    try:
        while ticks < 25:  # a writer on the loop would freeze here until its busy timeout
            await asyncio.sleep(0.002)
            assert not writes.done()
            ticks += 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await writes
    assert len(store.list_runs(limit=0)) == 500


async def test_cancelled_await_still_writes(store: HistoryStore) -> None:
    task = asyncio.ensure_future(store.insert_run(_run("r1", params={"where": Path("/x")})))
    await asyncio.sleep(0)  # queued
    task.cancel()
    await store.set_last_fire("s", 1.0)  # queued after it, so committed after it
    assert task.cancelled()
    got = store.get_run("r1")
    assert got is not None and got[0].params == {"where": "/x"}  # non-JSON values: str()
