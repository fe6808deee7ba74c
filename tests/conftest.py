"""Shared test helpers: write task files, wait for conditions with a deadline, a fake clock."""

from __future__ import annotations

import asyncio
import gc
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


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {cond}")
        await asyncio.sleep(interval)


def wait_for_sync(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {cond}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class FakeClock:
    """A clock tests move by hand: ``sleep`` records the wait and returns at once."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


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
