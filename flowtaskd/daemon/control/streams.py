"""Event streams of the control socket: every subscriber's events, encoded once, written in
batches by one flusher.

One bus receiver serves every stream. An event costs the run that emits it one list append:
for the subscribers without filters (most of them) the event joins one shared batch; a
subscriber with filters (event names, a task) gets the events it wants in a batch of its
own. The flusher runs at most once per ``flush_delay`` (the first event after a quiet spell
goes out on the next turn of the loop, the rest of a burst waits for the next flush, or
goes at once when half of ``queue_size`` is waiting). It encodes the shared batch to JSON
lines once, whatever the number of subscribers, and hands the bytes to each connection's
transport: one write per subscriber per flush, never a wait.

A subscriber that reads slower than events come is not allowed to slow anything: while its
socket's buffer is over the transport's high-water mark, its batches are held instead of
written, and go out once it is back under the low-water mark. Holding more than
``queue_size`` events, or more than ``buffer_bytes`` bytes it has not read (held, or
written and still in the transport), or staying behind (events held, or its socket over
the high-water mark) for longer than ``write_timeout``, drops the subscriber
(:class:`StreamHub` calls ``on_drop``). While anyone is behind, the flusher looks again
every ``flush_delay``.

At stop, :meth:`StreamHub.end` writes everything pending and held, whatever the marks, and
tells each stream it has ended; the connection handler then gives the client a grace period
to read it. A stream whose connection closed ends at the next flush.

The hub is generic over what it carries: the control socket's streams carry payloads
written as JSON lines (:func:`encode_lines`); the web server's Server-Sent Events carry
numbered events written as SSE frames, each batch framed as one HTTP chunk
(:attr:`Stream.frame`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from flowtaskd.core.events import Payload

__all__ = ["Stream", "StreamHub", "encode_line", "encode_lines", "payload_keys"]

T = TypeVar("T")

_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
_MIN_RETRY = 0.01  # seconds between looks at subscribers that are behind


def encode_line(obj: Payload) -> bytes:
    """One compact JSON line. orjson: the stdlib took ~140 us for a stats-laden ``completed``
    event alone, orjson ~11 us."""
    return orjson.dumps(obj, default=str, option=_ORJSON_OPTS)


def encode_lines(payloads: Sequence[Payload]) -> bytes:
    return b"".join(map(encode_line, payloads))


def payload_keys(payload: Payload) -> tuple[Any, Any]:
    """What the filters look at: the event's name and its task."""
    return payload.get("event"), payload.get("task")


@dataclass(eq=False)
class Stream:
    """One subscribed connection: its filters, what waits for it, and its state."""

    transport: asyncio.WriteTransport
    events: frozenset[str] | None  # None: every event
    task: str | None  # None: every task
    owner: Any = None  # the connection, for whoever is told of a drop
    frame: Callable[[bytes], bytes] | None = None  # wraps each write (an HTTP chunk)
    start: int = 0  # unfiltered: where in the hub's shared batch this stream joined
    own: list[Any] | None = None  # filtered: its events since the last flush
    held: deque[bytes] = field(default_factory=deque)  # batches its socket could not take
    held_bytes: int = 0
    held_events: int = 0
    behind_since: float | None = None  # since when its socket has not kept up
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # dropped, or the stop

    @property
    def filtered(self) -> bool:
        return self.events is not None or self.task is not None

    def wants(self, event: Any, task: Any) -> bool:
        return (self.events is None or event in self.events) and (
            self.task is None or self.task == task
        )


class StreamHub(Generic[T]):
    """Every stream of one server; :meth:`on_event` is the one bus receiver."""

    def __init__(
        self,
        *,
        queue_size: int,
        buffer_bytes: int,
        flush_delay: float,
        write_timeout: float,
        on_drop: Callable[[Stream, str], None],
        encode: Callable[[Sequence[T]], bytes],
        keys: Callable[[T], tuple[Any, Any]],
    ) -> None:
        self._encode, self._keys = encode, keys
        self.queue_size, self.buffer_bytes = queue_size, buffer_bytes
        self.flush_delay, self.write_timeout = flush_delay, write_timeout
        self._half = max(1, queue_size // 2)
        self._on_drop = on_drop
        self._streams: tuple[Stream, ...] = ()  # replaced, never changed: safe to iterate
        self._filtered: tuple[Stream, ...] = ()
        self._unfiltered = 0
        self._batch: list[T] = []  # every unfiltered stream's events since the flush
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._next = 0.0  # loop time before which no flush starts (unless half full)

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: Stream) -> None:
        self._loop = asyncio.get_running_loop()
        if stream.filtered:
            stream.own = []
        else:
            stream.start = len(self._batch)
        self._set((*self._streams, stream))

    def remove(self, stream: Stream) -> None:
        if stream in self._streams:
            self._set(tuple(s for s in self._streams if s is not stream))
        stream.ended.set()

    def _set(self, streams: tuple[Stream, ...]) -> None:
        self._streams = streams
        self._filtered = tuple(s for s in streams if s.filtered)
        self._unfiltered = len(streams) - len(self._filtered)
        if not self._unfiltered:
            self._batch = []

    def backlog(self) -> int:
        """The most events waiting for one subscriber (not yet handed to its socket)."""
        return max((self._pending(s) + s.held_events for s in self._streams), default=0)

    def _pending(self, s: Stream) -> int:
        return len(s.own) if s.own is not None else len(self._batch) - s.start

    # -- in: the bus receiver --------------------------------------------------------------
    def on_event(self, payload: T) -> None:
        """Queue ``payload`` for every stream that wants it; never waits, never writes."""
        waiting = 0
        if self._unfiltered:
            self._batch.append(payload)
            waiting = len(self._batch)
        if self._filtered:
            event, task = self._keys(payload)
            for s in self._filtered:
                if s.own is not None and s.wants(event, task):
                    s.own.append(payload)
                    waiting = max(waiting, len(s.own))
        if waiting:
            self._schedule(soon=waiting >= self._half)

    def _schedule(self, *, soon: bool = False) -> None:
        loop = self._loop
        if loop is None:
            return
        if isinstance(self._timer, asyncio.TimerHandle):
            if not soon:
                return
            self._timer.cancel()  # half full: go now rather than at the next flush time
        elif self._timer is not None:
            return  # already due on the next turn of the loop
        now = loop.time()
        if soon or now >= self._next:
            self._timer = loop.call_soon(self.flush)
        else:
            self._timer = loop.call_at(self._next, self.flush)

    # -- out: the flusher ------------------------------------------------------------------
    def flush(self, *, final: bool = False) -> None:
        """Hand what waits to every stream's socket (see the module docstring)."""
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        self._next = now + self.flush_delay
        batch, self._batch = self._batch, []
        shared: bytes | None = None
        behind = False
        for s in self._streams:
            if s.own is None:
                part = batch[s.start :] if s.start else batch
                s.start = 0
                if part is batch:
                    if shared is None:
                        shared = self._encode(batch)  # once, for every unfiltered stream
                    data = shared
                else:  # joined during this batch: only what came after
                    data = self._encode(part)
                count = len(part)
            else:
                part, s.own = s.own, []
                count = len(part)
                data = self._encode(part) if count else b""
            if final and s.held and not s.transport.is_closing():
                self._write_held(s)  # at the end, what it holds goes first, whatever the marks
            if count:
                self._deliver(s, data, count, now, final)
            if not s.ended.is_set() and not final:
                behind = self._watch(s, now) or behind
        if behind and self._timer is None:  # look again while a subscriber is behind
            self._timer = loop.call_at(now + max(self.flush_delay, _MIN_RETRY), self.flush)

    def _deliver(self, s: Stream, data: bytes, count: int, now: float, final: bool) -> None:
        t = s.transport
        if s.ended.is_set() or t.is_closing():
            return
        if s.frame is not None:
            data = s.frame(data)
        buffered = t.get_write_buffer_size()  # written, not yet taken by the client's socket
        if final:
            t.write(data)
            return
        unread = buffered + s.held_bytes + len(data)
        if unread > self.buffer_bytes and s.held_events + count > 1:  # one event may be big
            self._drop(s, f"its buffer of {self.buffer_bytes} bytes is full")
            return
        if not s.held and buffered <= t.get_write_buffer_limits()[1]:
            t.write(data)
            return
        s.held.append(data)
        s.held_bytes += len(data)
        s.held_events += count
        if s.held_events > self.queue_size:
            self._drop(s, f"its buffer of {self.queue_size} events is full")

    def _watch(self, s: Stream, now: float) -> bool:
        """Release what ``s`` holds once its socket has room; drop it if it stays behind
        (its socket over the high-water mark, or events held) for ``write_timeout``.
        True while it is behind."""
        t = s.transport
        if t.is_closing():  # the connection closed: nothing more to write
            self.remove(s)
            return False
        low, high = t.get_write_buffer_limits()
        buffered = t.get_write_buffer_size()
        if s.held and buffered <= low:
            self._write_held(s)
            buffered = t.get_write_buffer_size()
        if not s.held and buffered <= high:
            s.behind_since = None
            return False
        if s.behind_since is None:
            s.behind_since = now
        elif now - s.behind_since > self.write_timeout:
            self._drop(s, f"a write stalled for {self.write_timeout:g}s")
            return False
        return True

    @staticmethod
    def _write_held(s: Stream) -> None:
        s.transport.write(b"".join(s.held))
        s.held.clear()
        s.held_bytes = s.held_events = 0

    def _drop(self, s: Stream, reason: str) -> None:
        s.held.clear()
        s.held_bytes = s.held_events = 0
        self.remove(s)
        self._on_drop(s, reason)

    def end(self) -> None:
        """The daemon stops: write everything, whatever the marks; end every stream."""
        if self._timer is not None:
            self._timer.cancel()
        self.flush(final=True)
        for s in self._streams:
            s.ended.set()
        self._set(())
