"""A serial SQLite writer: one thread owning one connection, running queued writes in order.

Generic: it knows nothing of the history schema. Several queued writes share one
transaction (each in its own savepoint, so a rejected write fails alone); async callers
await a future resolved from the thread with one wake-up per batch. Used by the history
store so that the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flowtaskd.errors import FlowtaskError, StoreError

__all__ = ["SerialWriter", "store_error"]

_BATCH_MAX = 500
_THREAD_NAME = "flowtaskd-store-writer"
_T = TypeVar("_T")
_Op = Callable[[sqlite3.Connection], Any]
_Outcome = tuple["_Job", Any, BaseException | None]  # a job, its result, or its error

# -- the writer thread (generic: knows nothing of the schema) ----------------------------


@dataclass(slots=True)
class _Job:
    op: _Op
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _stop(conn: sqlite3.Connection) -> None:
    """Marker op: the writer thread stops after the writes queued before it."""


class SerialWriter:
    """One thread owning one connection; runs queued ops in order, batched per transaction."""

    def __init__(self, path: Path, connect: Callable[[], sqlite3.Connection]) -> None:
        self._path = path
        self._connect = connect
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=_THREAD_NAME, daemon=True)
        self._started: asyncio.Future[Any] | None = None
        self._stopped: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        """Connect (in the thread); raises what connecting raised, with the thread gone."""
        loop = asyncio.get_running_loop()
        self._started = started = loop.create_future()
        self._queue.put(_Job(_stop, loop, started))  # the thread settles it once connected
        self._thread.start()
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:  # let the thread finish connecting, then stop it
            with contextlib.suppress(Exception):
                await started
                await self.stop()
            self._thread.join()
            raise
        except Exception:
            self._thread.join()  # it reported the failure as its last act
            raise

    async def stop(self) -> None:
        """Commit every op queued so far, then end the thread."""
        if self._stopped is None:
            loop = asyncio.get_running_loop()
            self._stopped = loop.create_future()
            self._queue.put(_Job(_stop, loop, self._stopped))
        await asyncio.shield(self._stopped)
        self._thread.join()  # the thread resolved the future as its last act

    async def submit(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Queue ``op``; return its result once its transaction is committed."""
        if self._stopped is not None:
            raise StoreError(f"run history at {self._path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.put(_Job(op, loop, future))
        return await future

    def _main(self) -> None:
        started = self._queue.get()
        try:
            conn = self._connect()
        except Exception as exc:
            _settle([(started, None, store_error(self._path, exc))])
            return
        _settle([(started, None, None)])
        stop: _Job | None = None
        try:
            stop = self._loop(conn)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            if stop is not None:
                _settle([(stop, None, None)])

    def _loop(self, conn: sqlite3.Connection) -> _Job:
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < _BATCH_MAX:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            work = [job for job in jobs if job.op is not _stop]
            if work:
                _settle(self._run_batch(conn, work))
            if len(work) < len(jobs):
                return next(job for job in jobs if job.op is _stop)

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, store_error(self._path, exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except Exception as exc:  # the transaction as a whole failed: so did every op
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [(job, None, store_error(self._path, exc)) for job in jobs]
        return outcomes


def _settle(outcomes: list[_Outcome]) -> None:
    """From the writer thread: resolve futures, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[_Outcome]) -> None:
    for job, result, exc in items:
        if job.future.done():  # the caller stopped waiting; the write still happened
            continue
        if exc is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(exc)


def store_error(path: Path, exc: BaseException) -> BaseException:
    """A one-line StoreError for an sqlite or OS failure; other exceptions pass through."""
    if isinstance(exc, FlowtaskError):
        return exc
    if isinstance(exc, OSError):
        return StoreError(
            f"cannot create run history at {path} ({exc.strerror or exc}):"
            " fix the directory's permissions or choose another state directory"
        )
    if not isinstance(exc, sqlite3.Error):
        return exc
    name: str = getattr(exc, "sqlite_errorname", "") or ""
    why = " ".join(str(exc).split())
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        text = (
            f"run history at {path} is not a SQLite database (corrupt?): move it aside and restart"
        )
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        text = (
            f"run history at {path} is locked by another process (another flowtaskd?):"
            " stop it, or wait and retry"
        )
    elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH")):
        text = (
            f"cannot open run history at {path} ({why}): check that it exists and that"
            " the file and its directory are writable by the daemon"
        )
    elif name.startswith("SQLITE_FULL"):
        text = f"run history at {path}: disk is full: free some space and retry"
    elif name.startswith("SQLITE_IOERR"):
        text = f"run history at {path}: I/O error ({why}): check the disk"
    elif isinstance(exc, sqlite3.IntegrityError):
        text = f"run history at {path}: write rejected ({why})"
    else:
        text = f"run history at {path}: {why}"
    return StoreError(text)
