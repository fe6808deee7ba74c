"""flowtaskd.daemon.web.sse: SSE frames and chunks, the numbered backlog, replay, pings, end.

The one-flusher fan-out and the drop of a slow client are in test_web_units.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import orjson

from flowtaskd.daemon.control.streams import Stream
from flowtaskd.daemon.web.sse import EventLog, chunk, frame


@contextlib.asynccontextmanager
async def _pipe() -> AsyncIterator[tuple[asyncio.WriteTransport, asyncio.StreamReader]]:
    """A real connected transport (the server's side) and a reader (the client's)."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    try:
        yield transport, reader
    finally:
        transport.abort()
        writer.close()


async def _read_until(reader: asyncio.StreamReader, end: bytes) -> bytes:
    got = b""
    async with asyncio.timeout(10):
        while end not in got:
            got += await reader.read(65536)
    return got


def test_frame_format() -> None:
    assert frame(7, "run_started", {"task": "t"}) == (
        b'id: 7\nevent: run_started\ndata: {"task":"t"}\n\n'
    )
    assert frame(None, "reset", {}) == b"event: reset\ndata: {}\n\n"
    assert frame(1, "e", {1: object}).startswith(b'id: 1\nevent: e\ndata: {"1":')  # any value


def test_chunk_is_one_http_chunk() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


async def test_since_replays_what_the_client_missed() -> None:
    log = EventLog(backlog=3)
    for i in range(5):
        log({"event": "e", "task": "a" if i % 2 else "b", "i": i})
    async with _pipe() as (transport, _):
        only_a = Stream(transport, None, "a")
        replay = log.since(2, only_a)
        assert replay is not None
        assert [item[3]["i"] for item in replay] == [3]
        assert log.since(5, only_a) == []  # nothing missed
        assert log.since(1, only_a) is None  # event 2 left the backlog: reload


async def test_since_on_an_empty_log() -> None:
    log = EventLog()
    async with _pipe() as (transport, _):
        every = Stream(transport, None, None)
        assert log.since(0, every) == []
        assert log.since(-1, every) is None


def test_recent_gives_the_newest_payloads() -> None:
    log = EventLog(backlog=10)
    for i in range(4):
        log({"event": "e", "i": i})
    assert log.recent(2) == [{"event": "e", "i": 2}, {"event": "e", "i": 3}]
    assert log.last_id == 4


async def test_hello_then_pings_framed_as_the_client_asked() -> None:
    log = EventLog(flush_delay=0)
    log({"event": "before", "task": "t"})
    async with _pipe() as (plain, plain_reader), _pipe() as (chunked, chunked_reader):
        a = log.attach(plain, None, None, None, chunked=False)
        b = log.attach(chunked, None, None, None, chunked=True)
        assert log.clients == 2
        hello = await _read_until(plain_reader, b"\n\n")
        assert orjson.loads(hello.split(b"data: ")[1]) == {"last_id": 1}
        log.ping(a)
        assert (await _read_until(plain_reader, b": ping")).endswith(b": ping\n\n")
        log.ping(b)
        assert b"8\r\n: ping\n\n\r\n" in await _read_until(chunked_reader, b": ping")
        log.detach(a)
        assert log.clients == 1


async def test_end_writes_what_is_pending_and_ends_every_stream() -> None:
    log = EventLog(flush_delay=60)  # only the end flushes
    async with _pipe() as (transport, reader):
        stream = log.attach(transport, None, None, None, chunked=False)
        log({"event": "last", "task": "t"})
        assert not stream.ended.is_set()
        log.end()
        assert stream.ended.is_set()
        assert b"id: 1\nevent: last\n" in await _read_until(reader, b"event: last")
