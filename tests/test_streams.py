"""flowtaskd.daemon.control.streams: the hub's batching, filters and drops, over real
socket pairs (a subscriber that never reads fills its socket, then its buffer)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from flowtaskd.daemon.control.streams import (
    Stream,
    StreamHub,
    encode_line,
    encode_lines,
    payload_keys,
)
from tests.conftest import wait_for


@dataclass
class _Peer:
    """The client end of one subscription: what it read so far."""

    reader: asyncio.StreamReader | None
    transport: asyncio.WriteTransport

    async def read_lines(self, n: int) -> list[dict[str, object]]:
        out = []
        assert self.reader is not None
        for _ in range(n):
            line = await asyncio.wait_for(self.reader.readline(), 5)
            out.append(orjson.loads(line))
        return out


class _Pairs:
    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def new(self, *, reads: bool = True) -> _Peer:
        """A daemon-side transport and its client: one that reads, or one that never does."""
        a, b = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        self.transports.append(transport)
        assert isinstance(transport, asyncio.WriteTransport)
        if not reads:
            self.socks.append(b)
            return _Peer(None, transport)
        reader, writer = await asyncio.open_connection(sock=b)
        self.writers.append(writer)
        return _Peer(reader, transport)


@pytest.fixture
async def pairs() -> AsyncIterator[_Pairs]:
    p = _Pairs()
    yield p
    for t in p.transports:
        t.close()
    for w in p.writers:
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
    for sock in p.socks:
        sock.close()
    for _ in range(3):  # the transports finish closing on the next turns of the loop
        await asyncio.sleep(0)


def _hub(drops: list[tuple[Stream, str]], **kw: float) -> StreamHub:
    opts = {"queue_size": 100, "buffer_bytes": 1 << 20, "flush_delay": 0.01, "write_timeout": 5.0}
    opts.update(kw)
    return StreamHub(
        queue_size=int(opts["queue_size"]),
        buffer_bytes=int(opts["buffer_bytes"]),
        flush_delay=opts["flush_delay"],
        write_timeout=opts["write_timeout"],
        on_drop=lambda s, why: drops.append((s, why)),
        encode=encode_lines,
        keys=payload_keys,
    )


def test_encode_line_is_one_compact_line() -> None:
    assert encode_line({"event": "e", "n": 1}) == b'{"event":"e","n":1}\n'
    assert encode_line({1: {1, 2} and "x"}) == b'{"1":"x"}\n'
    assert encode_line({"p": (1, 2)}) == b'{"p":[1,2]}\n'
    assert encode_lines([{"a": 1}, {"b": 2}]) == b'{"a":1}\n{"b":2}\n'
    assert payload_keys({"event": "e", "task": "t", "x": 1}) == ("e", "t")


async def test_every_stream_gets_what_it_wants_in_order(pairs: _Pairs) -> None:
    drops: list[tuple[Stream, str]] = []
    hub = _hub(drops)
    all_peer, only_peer = await pairs.new(), await pairs.new()
    everything = Stream(all_peer.transport, None, None)
    only = Stream(only_peer.transport, frozenset({"run_done"}), "a")
    hub.add(everything)
    hub.add(only)
    assert len(hub) == 2
    events = [
        {"event": "run_started", "task": "a"},
        {"event": "run_done", "task": "b"},
        {"event": "run_done", "task": "a", "n": 1},
    ]
    for e in events:
        hub.on_event(e)
    assert hub.backlog() == 3
    assert await all_peer.read_lines(3) == events
    assert await only_peer.read_lines(1) == [events[2]]
    assert hub.backlog() == 0 and drops == []


async def test_a_stream_joining_mid_batch_gets_only_what_follows(pairs: _Pairs) -> None:
    hub = _hub([])
    first, late = await pairs.new(), await pairs.new()
    hub.add(Stream(first.transport, None, None))
    hub.on_event({"event": "one"})
    hub.add(Stream(late.transport, None, None))
    hub.on_event({"event": "two"})
    assert [e["event"] for e in await first.read_lines(2)] == ["one", "two"]
    assert [e["event"] for e in await late.read_lines(1)] == ["two"]


async def test_remove_ends_the_stream_and_stops_its_events(pairs: _Pairs) -> None:
    hub = _hub([])
    peer, other = await pairs.new(), await pairs.new()
    gone = Stream(peer.transport, None, None)
    stays = Stream(other.transport, None, None)
    hub.add(gone)
    hub.add(stays)
    hub.remove(gone)
    assert gone.ended.is_set() and len(hub) == 1
    hub.on_event({"event": "after"})
    assert await other.read_lines(1) == [{"event": "after"}]
    hub.remove(gone)  # twice: fine


async def test_a_subscriber_that_never_reads_is_dropped_when_its_buffer_is_full(
    pairs: _Pairs,
) -> None:
    drops: list[tuple[Stream, str]] = []
    hub = _hub(drops, buffer_bytes=200_000, queue_size=10_000)
    slow_peer, fast_peer = await pairs.new(reads=False), await pairs.new()
    slow = Stream(slow_peer.transport, None, None, owner="slow")
    hub.add(slow)
    fast = Stream(fast_peer.transport, frozenset({"tick"}), None)
    hub.add(fast)
    blob = "x" * 10_000
    for i in range(2000):  # ~20 MB: more than the socket and the buffer hold
        hub.on_event({"event": "big", "i": i, "blob": blob})
        if drops:
            break
        await asyncio.sleep(0)
    await wait_for(lambda: drops, what="the slow subscriber dropped")
    assert drops[0][0] is slow and drops[0][1] == "its buffer of 200000 bytes is full"
    assert slow.ended.is_set() and len(hub) == 1
    hub.on_event({"event": "tick"})  # the others go on
    assert await fast_peer.read_lines(1) == [{"event": "tick"}]


async def test_a_stalled_subscriber_is_dropped_after_write_timeout(pairs: _Pairs) -> None:
    drops: list[tuple[Stream, str]] = []
    hub = _hub(drops, buffer_bytes=1 << 30, queue_size=1 << 20, write_timeout=0.2)
    peer = await pairs.new(reads=False)
    peer.transport.set_write_buffer_limits(high=1024, low=512)
    stalled = Stream(peer.transport, None, None)
    hub.add(stalled)
    blob = "y" * 50_000
    for i in range(100):  # fills the kernel buffer and goes over the high-water mark
        hub.on_event({"event": "big", "i": i, "blob": blob})
        await asyncio.sleep(0)
    await wait_for(lambda: drops, what="the stalled subscriber dropped")
    assert drops == [(stalled, "a write stalled for 0.2s")]


async def test_end_writes_everything_and_ends_each_stream(pairs: _Pairs) -> None:
    hub = _hub([], flush_delay=60.0)
    peer = await pairs.new()
    s = Stream(peer.transport, None, None)
    hub.add(s)
    hub.on_event({"event": "first"})  # goes on the next turn
    await asyncio.sleep(0)
    hub.on_event({"event": "second"})  # waits for the next flush, a minute away
    hub.end()
    assert s.ended.is_set() and len(hub) == 0
    assert await peer.read_lines(2) == [{"event": "first"}, {"event": "second"}]
