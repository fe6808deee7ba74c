"""``flowtaskd.process.readyset``: descriptors watched through one epoll set per loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import pytest

from flowtaskd.process.readyset import ReadySet, _LoopReaders, ready_set
from tests.conftest import wait_for


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


async def test_one_set_per_loop() -> None:
    loop = asyncio.get_running_loop()
    assert ready_set(loop) is ready_set(loop)
    assert isinstance(ready_set(loop), ReadySet)


async def test_level_triggered_callback_until_discarded(pipe: tuple[int, int]) -> None:
    r, w = pipe
    rs = ready_set(asyncio.get_running_loop())
    calls: list[int] = []
    rs.add(r, lambda: calls.append(1))
    os.write(w, b"x")
    await wait_for(lambda: len(calls) >= 3, what="called again while data is unread")
    rs.discard(r)
    os.read(r, 1)
    seen = len(calls)
    os.write(w, b"y")
    # a second descriptor as the signal: once it fired, the first had its chance too
    r2, w2 = os.pipe()
    try:
        fired: list[int] = []
        rs.add(r2, lambda: fired.append(1), oneshot=True)
        os.write(w2, b"z")
        await wait_for(lambda: fired)
        await asyncio.sleep(0)
        assert len(calls) == seen
    finally:
        rs.discard(r2, closing=True)
        os.close(r2)
        os.close(w2)


async def test_oneshot_fires_once(pipe: tuple[int, int]) -> None:
    r, w = pipe
    rs = ready_set(asyncio.get_running_loop())
    calls: list[int] = []
    other: list[int] = []
    r2, w2 = os.pipe()
    try:
        rs.add(r, lambda: calls.append(1), oneshot=True)
        rs.add(r2, lambda: other.append(1))
        os.write(w, b"x")
        os.write(w2, b"x")
        await wait_for(lambda: len(other) >= 3, what="the level-triggered fd seen repeatedly")
        assert calls == [1]
        rs.discard(r, closing=True)
        rs.discard(r2)
    finally:
        os.close(r2)
        os.close(w2)


def test_sets_of_closed_loops_are_released() -> None:
    old = asyncio.new_event_loop()
    old_set = ready_set(old)
    old.close()
    new = asyncio.new_event_loop()
    try:
        ready_set(new)
        assert old_set.closed
    finally:
        ready_set(new).close()
        new.close()


def test_discard_of_an_unknown_fd_is_harmless() -> None:
    loop = asyncio.new_event_loop()
    try:
        rs = ReadySet(loop)
        rs.discard(12345)
        rs.close()
        assert rs.closed
    finally:
        loop.close()


async def test_loop_readers_fallback_has_the_same_interface(pipe: tuple[int, int]) -> None:
    r, w = pipe
    readers = _LoopReaders(asyncio.get_running_loop())
    calls: list[int] = []
    readers.add(r, lambda: calls.append(1), oneshot=True)
    os.write(w, b"x")
    await wait_for(lambda: calls)
    await asyncio.sleep(0)
    assert calls == [1]
    readers.discard(r)
    readers.close()
