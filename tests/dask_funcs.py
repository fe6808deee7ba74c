"""Functions that ``Python`` steps call in the Dask executor tests (imported on workers)."""

from __future__ import annotations

import asyncio
import os
import time


def add(a: int, b: int) -> int:
    return a + b


def whoami() -> dict[str, int]:
    return {"pid": os.getpid()}


def fail(message: str) -> None:
    raise ValueError(message)


async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


def block(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"
