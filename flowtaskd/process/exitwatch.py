"""Tell when a child process has exited, without reaping it.

Each child gets a ``pidfd`` (Linux 5.3+): it becomes readable when the child exits, and the
child stays an unreaped zombie meanwhile, so its pid and process group id cannot be reused
before we collect it with ``wait4``. The pidfd goes into the loop's
:class:`~flowtaskd.process.readyset.ReadySet` (one ``epoll_ctl``).

Without pidfds (an old kernel, another OS, a loop without ``add_reader``) the watch polls
``waitid(WNOWAIT)`` with a backoff.
"""

from __future__ import annotations

import asyncio
import os

from flowtaskd.process.readyset import ReadySet, ready_set

__all__ = ["ExitWatch"]


class ExitWatch:
    """Tells when a child has exited, without reaping it (a pidfd, or polling if none)."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop, *, use_pidfd: bool = True):
        self._pid = pid
        self._loop = loop
        self._exited = False
        self._waiters: list[asyncio.Future[None]] = []
        self._fd: int | None = None
        self._set: ReadySet | None = None
        if use_pidfd:
            try:
                self._fd = os.pidfd_open(pid)
            except (OSError, AttributeError):  # old kernel, or out of descriptors: poll
                return
            try:
                self._set = ready_set(loop)
                self._set.add(self._fd, self._on_exit, oneshot=True)
            except (NotImplementedError, OSError):  # a loop without add_reader: poll
                os.close(self._fd)
                self._fd, self._set = None, None

    def _on_exit(self) -> None:
        if self._set is not None and self._fd is not None:
            self._set.discard(self._fd, closing=True)  # oneshot: it is not watched any more
        self._exited = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self) -> None:
        """Return once the child has exited; cancelling this does not disturb the watch."""
        if self._fd is not None:
            if not self._exited:  # a future per waiter: cancelling it leaves the others be
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
            return
        delay = 0.001
        while not self._has_exited():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _has_exited(self) -> bool:
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self._pid, flags) is not None
        except ChildProcessError:  # reaped behind our back; the reaper reports it
            return True

    def close(self) -> None:
        if self._fd is not None:
            if self._set is not None:
                self._set.discard(self._fd, closing=True)
            os.close(self._fd)
            self._fd = None
