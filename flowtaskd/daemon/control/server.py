"""The control socket: a Unix socket speaking newline-delimited JSON.

A client (``flowtaskd status``, socat, a script) sends one JSON object per line, such as
``{"cmd": "status"}``, and reads one JSON object per line back: ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. A connection serves any number of requests, one at a
time, in order; :mod:`flowtaskd.daemon.control.requests` parses and answers them. This
module holds the socket, the connections and the event streams. Two requests reply more
than once:

* ``trigger`` with ``"wait": true`` replies at once with the run id, then again when the
  run ends, with its status and stats.
* ``subscribe`` replies once, then streams every matching event as one JSON line until the
  client closes its side (end of file) or the daemon stops; the connection takes no more
  requests.

A subscriber never slows a run or another subscriber: :mod:`flowtaskd.daemon.control.streams`
batches the events, encodes each batch once for every subscriber and writes without ever
waiting. A subscriber that falls too far behind (``queue_size`` events or ``buffer_bytes``
bytes held, or held for ``write_timeout``) is dropped: its connection is closed and
``subscriber_dropped`` logged.

No client can starve the others or the daemon. At most ``control.max_connections``
connections are open at once: one more gets a one-line error and is closed at once (no
descriptor is held for it), and ``control_connection_refused`` is logged once per spell.
A connection that is not subscribed and sends no request for ``control.idle_timeout``
seconds is closed. The listen backlog is ``SOMAXCONN``, so a burst of connects waits in the
kernel instead of being refused; when descriptors run out, accepting pauses with backoff
(:mod:`flowtaskd.daemon.control.listener`) instead of spinning.

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
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from flowtaskd.daemon.control.listener import Listener, open_streams
from flowtaskd.daemon.control.requests import (
    BadRequest,
    ControlHost,
    Requests,
    error_reply,
    parse_request,
    subscribe_filters,
)
from flowtaskd.daemon.control.sockfile import bind_socket, unlink_socket
from flowtaskd.daemon.control.streams import (
    Stream,
    StreamHub,
    encode_line,
    encode_lines,
    payload_keys,
)
from flowtaskd.engine.events import CATCH_ALL, Payload
from flowtaskd.errors import FlowtaskError

__all__ = ["MAX_LINE", "ControlServer"]

MAX_LINE = 1024 * 1024
"""The longest request line accepted, in bytes (without its newline)."""

_log = structlog.get_logger("flowtaskd.control")


class _Stalled(Exception):
    """A write to the client did not drain within the write timeout."""


_line = encode_line


@dataclass(eq=False)
class _Conn:
    """One client connection and what the stop path needs to know about it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    write_timeout: float
    state: str = "idle"  # idle (reading a request) | busy | wait (trigger --wait) | stream
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stream: Stream | None = None
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


class ControlServer:
    """Serves the control socket of ``daemon`` (a daemon extension); see the module doc.

    ``queue_size`` and ``buffer_bytes`` bound what one subscriber may leave unread (in
    events and in bytes), ``flush_delay`` spaces the flushes (batching the events of a
    burst: one write per subscriber instead of one per event), ``write_timeout`` bounds how
    long a subscriber may stay behind, ``stop_grace`` how long subscribers get at stop to
    read what is already queued. See :mod:`flowtaskd.daemon.control.streams`.
    """

    def __init__(
        self,
        daemon: ControlHost,
        *,
        queue_size: int = 1000,
        buffer_bytes: int = 16 * 1024 * 1024,
        flush_delay: float = 0.025,
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
        self.write_timeout, self.stop_grace = write_timeout, stop_grace
        self.hub = StreamHub(
            queue_size=queue_size,
            buffer_bytes=buffer_bytes,
            flush_delay=flush_delay,
            write_timeout=write_timeout,
            on_drop=self._dropped_stream,
            encode=encode_lines,
            keys=payload_keys,
        )
        self.dropped = 0
        """Subscribers dropped (buffer full or a stalled write) since the daemon started."""
        self.refused = 0
        """Connections refused because ``control.max_connections`` were open."""
        self.timed_out = 0
        """Idle connections closed after ``control.idle_timeout``."""
        self._refusing = False  # in a spell of refusals (logged once per spell)
        self._opening = 0  # accepted, streams not yet set up
        self.requests = Requests(daemon, self)
        self._conns: dict[_Conn, asyncio.Task[None]] = {}
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
        """The most events waiting for one subscriber (not yet handed to its socket)."""
        return self.hub.backlog()

    def summary(self) -> Payload:
        """The ``control`` section of the ``status`` reply."""
        return {
            "socket": str(self.d.config.control.socket),
            "connections": len(self._conns),
            "subscribers": self.subscribers,
            "dropped_subscribers": self.dropped,
            "max_connections": self.d.config.control.max_connections,
            "refused_connections": self.refused,
            "idle_closed": self.timed_out,
        }

    # -- life -------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set; then close every connection and remove the socket."""
        path, mode = self.d.config.control.socket, self.d.config.control.mode
        sock, inode = await asyncio.to_thread(bind_socket, path, mode)
        faults = self.d.faults
        listener = Listener(
            sock,
            self._accept,
            on_fault=lambda exc: faults.report("control_accept", exc),
            on_ok=lambda: faults.cleared("control_accept"),
        )
        try:
            listener.start()
        except BaseException:
            listener.close()
            unlink_socket(path, inode)
            raise
        _log.info("control_listening", socket=str(path), mode=f"{mode:04o}")
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await stop.wait()
                self._tg = None
                listener.close()
                await self._close_all()
        finally:
            self._tg = None
            listener.close()
            unlink_socket(path, inode)
            _log.info("control_closed", socket=str(path))

    def _accept(self, sock: socket.socket) -> None:
        tg = self._tg
        if tg is None:  # stopping: no new connections
            sock.close()
            return
        limit = self.d.config.control.max_connections
        if len(self._conns) + self._opening >= limit:
            self._refuse(sock, limit)
            return
        if self._refusing:
            self._refusing = False
            _log.info("control_connections_accepted", refused=self.refused)
        self._opening += 1
        handler = self._open(sock)
        try:
            tg.create_task(handler, name="control-connection")
        except RuntimeError:  # the task group is shutting down (the daemon is failing)
            self._opening -= 1
            handler.close()
            sock.close()

    async def _open(self, sock: socket.socket) -> None:
        try:
            reader, writer = await open_streams(sock, MAX_LINE)
        except OSError:
            return  # the client left already
        finally:
            self._opening -= 1
        conn = _Conn(reader, writer, self.write_timeout)
        task = asyncio.current_task()
        assert task is not None
        self._conns[conn] = task
        await self._handle(conn)

    def _refuse(self, sock: socket.socket, limit: int) -> None:
        """Over the limit: one error line (without waiting) and the connection closes."""
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            _log.warning("control_connection_refused", max_connections=limit)
        message = f"too many connections to the control socket ({limit} open); try again later"
        with contextlib.suppress(OSError):
            sock.send(_line({**error_reply(message), "busy": True}))
        sock.close()

    async def _close_all(self) -> None:
        self._stopping = True
        self.hub.end()  # every stream gets what is queued, then its end
        for conn, task in list(self._conns.items()):
            if conn.state == "wait":
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
                    async with asyncio.timeout(self.d.config.control.idle_timeout):
                        line = await conn.reader.readline()
                except TimeoutError:  # an idle client must not hold a slot for ever
                    self.timed_out += 1
                    return
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
        self.dropped += 1
        _log.warning("subscriber_dropped", reason=reason)
        conn.writer.transport.abort()

    def _dropped_stream(self, stream: Stream, reason: str) -> None:
        self._drop(stream.owner, reason)

    # -- event streams ------------------------------------------------------------------
    async def _subscribe(
        self, conn: _Conn, events: tuple[str, ...] | None, task: str | None, echo: Any
    ) -> None:
        transport = conn.writer.transport
        assert isinstance(transport, asyncio.WriteTransport)
        stream = Stream(transport, None if events is None else frozenset(events), task, conn)
        conn.stream, conn.state = stream, "stream"
        self.hub.add(stream)
        if self._unhook is None:
            self._unhook = self.d.bus.connect(CATCH_ALL, self.hub.on_event, copy=False)
        try:  # the reply goes out now, before any event (the flusher runs on a later turn)
            await conn.send({"ok": True, "subscribed": {"events": echo, "task": task}})
            await self._stream(conn, stream)
        finally:
            self.hub.remove(stream)
            if not len(self.hub) and self._unhook is not None:
                self._unhook()
                self._unhook = None

    async def _stream(self, conn: _Conn, stream: Stream) -> None:
        """Until the client closes its side, the stream is dropped, or the daemon stops."""

        async def until_eof() -> None:
            with contextlib.suppress(ConnectionError):
                while await conn.reader.read(65536):
                    pass  # a subscribed connection takes no more requests

        reading = asyncio.ensure_future(until_eof())
        ended = asyncio.ensure_future(stream.ended.wait())
        try:
            await asyncio.wait({reading, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reading.cancel()
            ended.cancel()
            await asyncio.gather(reading, ended, return_exceptions=True)
        if self._stopping and not conn.dropped:  # the client gets what is written, then EOF
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(self.stop_grace):
                    await conn.writer.drain()
