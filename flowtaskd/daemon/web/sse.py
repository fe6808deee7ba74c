"""Server-Sent Events: every bus event numbered, kept in a bounded backlog, fanned out by
one flusher.

:class:`EventLog` is one cheap synchronous bus receiver: it numbers each event, keeps the
newest ``backlog`` of them and hands it to a :class:`~flowtaskd.daemon.control.streams.StreamHub`,
the control socket's streams' flusher: an event costs the run one list append; at most
every ``flush_delay`` (20 ms) the flusher encodes the batch as SSE frames (``id``, ``event``,
``data``) once for every client without filters, and writes each client's batch straight
to its connection's transport, as one HTTP chunk, without waiting for any client. A
client that reconnects with ``Last-Event-ID`` first gets the events it missed, if the
backlog still holds them; otherwise a ``reset`` event tells it to reload.

A client that reads slower than events come is held back, then dropped (more than
``queue_size`` events or ``buffer_bytes`` bytes it has not read, or behind for
``write_timeout``): ``web_event_client_dropped`` is logged, its connection is closed, the
run never waits; a browser's EventSource reconnects and resumes from the backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from flowtaskd.daemon.control.streams import Stream, StreamHub
from flowtaskd.engine.events import Payload

__all__ = ["EventLog", "Item", "chunk", "frame"]

Item = tuple[int, str, Any, Payload]
"""One numbered event: its id, name, task and payload."""

_log = structlog.get_logger("flowtaskd.web")
_OPTS = orjson.OPT_NON_STR_KEYS


def frame(event_id: int | None, name: str, data: object) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = orjson.dumps(data, default=str, option=_OPTS)
    return f"{head}event: {name}\ndata: ".encode() + body + b"\n\n"


def _frames(items: Sequence[Item]) -> bytes:
    return b"".join([frame(i, name, payload) for i, name, _, payload in items])


def _keys(item: Item) -> tuple[Any, Any]:
    return item[1], item[2]


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of an HTTP/1.1 chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class EventLog:
    """The numbered, bounded backlog and the attached clients; see the module doc."""

    def __init__(
        self,
        backlog: int = 2000,
        *,
        flush_delay: float = 0.02,
        queue_size: int = 1000,
        buffer_bytes: int = 4 * 1024 * 1024,
        write_timeout: float = 10.0,
    ) -> None:
        self.last_id = 0
        self._backlog: deque[Item] = deque(maxlen=backlog)
        self.dropped = 0
        self.hub: StreamHub[Item] = StreamHub(
            queue_size=queue_size,
            buffer_bytes=buffer_bytes,
            flush_delay=flush_delay,
            write_timeout=write_timeout,
            on_drop=self._drop,
            encode=_frames,
            keys=_keys,
        )

    @property
    def clients(self) -> int:
        return len(self.hub)

    def __call__(self, payload: Payload) -> None:
        self.last_id += 1
        item = (self.last_id, str(payload.get("event")), payload.get("task"), payload)
        self._backlog.append(item)
        self.hub.on_event(item)

    def attach(
        self,
        transport: asyncio.WriteTransport,
        events: frozenset[str] | None,
        task: str | None,
        last_id: int | None,
        *,
        chunked: bool,
    ) -> Stream:
        """A new client: write its ``hello`` and what it missed since ``last_id`` to
        ``transport`` now; the flusher writes the rest. The caller has sent the headers."""
        stream = Stream(transport, events, task, frame=chunk if chunked else None)
        first = [frame(None, "hello", {"last_id": self.last_id})]
        if last_id is not None:
            missed = self.since(last_id, stream)
            if missed is None:
                first.append(frame(None, "reset", {"last_id": self.last_id}))
            else:
                first.append(_frames(missed))
        data = b"".join(first)
        self.hub.add(stream)  # in the same turn: nothing comes between the two
        transport.write(chunk(data) if chunked else data)
        return stream

    def ping(self, stream: Stream) -> None:
        """A comment line, so that proxies do not close an idle stream."""
        t = stream.transport
        if not stream.held and not t.is_closing():
            data = b": ping\n\n"
            t.write(chunk(data) if stream.frame is not None else data)

    def detach(self, stream: Stream) -> None:
        self.hub.remove(stream)

    def end(self) -> None:
        """The server stops: every client gets what is pending, then its stream ends."""
        self.hub.end()

    def _drop(self, stream: Stream, reason: str) -> None:
        self.dropped += 1
        _log.warning("web_event_client_dropped", reason=reason)
        stream.transport.abort()

    def since(self, last_id: int, stream: Stream) -> list[Item] | None:
        """The events after ``last_id`` that ``stream`` wants; None if some are gone."""
        if last_id >= self.last_id:
            return []
        oldest = self._backlog[0][0] if self._backlog else self.last_id + 1
        if last_id + 1 < oldest:
            return None
        return [it for it in self._backlog if it[0] > last_id and stream.wants(it[1], it[2])]

    def recent(self, n: int) -> list[Payload]:
        """The newest ``n`` events (for the Live page's first paint)."""
        return [it[3] for it in list(self._backlog)[-n:]]
