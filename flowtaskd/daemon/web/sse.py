"""Server-Sent Events: every bus event numbered, kept in a bounded backlog, fanned out.

:class:`EventLog` is one cheap synchronous bus receiver: it numbers each event, encodes it
once as an SSE frame (``id``, ``event``, ``data``), keeps the newest ``backlog`` frames and
puts the frame in the queue of every client whose filter (event names, task) matches. A
client that reconnects with ``Last-Event-ID`` first gets the frames it missed, if the
backlog still holds them; otherwise a ``reset`` event tells it to reload. A client whose
queue is full (it stopped reading) is dropped: its stream ends, the run never waits.
Clients are woken ``flush_delay`` (20 ms) after the first event of a burst, so that a burst
(a run's start, its steps, its end) costs each client one write instead of one per event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from flowtaskd.engine.events import Payload

__all__ = ["EventLog", "SseClient", "frame"]


def frame(event_id: int | None, name: str, data: object) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@dataclass(eq=False)
class SseClient:
    """One attached stream: its filter, the frames not yet written, a wake-up."""

    events: frozenset[str] | None
    task: str | None
    most: int = 1000
    pending: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False

    def put(self, data: bytes) -> bool:
        """Hold ``data`` until the next flush; False if the client holds too much."""
        if len(self.pending) >= self.most:
            return False
        self.pending.append(data)
        return True

    def take(self) -> bytes:
        """Every frame pending, in order, as one write."""
        self.wake.clear()
        out = b"".join(self.pending)
        self.pending.clear()
        return out

    def wants(self, name: str, task: object) -> bool:
        if self.events is not None and name not in self.events:
            return False
        return self.task is None or task == self.task


class EventLog:
    """The numbered, bounded backlog and the attached clients; see the module doc."""

    def __init__(self, backlog: int = 2000, flush_delay: float = 0.02) -> None:
        self.flush_delay = flush_delay
        self._flush_at: asyncio.TimerHandle | None = None
        self.last_id = 0
        self._backlog: deque[tuple[int, str, object, bytes]] = deque(maxlen=backlog)
        self.clients: set[SseClient] = set()
        self.dropped = 0

    def __call__(self, payload: Payload) -> None:
        self.last_id += 1
        name = str(payload.get("event"))
        task = payload.get("task")
        data = frame(self.last_id, name, payload)
        self._backlog.append((self.last_id, name, task, data))
        for client in self.clients:
            if client.dropped or not client.wants(name, task):
                continue
            if not client.put(data):
                client.dropped = True
                client.wake.set()
                self.dropped += 1
            elif self._flush_at is None:
                self._flush_at = asyncio.get_running_loop().call_later(
                    self.flush_delay, self._flush
                )

    def _flush(self) -> None:
        """Wake every client holding frames: a burst of events is one write per client."""
        self._flush_at = None
        for client in self.clients:
            if client.pending:
                client.wake.set()

    def since(self, last_id: int, client: SseClient) -> Iterator[bytes] | None:
        """The frames after ``last_id`` that ``client`` wants; None if some are gone."""
        if last_id >= self.last_id:
            return iter(())
        oldest = self._backlog[0][0] if self._backlog else self.last_id + 1
        if last_id + 1 < oldest:
            return None
        return (d for i, n, t, d in self._backlog if i > last_id and client.wants(n, t))

    def recent(self, n: int) -> list[Payload]:
        """The newest ``n`` events (for the Live page's first paint)."""
        items = list(self._backlog)[-n:]
        return [orjson.loads(d.split(b"data: ", 1)[1]) for _, _, _, d in items]
