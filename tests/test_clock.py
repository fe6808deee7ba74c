"""``flowtaskd.clock.SystemClock``: the production clock reads the real clocks."""

from __future__ import annotations

import time
from datetime import UTC

from flowtaskd.clock import Clock, SystemClock
from tests.conftest import FakeClock


def test_wall_clock_and_now_agree() -> None:
    clock = SystemClock()
    before = time.time()
    t, now = clock.time(), clock.now()
    after = time.time()
    assert before <= t <= after
    assert now.tzinfo is UTC
    assert before - 1 <= now.timestamp() <= after + 1


def test_monotonic_never_goes_back() -> None:
    clock = SystemClock()
    a = clock.monotonic()
    b = clock.monotonic()
    assert b >= a
    assert abs(a - time.monotonic()) < 5


async def test_sleep_really_waits() -> None:
    clock = SystemClock()
    start = time.monotonic()
    await clock.sleep(0.05)
    assert time.monotonic() - start >= 0.045


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [SystemClock(), FakeClock()]
    assert all(c.now().tzinfo is not None for c in clocks)
