"""The worker half of the Dask executor: what runs inside a Dask worker for one attempt.

:func:`run_on_worker` is the function the daemon submits. It runs in one of the worker's
task threads, so it gives the step its own event loop and runs it with
:func:`~flowtaskd.execution.local.run_component`, exactly as the local executor would:
process groups, timeouts, rusage, bounded output and secret masking all happen here, on
the worker, before anything is returned.

Two flags on the scheduler (``distributed`` events, named after the attempt's unique key)
tie the attempt to the daemon:

- ``flowtaskd-started-<key>`` is set when the attempt starts. Dask re-runs a task whose
  worker died (``distributed.scheduler.allowed-failures``); a second start of the same key
  finds the flag set and refuses, so a step is never silently run twice.
- ``flowtaskd-cancel-<key>`` is set by the daemon when the attempt is cancelled (Dask's own
  cancel cannot stop a running function). A watcher polls it (every 0.1 s, backing off to
  0.5 s: that bounds how long a cancel takes to arrive); once set, the step's task is
  cancelled, which makes the process runner stop the whole process group.

Talking to the scheduler goes through the worker's own connection, on the worker's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from distributed import get_worker

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.runtime import mask_outcome
from flowtaskd.core.rules import StepStatus
from flowtaskd.execution.local import run_component

__all__ = ["CANCELLED_ERROR", "NOT_RERUN_ERROR", "cancel_flag", "run_on_worker", "started_flag"]

NOT_RERUN_ERROR = "worker died mid-step; not re-run"
CANCELLED_ERROR = "cancelled by the daemon"


def started_flag(key: str) -> str:
    return f"flowtaskd-started-{key}"


def cancel_flag(key: str) -> str:
    return f"flowtaskd-cancel-{key}"


def run_on_worker(ctx: StepContext, key: str, poll: float = 0.5) -> StepOutcome:
    """Run one attempt on this Dask worker; ``key`` names its flags; never raises.

    ``poll`` is the longest gap between two looks at the cancel flag.
    """
    worker = get_worker()
    flags = _Flags(worker, key)
    try:
        outcome = _run_in_new_loop(_run(ctx, flags, poll))
    except Exception as exc:  # anything else is this worker's failure, reported as the result
        outcome = StepOutcome(StepStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    return mask_outcome(replace(outcome, worker=str(worker.address)), ctx.secrets)


def _run_in_new_loop(main: Coroutine[Any, Any, StepOutcome]) -> StepOutcome:
    """``asyncio.run`` without waiting for the loop's thread pool at the end: a sync ``Python``
    step that timed out is abandoned (its thread runs on), as the local executor does."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # shuts the default executor down with wait=False


async def _run(ctx: StepContext, flags: _Flags, poll: float) -> StepOutcome:
    if await flags.is_set(flags.cancel):  # cancelled before it got here
        await flags.clear_all()
        return StepOutcome(StepStatus.CANCELLED, error=CANCELLED_ERROR)
    if await flags.is_set(flags.started):
        return StepOutcome(StepStatus.FAILED, error=NOT_RERUN_ERROR)
    await flags.set(flags.started)
    ctx = _with_local_log_dir(ctx)
    step = asyncio.create_task(run_component(ctx))
    watch = asyncio.create_task(flags.wait_cancel(poll))
    try:
        await asyncio.wait({step, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        step.cancel()  # a no-op once done; else the cancel flag is set: stop the group
        watch.cancel()
        await asyncio.gather(step, watch, return_exceptions=True)
    if not watch.cancelled() and watch.exception() is None:  # the daemon asked
        await flags.clear_all()
    if step.cancelled():
        return StepOutcome(StepStatus.CANCELLED, error=CANCELLED_ERROR)
    return step.result()


def _with_local_log_dir(ctx: StepContext) -> StepContext:
    """Keep ``ctx.log_dir`` if it is writable here, else mirror it under the temp dir."""
    if ctx.log_dir is not None:
        try:
            ctx.log_dir.mkdir(parents=True, exist_ok=True)
            if os.access(ctx.log_dir, os.W_OK):
                return ctx
        except OSError:
            pass
        parts = ctx.log_dir.parts[1:] if ctx.log_dir.is_absolute() else ctx.log_dir.parts
    else:
        parts = (ctx.task, ctx.run_id)
    return replace(ctx, log_dir=Path(tempfile.gettempdir(), "flowtaskd-worker-logs", *parts))


class _Flags:
    """The attempt's two scheduler flags, reached through the worker's connection."""

    def __init__(self, worker: Any, key: str) -> None:
        self._scheduler = worker.scheduler  # the worker's pooled RPC to its scheduler
        self._loop: asyncio.AbstractEventLoop = worker.loop.asyncio_loop
        self.started = started_flag(key)
        self.cancel = cancel_flag(key)

    async def _rpc(self, op: str, **kwargs: Any) -> Any:
        async def on_worker_loop() -> Any:
            return await getattr(self._scheduler, op)(**kwargs)

        done = asyncio.run_coroutine_threadsafe(on_worker_loop(), self._loop)
        return await asyncio.wrap_future(done)  # cancelling this cancels the RPC too

    async def is_set(self, name: str) -> bool:
        return bool(await self._rpc("event_is_set", name=name))

    async def set(self, name: str) -> None:
        await self._rpc("event_set", name=name)

    async def clear_all(self) -> None:
        for name in (self.cancel, self.started):
            with contextlib.suppress(OSError):
                await self._rpc("event_clear", name=name)

    async def wait_cancel(self, poll: float) -> None:
        """Return once the cancel flag is set: asked every 0.1 s at first, then every ``poll``.

        A lost scheduler just means asking again later.
        """
        delay = min(0.1, poll)
        while True:
            await asyncio.sleep(delay)
            with contextlib.suppress(OSError):
                if await self.is_set(self.cancel):
                    return
            delay = min(delay * 1.5, poll)
