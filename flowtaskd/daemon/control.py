"""The control socket: a Unix socket speaking newline-delimited JSON.

A client (``flowtaskd status``, socat, a script) sends one JSON object per line, such as
``{"cmd": "status"}``, and reads one JSON object per line back: ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. A connection serves any number of requests, one at a
time, in order; :mod:`flowtaskd.daemon.control_requests` parses and answers them. This
module holds the socket, the connections and the event streams. Two requests reply more
than once:

* ``trigger`` with ``"wait": true`` replies at once with the run id, then again when the
  run ends, with its status and stats.
* ``subscribe`` replies once, then streams every matching event as one JSON line until the
  client closes its side (end of file) or the daemon stops; the connection takes no more
  requests.

A subscriber never slows a run or another subscriber. One sync bus receiver serves every
stream: it encodes an event to a JSON line once (if any subscriber wants it) and appends the
bytes to each matching subscriber's bounded buffer. Each stream's writer sends all that is
buffered in one write, at most once per ``flush_delay`` (an event after a quiet spell, or a
half-full buffer, goes out at once), and waits only when the socket's buffer is over its
high-water mark. A full buffer (``queue_size`` events or ``buffer_bytes`` bytes) or a write
stalled for ``write_timeout`` drops the subscriber: its connection is closed and
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from flowtaskd.daemon.control_requests import (
    BadRequest,
    Requests,
    error_reply,
    parse_request,
    subscribe_filters,
)
from flowtaskd.daemon.sockfile import bind_socket, unlink_socket
from flowtaskd.errors import FlowtaskError
from flowtaskd.events import CATCH_ALL, Payload

if TYPE_CHECKING:
    from flowtaskd.daemon.service import Daemon

__all__ = ["MAX_LINE", "ControlServer"]

MAX_LINE = 1024 * 1024
"""The longest request line accepted, in bytes (without its newline)."""

_log = structlog.get_logger("flowtaskd.control")


class _Stalled(Exception):
    """A write to the client did not drain within the write timeout."""


_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def _line(obj: Payload) -> bytes:
    # orjson: a run's ~45 events are ~22 KB of JSON; the stdlib encoder took ~140 us for the
    # stats-laden `completed` event alone, orjson ~11 us
    return orjson.dumps(obj, default=str, option=_ORJSON_OPTS)


@dataclass(eq=False)
class _Conn:
    """One client connection and what the stop path needs to know about it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    write_timeout: float
    state: str = "idle"  # idle (reading a request) | busy | wait (trigger --wait) | stream
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stream: _Stream | None = None
    dropped: bool = False

    async def write(self, data: bytes) -> None:
        """Write ``data``; wait for the socket only if its buffer is over the high-water mark
        (then at most ``write_timeout`` seconds, or _Stalled)."""
        writer = self.writer
        writer.write(data)
        transport = writer.transport
        # Writing is paused only above the high-water mark, and resumes only at or below the
        # low-water one: at or below it, drain() returns at once (or raises if the peer left).
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
            await writer.drain()
            return
        try:
            async with asyncio.timeout(self.write_timeout):
                await writer.drain()
        except TimeoutError:
            raise _Stalled(f"a write stalled for {self.write_timeout:g}s") from None

    async def send(self, obj: Payload) -> None:
        await self.write(_line(obj))


@dataclass(eq=False)
class _Stream:
    """A subscribed connection: its filters and its buffer of encoded event lines."""

    conn: _Conn
    events: frozenset[str] | None  # None: every event
    task: str | None  # None: every task
    lines: deque[bytes] = field(default_factory=deque)
    size: int = 0  # bytes in lines
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ending: bool = False  # the daemon stops: write what is buffered, then end


class ControlServer:
    """Serves the control socket of ``daemon`` (a daemon extension); see the module doc.

    ``queue_size`` and ``buffer_bytes`` bound each subscriber's buffer of events (in events
    and in bytes), ``flush_delay`` spaces the writes to one subscriber (batching the events
    of a burst: one write instead of one per event), ``write_timeout`` bounds how long one
    write to a client may stall, ``stop_grace`` how long subscribers get at stop to receive
    what is already queued.
    """

    def __init__(
        self,
        daemon: Daemon,
        *,
        queue_size: int = 1000,
        buffer_bytes: int = 16 * 1024 * 1024,
        flush_delay: float = 0.01,
        write_timeout: float = 10.0,
        stop_grace: float = 1.0,
    ) -> None:
        for name, value, least in (
            ("queue_size", queue_size, 1),
            ("buffer_bytes", buffer_bytes, 1),
            ("flush_delay", flush_delay, 0),
        ):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        self.d = daemon
        self.queue_size, self.buffer_bytes = queue_size, buffer_bytes
        self.flush_delay = flush_delay
        self._flush_at = (max(1, queue_size // 2), max(1, buffer_bytes // 2))
        self.write_timeout, self.stop_grace = write_timeout, stop_grace
        self.dropped = 0
        """Subscribers dropped (buffer full or a stalled write) since the daemon started."""
        self.requests = Requests(daemon, self)
        self._conns: dict[_Conn, asyncio.Task[None]] = {}
        self._streams: tuple[_Stream, ...] = ()  # replaced, never changed: safe to iterate
        self._unhook: Callable[[], None] | None = None  # the bus receiver, while streams exist
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False

    @property
    def subscribers(self) -> int:
        return sum(1 for c in self._conns if c.state == "stream")

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stream_backlog(self) -> int:
        """The most events waiting in one subscriber's buffer (not yet handed to its socket):
        a subscriber is dropped when this would pass ``queue_size``."""
        return max((len(s.lines) for s in self._streams), default=0)

    def summary(self) -> Payload:
        """The ``control`` section of the ``status`` reply."""
        return {
            "socket": str(self.d.config.control.socket),
            "connections": len(self._conns),
            "subscribers": self.subscribers,
            "dropped_subscribers": self.dropped,
        }

    # -- life -------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set; then close every connection and remove the socket."""
        path, mode = self.d.config.control.socket, self.d.config.control.mode
        sock, inode = await asyncio.to_thread(bind_socket, path, mode)
        try:
            server = await asyncio.start_unix_server(self._accept, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            unlink_socket(path, inode)
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
            unlink_socket(path, inode)
            _log.info("control_closed", socket=str(path))

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tg = self._tg
        if tg is None:  # stopping: no new connections
            writer.close()
            return
        conn = _Conn(reader, writer, self.write_timeout)
        handler = self._handle(conn)
        try:
            self._conns[conn] = tg.create_task(handler, name="control-connection")
        except RuntimeError:  # the task group is shutting down (the daemon is failing)
            handler.close()
            writer.close()

    async def _close_all(self) -> None:
        self._stopping = True
        for conn, task in list(self._conns.items()):
            if conn.state == "stream" and conn.stream is not None:
                conn.stream.ending = True  # the end, after what is buffered
                self._unlist(conn.stream)
                conn.stream.ready.set()
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
                    message = f"request line longer than {MAX_LINE} bytes; closing the connection"
                    await conn.send(error_reply(message))
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
            cmd, req = parse_request(line)
            if cmd == "subscribe":
                events, task = subscribe_filters(req)
                await self._subscribe(conn, events, task, req.get("events") or CATCH_ALL)
                return False
            reply = await self.requests.answer(conn, cmd, req)
        except (BadRequest, FlowtaskError) as exc:
            reply = error_reply(str(exc))
        except (ConnectionError, _Stalled):
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            _log.error("control_request_failed", cmd=cmd, error=error, exc_info=exc)
            reply = error_reply(f"internal error in {cmd}: {error}")
        await conn.send(reply)
        return True

    def _drop(self, conn: _Conn, reason: str) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        if conn.stream is not None:
            self._unlist(conn.stream)
        self.dropped += 1
        _log.warning("subscriber_dropped", reason=reason)
        conn.writer.transport.abort()

    # -- event streams ------------------------------------------------------------------
    async def _subscribe(
        self, conn: _Conn, events: tuple[str, ...] | None, task: str | None, echo: Any
    ) -> None:
        stream = _Stream(conn, None if events is None else frozenset(events), task)
        conn.stream, conn.state = stream, "stream"
        self._streams = (*self._streams, stream)
        if self._unhook is None:
            self._unhook = self.d.bus.connect(CATCH_ALL, self._fan_out)
        try:  # the reply goes out now, before any event (those wait in the buffer)
            await conn.send({"ok": True, "subscribed": {"events": echo, "task": task}})
            await self._stream(stream)
        finally:
            self._unlist(stream)
            if not self._streams and self._unhook is not None:
                self._unhook()
                self._unhook = None

    def _unlist(self, stream: _Stream) -> None:
        if stream in self._streams:
            self._streams = tuple(s for s in self._streams if s is not stream)

    def _fan_out(self, payload: Payload) -> None:
        """The one bus receiver of all streams: encode once, buffer for each match."""
        event, task = payload.get("event"), payload.get("task")
        line, size = b"", 0
        most, half_n, half_b = self.queue_size, *self._flush_at
        for s in self._streams:
            if (s.events is not None and event not in s.events) or (
                s.task is not None and s.task != task
            ):
                continue
            if not size:
                line = _line(payload)
                size = len(line)
            lines = s.lines
            if len(lines) >= most:
                self._drop(s.conn, f"its buffer of {most} events is full")
            elif lines and s.size + size > self.buffer_bytes:
                self._drop(s.conn, f"its buffer of {self.buffer_bytes} bytes is full")
            else:
                lines.append(line)
                s.size += size
                if len(lines) == 1 or len(lines) >= half_n or s.size >= half_b:
                    s.ready.set()  # wake the writer: data to write, or no more waiting

    def _half_full(self, s: _Stream) -> bool:
        return len(s.lines) >= self._flush_at[0] or s.size >= self._flush_at[1]

    async def _stream(self, stream: _Stream) -> None:
        """Write buffered events until the client closes, the daemon stops, or a drop."""
        conn = stream.conn

        async def pump() -> None:
            loop = asyncio.get_running_loop()
            next_write = loop.time()  # at most one write per flush_delay, unless half full
            while True:
                if not stream.lines:
                    if stream.ending:
                        return
                    stream.ready.clear()
                    await stream.ready.wait()
                    continue
                if loop.time() < next_write and not (stream.ending or self._half_full(stream)):
                    stream.ready.clear()  # set again when half full, or at stop
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(next_write):
                            await stream.ready.wait()
                data = b"".join(stream.lines)
                stream.lines.clear()
                stream.size = 0
                next_write = loop.time() + self.flush_delay
                await conn.write(data)

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
