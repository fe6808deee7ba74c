"""Run history: an embedded SQLite database the daemon writes and the CLI reads.

One file in WAL mode holds: ``runs`` (one row per task run), ``step_attempts`` (one row per
attempt of a step), ``schedule_state`` (the last fire time of each schedule, for catch-up
after downtime), ``run_definitions`` (the task definition each run used, for ``retry``) and
``pauses`` (paused tasks and schedules; see :mod:`flowtaskd.daemon.runs.extras`). The schema
version lives in ``PRAGMA user_version``; a version 1 file is upgraded in place when the
daemon opens it.

Writes never run on the event loop. Each write is a small function queued to ONE writer
thread, which runs them in the order they were submitted; writes queued together share one
transaction, each inside its own savepoint so a rejected write fails alone. An ``await``
returns once its write is committed (the writer resolves the caller's future through
``loop.call_soon_threadsafe``). Cancelling an ``await`` does not cancel the queued write.

Reads are synchronous and open a short-lived read-only connection each, so the CLI can read
while the daemon writes. Every sqlite failure reaches a caller as a one-line
:class:`~flowtaskd.errors.StoreError` naming the file and what to do.

Callers mask secrets before they hand params, stats or errors to the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flowtaskd.daemon.runs.extras import OperatingTables
from flowtaskd.daemon.runs.records import AttemptRecord, RunRecord
from flowtaskd.daemon.runs.schema import INDEXES, SCHEMA, SCHEMA_VERSION, UPGRADES
from flowtaskd.daemon.runs.writer import SerialWriter, store_error
from flowtaskd.errors import StoreError

__all__ = ["HistoryStore"]

_UNFINISHED = "('pending', 'running')"
_NEWEST_FIRST = "COALESCE(started_at, queued_at, finished_at) DESC, rowid DESC"
_INTERRUPTED = "daemon stopped before the run finished"
_STEP_INTERRUPTED = "daemon stopped before the step finished"

_T = TypeVar("_T")


_RUN_COLS = tuple(f.name for f in dataclasses.fields(RunRecord))
_ATTEMPT_COLS = tuple(f.name for f in dataclasses.fields(AttemptRecord))
_JSON_COLS = frozenset({"params", "stats"})
_UPDATABLE = frozenset(_RUN_COLS) - {"run_id"}
_SELECT_RUN = f"SELECT {', '.join(_RUN_COLS)} FROM runs"
_SELECT_RUN_BRIEF = _SELECT_RUN.replace(" stats,", " NULL AS stats,")
_SELECT_ATTEMPT = f"SELECT {', '.join(_ATTEMPT_COLS)} FROM step_attempts"


class HistoryStore(OperatingTables):
    """The run history in one SQLite file (a :class:`RunStore`); see the module docstring."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._readonly = False
        self._writer: SerialWriter | None = None

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def open_readonly(cls, path: Path, *, busy_timeout: float = 5.0) -> HistoryStore:
        """A store for reading only (the CLI); works whether the daemon runs or not."""
        store = cls(path, busy_timeout=busy_timeout)
        store._readonly = True
        if not store._path.is_file():
            raise StoreError(f"no history at {store._path}")
        with store._reading() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            _check_version(store._path, version, empty_ok=False)
        return store

    async def open(self) -> None:
        """Create the directory and schema if needed and start the writer thread."""
        if self._readonly:
            raise StoreError(f"run history at {self._path} is open read-only")
        if self._writer is None:
            writer = SerialWriter(self._path, lambda: _open_writer(self._path, self._busy_timeout))
            await writer.start()
            self._writer = writer

    async def close(self) -> None:
        """Commit every write queued so far, then stop the writer thread."""
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None

    # -- writes ------------------------------------------------------------------------

    async def insert_run(self, run: RunRecord) -> None:
        values = [_column_value(c, getattr(run, c)) for c in _RUN_COLS]
        sql = f"INSERT INTO runs ({', '.join(_RUN_COLS)}) VALUES ({_marks(len(_RUN_COLS))})"
        await self._submit(_execute(sql, values))

    async def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some columns of a run (status, started_at, finished_at, error, stats, ...)."""
        unknown = sorted(set(fields) - _UPDATABLE)
        if unknown:
            raise TypeError(f"update_run: unknown run field(s): {', '.join(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{name} = ?" for name in fields)
        values = [_column_value(name, value) for name, value in fields.items()]
        sql = f"UPDATE runs SET {sets} WHERE run_id = ?"
        path = self._path

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, [*values, run_id]).rowcount == 0:
                raise StoreError(f"run history at {path}: no run {run_id!r} to update")

        await self._submit(op)

    async def record_attempt(self, attempt: AttemptRecord) -> None:
        """Insert or replace one attempt of a step."""
        values = [getattr(attempt, c) for c in _ATTEMPT_COLS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _ATTEMPT_COLS[3:])
        sql = (
            f"INSERT INTO step_attempts ({', '.join(_ATTEMPT_COLS)})"
            f" VALUES ({_marks(len(_ATTEMPT_COLS))})"
            f" ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET {updates}"
        )
        await self._submit(_execute(sql, values))

    async def mark_interrupted(self, now: float) -> list[RunRecord]:
        """Runs left pending or running become ``interrupted``; returns them, updated."""

        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            unfinished = f"SELECT run_id FROM runs WHERE status IN {_UNFINISHED}"
            ids = [row[0] for row in conn.execute(f"{unfinished} ORDER BY rowid")]
            conn.execute(
                "UPDATE step_attempts SET status = 'cancelled', finished_at = ?,"
                " duration = COALESCE(? - started_at, duration), error = COALESCE(error, ?)"
                f" WHERE status IN {_UNFINISHED} AND run_id IN ({unfinished})",
                (now, now, _STEP_INTERRUPTED),
            )
            conn.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ?,"
                " duration = COALESCE(? - started_at, duration), error = ?"
                f" WHERE status IN {_UNFINISHED}",
                (now, now, _INTERRUPTED),
            )
            select = f"{_SELECT_RUN} WHERE run_id = ?"
            return [_run_from_row(conn.execute(select, (i,)).fetchone()) for i in ids]

        return await self._submit(op)

    async def set_last_fire(self, schedule_id: str, ts: float) -> None:
        await self._submit(_execute(_SET_LAST_FIRE, (schedule_id, ts)))

    async def set_last_fires(self, fires: Mapping[str, float]) -> None:
        """:meth:`set_last_fire` for many schedules in one transaction (start-up)."""
        rows = list(fires.items())

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_SET_LAST_FIRE, rows)

        if rows:
            await self._submit(op)

    async def prune(
        self, now: float, retention_days: float | None, max_runs_per_task: int | None
    ) -> int:
        """Delete finished runs older than the retention, and beyond the newest N finished
        runs of each task; pending and running runs are never deleted. Returns how many."""
        finished = f"status NOT IN {_UNFINISHED}"

        def op(conn: sqlite3.Connection) -> int:
            deleted = 0
            if retention_days is not None:
                cutoff = now - retention_days * 86400.0
                deleted += conn.execute(
                    f"DELETE FROM runs WHERE {finished}"
                    " AND COALESCE(finished_at, started_at, queued_at) < ?",
                    (cutoff,),
                ).rowcount
            if max_runs_per_task is not None:
                deleted += conn.execute(
                    "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM ("
                    f" SELECT run_id, ROW_NUMBER() OVER (PARTITION BY task ORDER BY"
                    f" {_NEWEST_FIRST}) AS n FROM runs WHERE {finished}) WHERE n > ?)",
                    (max(0, max_runs_per_task),),
                ).rowcount
            return deleted

        return await self._submit(op)

    # -- reads -------------------------------------------------------------------------

    def last_fires(self) -> dict[str, float]:
        with self._reading() as conn:
            rows = conn.execute("SELECT schedule_id, last_fire FROM schedule_state").fetchall()
        return {row[0]: row[1] for row in rows}

    def list_runs(self, task: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Newest first (by start, else queue time); ``limit <= 0`` means no limit."""
        where, args = ("WHERE task = ?", [task]) if task is not None else ("", [])
        sql = f"{_SELECT_RUN} {where} ORDER BY {_NEWEST_FIRST} LIMIT ?"
        with self._reading() as conn:
            rows = conn.execute(sql, [*args, limit if limit > 0 else -1]).fetchall()
        return [_run_from_row(row) for row in rows]

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
        """A page of runs matching every given filter, newest first, and how many match.
        The records have no stats (None): a list never shows them, and they are most of
        a row."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("task", task), ("status", status), ("trigger", trigger)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("COALESCE(started_at, queued_at, finished_at) >= ?")
            args.append(since)
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        # sort row ids only (a sort of whole rows carries every stats blob), then fetch
        page = f"SELECT rowid FROM runs {cond} ORDER BY {_NEWEST_FIRST} LIMIT ? OFFSET ?"
        sql = f"{_SELECT_RUN_BRIEF} WHERE rowid IN ({page}) ORDER BY {_NEWEST_FIRST}"
        with self._reading() as conn:
            total = conn.execute(f"SELECT count(*) FROM runs {cond}", args).fetchone()[0]
            rows = conn.execute(sql, [*args, limit, offset]).fetchall()
        return [_run_from_row(row) for row in rows], int(total)

    def recent_statuses(
        self, n: int, tasks: Sequence[str] | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        """The newest ``n`` runs of each task (default: every task in the history) as
        (run_id, status), newest first."""
        newest = f"SELECT rowid FROM runs WHERE task = ? ORDER BY {_NEWEST_FIRST} LIMIT ?"
        out: dict[str, list[tuple[str, str]]] = {}
        with self._reading() as conn:
            if tasks is None:
                tasks = [row[0] for row in conn.execute("SELECT DISTINCT task FROM runs")]
            for task in tasks:
                sql = f"SELECT run_id, status FROM runs WHERE rowid IN ({newest})"
                rows = conn.execute(f"{sql} ORDER BY {_NEWEST_FIRST}", (task, n)).fetchall()
                if rows:
                    out[task] = [(r[0], r[1]) for r in rows]
        return out

    def get_run(self, run_id: str) -> tuple[RunRecord, list[AttemptRecord]] | None:
        """A run and its attempts, by full id or unique prefix; StoreError if ambiguous."""
        if not run_id:
            return None
        with self._reading() as conn:
            row = conn.execute(f"{_SELECT_RUN} WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                matches = _ids_with_prefix(conn, run_id, most=6)
                if len(matches) > 1:
                    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
                    raise StoreError(
                        f"run id prefix {run_id!r} is ambiguous ({shown}): give more of it"
                    )
                if not matches:
                    return None
                row = conn.execute(f"{_SELECT_RUN} WHERE run_id = ?", (matches[0],)).fetchone()
            attempts = conn.execute(
                f"{_SELECT_ATTEMPT} WHERE run_id = ?"
                " ORDER BY started_at IS NULL, started_at, step_id, attempt",
                (row["run_id"],),
            ).fetchall()
        return _run_from_row(row), [AttemptRecord(**_row_dict(a)) for a in attempts]

    # -- for the modules that add tables (extras) ----------------------------------------

    async def write(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``op`` on the writer thread, in its own savepoint; its result."""
        return await self._submit(op)

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A short-lived read-only connection (sqlite errors become StoreError)."""
        return self._reading()

    # -- internals ---------------------------------------------------------------------

    async def _submit(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._readonly:
            raise StoreError(f"run history at {self._path} is open read-only")
        if self._writer is None:
            raise StoreError(f"run history at {self._path} is not open")
        return await self._writer.submit(op)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A short-lived read-only connection; sqlite errors become StoreError."""
        uri = self._path.absolute().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout)
        except sqlite3.Error as exc:
            raise store_error(self._path, exc) from None
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        except sqlite3.Error as exc:
            raise store_error(self._path, exc) from None
        finally:
            conn.close()


def _open_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # SQLite gives the -wal and -shm files the database's mode: 0640 whatever the umask
    with contextlib.suppress(OSError):  # if this fails, sqlite says why below
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o640))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            if name.is_file() and name.stat().st_uid == os.geteuid():
                os.chmod(name, name.stat().st_mode & 0o640)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")  # fails now, not at the first write, when locked
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_version(path, version, empty_ok=True)
        if version == 0:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(
                    f"{path} is a SQLite database but not a flowtaskd run history:"
                    " move it aside or choose another state directory"
                )
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version < SCHEMA_VERSION:  # upgraded in place, one version after the other
            for step in range(version, SCHEMA_VERSION):
                for statement in UPGRADES[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        for statement in INDEXES:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _check_version(path: Path, version: int, *, empty_ok: bool) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"run history at {path} has schema {version}, newer than this flowtaskd"
            f" ({SCHEMA_VERSION}): upgrade flowtaskd or move the file aside"
        )
    if version < SCHEMA_VERSION and not empty_ok:
        raise StoreError(
            f"run history at {path} is not a flowtaskd run history (schema {version}):"
            " start the daemon once to create or upgrade it"
        )


def _column_value(name: str, value: Any) -> Any:
    if name in _JSON_COLS and value is not None:
        return json.dumps(value, default=str, separators=(",", ":"))
    return value


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    data = _row_dict(row)
    data["params"] = _loads(data["params"]) or {}
    data["stats"] = _loads(data["stats"])
    return RunRecord(**data)


def _ids_with_prefix(conn: sqlite3.Connection, prefix: str, most: int) -> list[str]:
    out: list[str] = []
    for row in conn.execute("SELECT run_id FROM runs WHERE run_id > ? ORDER BY run_id", (prefix,)):
        if not row[0].startswith(prefix) or len(out) >= most:
            break
        out.append(row[0])
    return out


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    return dict(zip(row.keys(), row, strict=True))


_SET_LAST_FIRE = (
    "INSERT INTO schedule_state (schedule_id, last_fire) VALUES (?, ?)"
    " ON CONFLICT (schedule_id) DO UPDATE SET last_fire = excluded.last_fire"
)


def _execute(sql: str, params: Sequence[Any]) -> Callable[[sqlite3.Connection], None]:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return op


def _marks(n: int) -> str:
    return ", ".join("?" * n)
