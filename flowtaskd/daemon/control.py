"""The control socket: a Unix socket speaking newline-delimited JSON.

A client (``flowtaskd status``, socat, a script) sends one JSON object per line, such as
``{"cmd": "status"}``, and reads one JSON object per line back: ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. A connection serves any number of requests, one at a
time, in order. Two requests reply more than once:

* ``trigger`` with ``"wait": true`` replies at once with the run id, then again when the
  run ends, with its status and stats.
* ``subscribe`` replies once, then streams every matching event as one JSON line until the
  client closes its side (end of file) or the daemon stops; the connection takes no more
  requests.

A subscriber never slows a run or another subscriber: a sync receiver on the event bus puts
each event into the connection's own bounded queue (``put_nowait``) and the connection's
writer drains that queue to the socket. When the queue is full, or one write stalls for
``write_timeout`` seconds, the subscriber is dropped: its connection is closed and
``subscriber_dropped`` logged.

No request can crash the daemon. A malformed request gets an error reply and the connection
stays usable; an unexpected failure is logged with its traceback and answered with a
one-line error. A request line over :data:`MAX_LINE` bytes gets an error, then the
connection is closed. Every connection handler belongs to the server's task group: at stop,
subscribers get what is already queued (for ``stop_grace`` seconds), waiting triggers get an
error, and the others are cancelled and awaited. The socket file gets the configured mode
before the server listens (no client can connect through looser permissions), a stale one
is replaced at start, and it is removed at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from flowtaskd.errors import DaemonError, FlowtaskError
from flowtaskd.events import CATCH_ALL, Payload

if TYPE_CHECKING:
    from flowtaskd.daemon.service import Daemon

__all__ = ["MAX_LINE", "ControlServer"]

MAX_LINE = 1024 * 1024
"""The longest request line accepted, in bytes (without its newline)."""

_log = structlog.get_logger("flowtaskd.control")
_FIELDS: dict[str, tuple[str, ...]] = {
    "status": (),
    "tasks": (),
    "trigger": ("task", "params", "wait"),
    "cancel": ("run_id",),
    "history": ("task", "n"),
    "reload": (),
    "subscribe": ("events", "task"),
}
_RECHECK = 1.0  # a waiting trigger looks again this often for a run that ended unseen
_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}
_Reply = Payload | None  # None: the handler took the connection over (subscribe)


def _version() -> str:
    try:
        return version("flowtaskd")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class _BadRequest(Exception):
    """The request is malformed; the message says how."""


class _Stalled(Exception):
    """A write to the client did not drain within the write timeout."""


def _error(message: str) -> Payload:
    return {"ok": False, "error": message}


def _ended(run_id: str, task: Any, status: Any, error: Any, duration: Any, stats: Any) -> Payload:
    """The second reply of ``trigger`` with ``"wait": true``."""
    return {
        "ok": True,
        "run_id": run_id,
        "task": task,
        "status": status,
        "error": error,
        "duration": duration,
        "stats": stats,
    }


def _kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _parse(line: bytes) -> tuple[str, dict[str, Any]]:
    """The command and the request object of one line; _BadRequest if malformed."""
    try:
        req = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _BadRequest(f"the request is not JSON ({exc})") from None
    if not isinstance(req, dict):
        raise _BadRequest(
            f'a request is a JSON object such as {{"cmd": "status"}}, got {_kind(req)}'
        )
    commands = tuple(_FIELDS)
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        got = "it is missing" if cmd is None else f"got {_kind(cmd)}"
        raise _BadRequest(f'"cmd" names the request ({", ".join(commands)}); {got}')
    if cmd not in _FIELDS:
        raise _BadRequest(
            f"unknown cmd {cmd!r}{_did_you_mean(cmd, commands)} (valid: {', '.join(commands)})"
        )
    allowed = ("cmd", *_FIELDS[cmd])
    for key in req:
        if key not in allowed:
            raise _BadRequest(
                f"{cmd} takes no field {key!r}{_did_you_mean(key, allowed)}"
                f" (fields: {', '.join(allowed)})"
            )
    return cmd, req


def _text(req: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = req.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        got = "it is missing" if value is None else f"got {_kind(value)}"
        raise _BadRequest(f"{req['cmd']}: {key!r} must be a non-empty string; {got}")
    return value


@dataclass(eq=False)
class _Conn:
    """One client connection and what the stop path needs to know about it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: str = "idle"  # idle (reading a request) | busy | wait (trigger --wait) | stream
    queue: asyncio.Queue[Payload | None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False


class _RunWatch:
    """A sync bus receiver noting skips (during ``submit``) and completions of one task."""

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake
        self.skip_reason: str | None = None
        self.completed: dict[str, Payload] = {}

    def __call__(self, payload: Payload) -> None:
        if payload.get("event") == "run_skipped":
            self.skip_reason = str(payload.get("reason") or "skipped")
        elif isinstance(run_id := payload.get("run_id"), str):
            self.completed[run_id] = payload
            self.wake.set()


class ControlServer:
    """Serves the control socket of ``daemon`` (a daemon extension); see the module doc.

    ``queue_size`` bounds each subscriber's buffer of events, ``write_timeout`` how long one
    write to a client may stall, ``stop_grace`` how long subscribers get at stop to receive
    what is already queued.
    """

    def __init__(
        self,
        daemon: Daemon,
        *,
        queue_size: int = 1000,
        write_timeout: float = 10.0,
        stop_grace: float = 1.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.d = daemon
        self.queue_size, self.write_timeout, self.stop_grace = queue_size, write_timeout, stop_grace
        self.dropped = 0
        """Subscribers dropped (buffer full or a stalled write) since the daemon started."""
        self._conns: dict[_Conn, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False
        self._commands: dict[str, Callable[[_Conn, dict[str, Any]], Awaitable[_Reply]]] = {
            "status": self._status,
            "tasks": self._tasks,
            "trigger": self._trigger,
            "cancel": self._cancel,
            "history": self._history,
            "reload": self._reload,
            "subscribe": self._subscribe,
        }

    @property
    def subscribers(self) -> int:
        return sum(1 for c in self._conns if c.state == "stream")

    # -- life -------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set; then close every connection and remove the socket."""
        path, mode = self.d.config.control.socket, self.d.config.control.mode
        sock, inode = await asyncio.to_thread(_bind, path, mode)
        try:
            server = await asyncio.start_unix_server(self._accept, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            _unlink(path, inode)
            raise
        _log.info("control_listening", socket=str(path), mode=f"{mode:04o}")
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await stop.wait()
                self._tg = None
                server.close()
                await self._close_all()
            await server.wait_closed()
        finally:
            self._tg = None
            server.close()
            _unlink(path, inode)
            _log.info("control_closed", socket=str(path))

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tg = self._tg
        if tg is None:  # stopping: no new connections
            writer.close()
            return
        conn = _Conn(reader, writer)
        handler = self._handle(conn)
        try:
            self._conns[conn] = tg.create_task(handler, name="control-connection")
        except RuntimeError:  # the task group is shutting down (the daemon is failing)
            handler.close()
            writer.close()

    async def _close_all(self) -> None:
        self._stopping = True
        for conn, task in list(self._conns.items()):
            if conn.state == "stream" and conn.queue is not None:
                try:
                    conn.queue.put_nowait(None)  # the end, after what is queued
                except asyncio.QueueFull:
                    conn.writer.transport.abort()
            elif conn.state == "wait":
                conn.wake.set()
            elif conn.state == "idle":
                task.cancel()
        tasks = list(self._conns.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.stop_grace)
            for task in pending:
                task.cancel()

    # -- one connection -----------------------------------------------------------------
    async def _handle(self, conn: _Conn) -> None:
        try:
            while not self._stopping:
                conn.state = "idle"
                try:
                    line = await conn.reader.readline()
                except ValueError:  # longer than the reader's limit
                    await self._send(
                        conn,
                        _error(
                            f"request line longer than {MAX_LINE} bytes; closing the connection"
                        ),
                    )
                    return
                if not line:
                    return
                conn.state = "busy"
                if line.strip() and not await self._request(conn, line):
                    return
        except (ConnectionError, _Stalled):
            pass  # the client went away or stopped reading: nothing to tell it
        except Exception as exc:
            _log.error(
                "control_connection_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc
            )
        finally:
            self._conns.pop(conn, None)
            conn.writer.close()

    async def _request(self, conn: _Conn, line: bytes) -> bool:
        """Answer one request line; False when the connection is done."""
        cmd = "?"
        try:
            cmd, req = _parse(line)
            reply = await self._commands[cmd](conn, req)
        except _BadRequest as exc:
            reply = _error(str(exc))
        except FlowtaskError as exc:
            reply = _error(str(exc))
        except (ConnectionError, _Stalled):
            raise
        except Exception as exc:
            _log.error(
                "control_request_failed",
                cmd=cmd,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
            )
            reply = _error(f"internal error in {cmd}: {type(exc).__name__}: {exc}")
        if reply is None:
            return False
        await self._send(conn, reply)
        return True

    async def _send(self, conn: _Conn, obj: Payload) -> None:
        conn.writer.write(json.dumps(obj, default=str).encode() + b"\n")
        try:
            async with asyncio.timeout(self.write_timeout):
                await conn.writer.drain()
        except TimeoutError:
            raise _Stalled(f"a write stalled for {self.write_timeout:g}s") from None

    def _drop(self, conn: _Conn, reason: str) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        self.dropped += 1
        _log.warning("subscriber_dropped", reason=reason)
        conn.writer.transport.abort()

    # -- requests ---------------------------------------------------------------------
    async def _status(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        d = self.d
        now = d.clock.time()
        return {
            "ok": True,
            "pid": os.getpid(),
            "version": _version(),
            "uptime": round(now - d.started_at, 3),
            "started_at": d.started_at,
            "state_dir": str(d.config.state_dir),
            "config": str(d.config_path) if d.config_path is not None else None,
            "tasks": len(d.library.tasks),
            "invalid": len(d.library.invalid),
            "runs": d.runs.snapshot(),
            "next_fire_times": d.scheduler.next_fire_times(),
            "control": {
                "socket": str(d.config.control.socket),
                "connections": len(self._conns),
                "subscribers": self.subscribers,
                "dropped_subscribers": self.dropped,
            },
        }

    async def _tasks(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        lib = self.d.library
        tasks = [
            {
                "name": name,
                "file": str(t.path),
                "steps": len(t.pile),
                "schedules": list(t.pile.definition.schedules),
                "description": t.pile.definition.header.description,
            }
            for name, t in sorted(lib.tasks.items())
        ]
        invalid = [
            {"file": str(path), "problems": [p.to_dict() for p in problems]}
            for path, problems in sorted(lib.invalid.items())
        ]
        return {"ok": True, "tasks": tasks, "invalid": invalid}

    async def _trigger(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        name = _text(req, "task", required=True)
        assert name is not None
        params = req.get("params", {})
        if not isinstance(params, dict):
            raise _BadRequest(f"trigger: 'params' must be an object; got {_kind(params)}")
        wait = req.get("wait", False)
        if not isinstance(wait, bool):
            raise _BadRequest(f"trigger: 'wait' must be true or false; got {_kind(wait)}")
        watch = _RunWatch(conn.wake)
        disconnect = self.d.bus.connect(("completed", "run_skipped"), watch, task=name)
        try:
            run_id = self.d.intake.trigger(name, params)
            if run_id is None:
                return _error(f"run of {name} not started: {watch.skip_reason or 'skipped'}")
            if not wait:
                return {"ok": True, "run_id": run_id}
            await self._send(conn, {"ok": True, "run_id": run_id})
            conn.state = "wait"
            return await self._run_end(run_id, watch)
        finally:
            disconnect()

    async def _run_end(self, run_id: str, watch: _RunWatch) -> _Reply:
        while True:
            done = watch.completed.get(run_id)
            if done is not None:
                stats = done.get("stats") or {}
                return _ended(
                    run_id,
                    done.get("task"),
                    done.get("status"),
                    stats.get("error"),
                    stats.get("duration"),
                    done.get("stats"),
                )
            if self._stopping:
                return _error(f"the daemon is stopping; run {run_id} has not finished")
            runs = self.d.runs
            if run_id not in runs.active and all(r.run_id != run_id for r in runs.queue):
                return await self._ended_unseen(run_id)
            watch.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RECHECK):
                    await watch.wake.wait()

    async def _ended_unseen(self, run_id: str) -> _Reply:
        """A run that left the manager without ``completed``: ask the history."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            found = await asyncio.to_thread(self.d.store.get_run, run_id)
            if found is None:  # never started: cancelled while queued
                return _ended(run_id, None, "cancelled", "cancelled before it started", None, None)
            run = found[0]
            if run.status not in ("pending", "running") or loop.time() > deadline:
                return _ended(run_id, run.task, run.status, run.error, run.duration, run.stats)
            await asyncio.sleep(0.05)  # the manager records the end right after the run

    async def _cancel(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        prefix = _text(req, "run_id", required=True)
        assert prefix is not None
        runs = self.d.runs
        running = [rid for rid in runs.active if rid.startswith(prefix)]
        queued = [r.run_id for r in runs.queue if r.run_id.startswith(prefix)]
        matches = running + queued
        if not matches:
            return _error(f"no such running or queued run: {prefix}")
        if len(matches) > 1:
            return _error(
                f"run id prefix {prefix!r} is ambiguous ({', '.join(matches[:5])}): give more of it"
            )
        runs.cancel(matches[0])
        return {"ok": True, "run_id": matches[0], "was": "running" if running else "queued"}

    async def _history(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        task = _text(req, "task")
        n = req.get("n", 20)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise _BadRequest(f"history: 'n' must be a whole number from 1 to 1000; got {n!r}")
        runs = await asyncio.to_thread(self.d.store.list_runs, task, n)
        out = []
        for run in runs:
            row = dataclasses.asdict(run)
            del row["stats"]
            out.append(row)
        return {"ok": True, "runs": out}

    async def _reload(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        result = await self.d.reload()
        if not result.get("ok"):
            return _error(str(result.get("error") or "reload failed"))
        return {**result, "ok": True}

    async def _subscribe(self, conn: _Conn, req: dict[str, Any]) -> _Reply:
        task = _text(req, "task")
        events = req.get("events")
        if events is not None and (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) for e in events)
        ):
            raise _BadRequest("subscribe: 'events' must be a non-empty array of event names")
        queue: asyncio.Queue[Payload | None] = asyncio.Queue(maxsize=self.queue_size)

        def receive(payload: Payload) -> None:
            if conn.dropped:
                return
            try:
                queue.put_nowait(payload)
            except asyncio.QueueFull:
                self._drop(conn, f"its buffer of {self.queue_size} events is full")

        try:
            disconnect = self.d.bus.connect(events or CATCH_ALL, receive, task=task)
        except ValueError as exc:  # an unknown event name, with a did-you-mean
            raise _BadRequest(f"subscribe: {exc}") from None
        try:
            conn.queue = queue
            conn.state = "stream"
            await self._send(
                conn, {"ok": True, "subscribed": {"events": events or CATCH_ALL, "task": task}}
            )
            await self._stream(conn, queue)
        finally:
            disconnect()
        return None

    async def _stream(self, conn: _Conn, queue: asyncio.Queue[Payload | None]) -> None:
        """Write queued events until the client closes, the daemon stops, or a drop."""

        async def pump() -> None:
            while (payload := await queue.get()) is not None:
                await self._send(conn, payload)

        async def until_eof() -> None:
            with contextlib.suppress(ConnectionError):
                while await conn.reader.read(65536):
                    pass  # a subscribed connection takes no more requests

        writing = asyncio.ensure_future(pump())
        reading = asyncio.ensure_future(until_eof())
        try:
            await asyncio.wait({writing, reading}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            writing.cancel()
            reading.cancel()
            await asyncio.gather(writing, reading, return_exceptions=True)
        if not writing.cancelled() and isinstance(exc := writing.exception(), _Stalled):
            self._drop(conn, str(exc))


def _bind(path: Path, mode: int) -> tuple[socket.socket, int]:
    """A socket bound at ``path`` with ``mode`` (not listening yet) and its inode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise DaemonError(
                    f"{path} exists and is not a socket: move it away or set control.socket"
                )
            if _answers(path):
                raise DaemonError(f"another process is serving the control socket {path}")
            os.unlink(path)
            _log.info("control_stale_socket_removed", socket=str(path))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))
            os.chmod(path, mode)
            inode = os.stat(path).st_ino
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise DaemonError(
            f"cannot create the control socket {path}: {exc.strerror or exc}"
        ) from None
    return sock, inode


def _answers(path: Path) -> bool:
    """Whether something listens on the socket file ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


def _unlink(path: Path, inode: int) -> None:
    """Remove the socket file if it is still ours (not a later daemon's)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
