"""flowtaskd.daemon.web.sse: SSE frames, the numbered backlog, client filters and drops."""

from __future__ import annotations

import asyncio

import orjson

from flowtaskd.daemon.web.sse import EventLog, SseClient, frame


def test_frame_format() -> None:
    assert frame(7, "run_started", {"task": "t"}) == (
        b'id: 7\nevent: run_started\ndata: {"task":"t"}\n\n'
    )
    assert frame(None, "reset", {}) == b"event: reset\ndata: {}\n\n"


def test_client_filter() -> None:
    everything = SseClient(None, None)
    assert everything.wants("run_started", "a")
    some = SseClient(frozenset({"run_done"}), "a")
    assert some.wants("run_done", "a")
    assert not some.wants("run_done", "b")
    assert not some.wants("run_started", "a")


def test_client_put_is_bounded_and_take_joins() -> None:
    c = SseClient(None, None, most=2)
    assert c.put(b"1") and c.put(b"2")
    assert not c.put(b"3")
    c.wake.set()
    assert c.take() == b"12"
    assert not c.wake.is_set() and not c.pending


async def test_events_are_numbered_kept_and_fanned_out_in_one_flush() -> None:
    log = EventLog(backlog=10, flush_delay=0.01)
    mine = SseClient(None, "a")
    log.clients.add(mine)
    log({"event": "run_started", "task": "a"})
    log({"event": "run_started", "task": "b"})
    log({"event": "run_done", "task": "a"})
    assert log.last_id == 3
    assert not mine.wake.is_set()  # woken after the burst, not per event
    await asyncio.wait_for(mine.wake.wait(), 5)
    data = mine.take()
    assert data.count(b"id: ") == 2
    assert data.startswith(b"id: 1\nevent: run_started\n")
    assert b"id: 3\nevent: run_done\n" in data


async def test_a_client_not_reading_is_dropped_and_woken() -> None:
    log = EventLog(flush_delay=0.01)
    slow = SseClient(None, None, most=1)
    log.clients.add(slow)
    log({"event": "e", "task": "t"})
    log({"event": "e", "task": "t"})
    assert slow.dropped and slow.wake.is_set()
    assert log.dropped == 1
    log({"event": "e", "task": "t"})
    assert log.dropped == 1  # counted once
    assert len(slow.pending) == 1


def test_since_replays_what_the_client_missed() -> None:
    log = EventLog(backlog=3)
    for i in range(5):
        log({"event": "e", "task": "a" if i % 2 else "b", "i": i})
    only_a = SseClient(None, "a")
    replay = log.since(2, only_a)
    assert replay is not None
    frames = list(replay)
    assert [orjson.loads(f.split(b"data: ")[1])["i"] for f in frames] == [3]
    assert list(log.since(5, only_a) or [1]) == []  # nothing missed
    assert log.since(1, only_a) is None  # event 2 left the backlog: reload


def test_since_on_an_empty_log() -> None:
    log = EventLog()
    c = SseClient(None, None)
    assert list(log.since(0, c) or [1]) == []
    assert log.since(-1, c) is None


def test_recent_gives_the_newest_payloads() -> None:
    log = EventLog(backlog=10)
    for i in range(4):
        log({"event": "e", "i": i})
    assert log.recent(2) == [{"event": "e", "i": 2}, {"event": "e", "i": 3}]
