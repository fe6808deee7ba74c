"""``flowtaskd.process.exitwatch.ExitWatch``: knowing a child exited without reaping it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from flowtaskd.process.exitwatch import ExitWatch
from tests.conftest import pid_alive, wait_for


def child(code: str, *, stdin: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL
    )


@pytest.mark.parametrize("use_pidfd", [True, False])
async def test_wait_returns_after_exit_and_leaves_a_zombie(use_pidfd: bool) -> None:
    proc = child("import sys; sys.stdin.read()", stdin=True)
    watch = ExitWatch(proc.pid, asyncio.get_running_loop(), use_pidfd=use_pidfd)
    try:
        waiting = asyncio.create_task(watch.wait())
        await asyncio.sleep(0)
        assert not waiting.done()  # the child waits for its stdin
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(waiting, 10)
        assert not pid_alive(proc.pid)  # exited ...
        assert os.path.exists(f"/proc/{proc.pid}")  # ... but not reaped: a zombie
        _, status = os.waitpid(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        proc.returncode = 0
    finally:
        watch.close()


async def test_cancelling_one_waiter_leaves_the_others() -> None:
    proc = child("import time; time.sleep(60)")
    watch = ExitWatch(proc.pid, asyncio.get_running_loop())
    try:
        first = asyncio.create_task(watch.wait())
        second = asyncio.create_task(watch.wait())
        await asyncio.sleep(0)
        first.cancel()
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(second, 10)
        assert first.cancelled()
        await watch.wait()  # once exited, at once
    finally:
        watch.close()
        proc.wait()


async def test_a_reaped_child_counts_as_exited_when_polling() -> None:
    proc = child("pass")
    proc.wait()  # reaped behind the watch's back
    watch = ExitWatch(proc.pid, asyncio.get_running_loop(), use_pidfd=False)
    await asyncio.wait_for(watch.wait(), 10)
    watch.close()


async def test_close_twice_is_harmless() -> None:
    proc = child("pass")
    watch = ExitWatch(proc.pid, asyncio.get_running_loop())
    await wait_for(lambda: not pid_alive(proc.pid))
    watch.close()
    watch.close()
    proc.wait()
