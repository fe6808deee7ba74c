"""The one home of the test helpers: write files, wait for a condition with a deadline
(:func:`wait_for`, and :func:`wait_for_sync` outside an event loop), and the fake clock
(:class:`FakeClock`). Test modules import them from here rather than defining their own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.logs import reset_logging


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def wait_for(
    cond: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str | None = None,
) -> Any:
    """Poll ``cond`` (a function, or one returning an awaitable) until it gives something
    truthy, and return that; fail after ``timeout`` seconds, saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or cond} not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_for_sync(
    cond: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str | None = None,
) -> Any:
    """:func:`wait_for` for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or cond} not met within {timeout}s")
        time.sleep(interval)


def file_text(path: Path) -> str | None:
    """The content of ``path`` if it exists and is not empty (a :func:`wait_for` condition)."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_text() or None
    return None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class FakeClock:
    """A clock tests move by hand.

    By default ``sleep`` records the wait, moves the clock by it and returns at once. With
    ``manual=True`` a ``sleep`` waits until the test moves the clock past its end with
    :meth:`advance` (``sleepers`` counts the waiting ones). Calling the clock gives the time,
    for parts that take a plain ``time()`` function.
    """

    def __init__(self, start: float = 1_800_000_000.0, *, manual: bool = False) -> None:
        self.t = start
        self.manual = manual
        self.sleeps: list[float] = []
        self.sleepers = 0
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.t

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.manual:
            self.t += seconds
            await asyncio.sleep(0)
            return
        end = self.t + seconds
        self.sleepers += 1
        try:
            while self.t < end:
                self._moved.clear()
                await self._moved.wait()
        finally:
            self.sleepers -= 1

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self._moved.set()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


_QUIETED = ("apscheduler", "httpx", "httpcore", "watchfiles", "distributed")


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    """An in-process daemon configures logging and quiets chatty libraries for the whole
    process; undo that after each test so tests do not depend on their order."""
    levels = {name: logging.getLogger(name).level for name in _QUIETED}
    yield
    reset_logging()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def open_fds() -> set[str]:
    """This process's open descriptors (after a collection, so dropped objects are gone)."""
    gc.collect()
    return set(os.listdir("/proc/self/fd"))
