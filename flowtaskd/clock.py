"""The clock every time-dependent decision reads (retries, timeouts, schedules).

Production code gets :class:`SystemClock`; tests inject a clock they move by hand, so
backoff and catch-up are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch (wall clock, for timestamps and schedules)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (for durations)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def now(self) -> datetime:
        """The wall clock as an aware UTC datetime."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)
