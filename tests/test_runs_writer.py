"""flowtaskd.daemon.runs.writer: the serial SQLite writer and its one-line errors."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowtaskd.daemon.runs.writer import SerialWriter, store_error
from flowtaskd.errors import DaemonError, StoreError


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)")
    return conn


def _rows(db: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT k, v FROM t ORDER BY k"))
    finally:
        conn.close()


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SerialWriter]:
    w = SerialWriter(tmp_path / "w.db", lambda: _connect(tmp_path / "w.db"))
    await w.start()
    yield w
    await w.stop()


def _insert(k: str, v: int) -> object:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?, ?)", (k, v))
        return v

    return op


async def test_ops_run_in_order_on_one_thread(tmp_path: Path, writer: SerialWriter) -> None:
    threads: list[str] = []

    def op(conn: sqlite3.Connection) -> str:
        threads.append(threading.current_thread().name)
        return "ok"

    assert await writer.submit(op) == "ok"
    results = await asyncio.gather(*(writer.submit(_insert(f"k{i:02}", i)) for i in range(20)))  # type: ignore[arg-type]
    assert results == list(range(20))
    assert threads == ["flowtaskd-store-writer"]
    assert _rows(tmp_path / "w.db") == [(f"k{i:02}", i) for i in range(20)]


async def test_a_rejected_op_fails_alone(tmp_path: Path, writer: SerialWriter) -> None:
    good1 = writer.submit(_insert("a", 1))  # type: ignore[arg-type]
    dup = writer.submit(_insert("a", 2))  # type: ignore[arg-type]
    good2 = writer.submit(_insert("b", 3))  # type: ignore[arg-type]
    out = await asyncio.gather(good1, dup, good2, return_exceptions=True)
    assert out[0] == 1 and out[2] == 3
    assert isinstance(out[1], StoreError)
    assert str(out[1]).startswith(f"run history at {tmp_path / 'w.db'}: write rejected (")
    assert _rows(tmp_path / "w.db") == [("a", 1), ("b", 3)]


async def test_a_failed_op_leaves_none_of_its_writes(tmp_path: Path, writer: SerialWriter) -> None:
    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('half', 1)")
        raise sqlite3.IntegrityError("second write rejected")

    failing = writer.submit(half)
    after = writer.submit(_insert("after", 2))  # type: ignore[arg-type]
    out = await asyncio.gather(failing, after, return_exceptions=True)
    assert isinstance(out[0], StoreError) and out[1] == 2
    assert _rows(tmp_path / "w.db") == [("after", 2)]


async def test_an_op_raising_a_flowtask_error_passes_it_through(writer: SerialWriter) -> None:
    def op(conn: sqlite3.Connection) -> None:
        raise DaemonError("mine")

    with pytest.raises(DaemonError, match=r"^mine$"):
        await writer.submit(op)


async def test_stop_commits_what_was_queued_then_refuses(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    w = SerialWriter(db, lambda: _connect(db))
    await w.start()
    pending = [asyncio.ensure_future(w.submit(_insert(f"k{i}", i))) for i in range(5)]  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the submits are queued
    await w.stop()
    assert [p.result() for p in pending] == list(range(5))
    assert len(_rows(db)) == 5
    with pytest.raises(StoreError, match="is not open"):
        await w.submit(_insert("late", 0))  # type: ignore[arg-type]
    await w.stop()  # twice: fine


async def test_a_failing_connect_is_raised_by_start(tmp_path: Path) -> None:
    def connect() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    w = SerialWriter(tmp_path / "w.db", connect)
    with pytest.raises(StoreError, match="unable to open database file"):
        await w.start()
    assert not any(t.name == "flowtaskd-store-writer" for t in threading.enumerate())


def _sqlite_error(cls: type[sqlite3.Error], name: str, text: str) -> sqlite3.Error:
    exc = cls(text)
    exc.sqlite_errorname = name  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            _sqlite_error(sqlite3.DatabaseError, "SQLITE_NOTADB", "file is not a database"),
            "run history at /h.db is not a SQLite database (corrupt?): move it aside and restart",
        ),
        (
            _sqlite_error(sqlite3.OperationalError, "SQLITE_BUSY", "database is locked"),
            "run history at /h.db is locked by another process (another flowtaskd?):"
            " stop it, or wait and retry",
        ),
        (
            _sqlite_error(sqlite3.OperationalError, "SQLITE_READONLY", "attempt to write"),
            "cannot open run history at /h.db (attempt to write): check that it exists and"
            " that the file and its directory are writable by the daemon",
        ),
        (
            _sqlite_error(sqlite3.OperationalError, "SQLITE_FULL", "database or disk is full"),
            "run history at /h.db: disk is full: free some space and retry",
        ),
        (
            _sqlite_error(sqlite3.OperationalError, "SQLITE_IOERR_WRITE", "disk I/O\n error"),
            "run history at /h.db: I/O error (disk I/O error): check the disk",
        ),
        (
            _sqlite_error(sqlite3.IntegrityError, "SQLITE_CONSTRAINT", "UNIQUE failed"),
            "run history at /h.db: write rejected (UNIQUE failed)",
        ),
        (sqlite3.OperationalError("no such table: x"), "run history at /h.db: no such table: x"),
        (
            PermissionError(13, "Permission denied"),
            "cannot create run history at /h.db (Permission denied): fix the directory's"
            " permissions or choose another state directory",
        ),
    ],
)
def test_store_error_messages(exc: BaseException, expected: str) -> None:
    out = store_error(Path("/h.db"), exc)
    assert isinstance(out, StoreError)
    assert str(out) == expected


def test_store_error_passes_other_errors_through() -> None:
    mine = DaemonError("x")
    assert store_error(Path("/h.db"), mine) is mine
    bug = KeyError("k")
    assert store_error(Path("/h.db"), bug) is bug
