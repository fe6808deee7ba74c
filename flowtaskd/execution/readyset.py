"""Many descriptors watched for the event loop through one ``epoll`` set of ours.

A step's process brings three descriptors to watch: its pidfd and two output pipes.
Registering each with the loop's selector costs ~8 us of Python bookkeeping per add and
remove, on a short step's critical path; registering them in an ``epoll`` set of our own
is one ``epoll_ctl`` (~1.5 us), and only that set is registered with the loop, once. When
the set is readable the loop calls :meth:`ReadySet._ready`, which asks the set which
descriptors are ready (level-triggered: a callback that leaves data unread is called
again on the next turn of the loop).

One set per event loop, created on first use; the sets of loops closed since are released
when a new one is made (and with the loop object otherwise).
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import Callable

__all__ = ["ReadySet", "ready_set"]


class ReadySet:
    """Call ``callback`` whenever ``fd`` is readable, until :meth:`discard`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll = select.epoll()  # close-on-exec
        self._callbacks: dict[int, Callable[[], None]] = {}
        # the loop holds this set through the reader; this set must not hold the loop
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def discard(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def _ready(self) -> None:
        for fd, _ in self._epoll.poll(0):
            callback = self._callbacks.get(fd)
            if callback is not None:
                callback()

    def close(self) -> None:
        self._callbacks.clear()
        self._epoll.close()


_sets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadySet] = weakref.WeakKeyDictionary()


def ready_set(loop: asyncio.AbstractEventLoop) -> ReadySet:
    """The loop's set (made on first use)."""
    found = _sets.get(loop)
    if found is None:
        for old_loop, old in list(_sets.items()):  # loops closed since: release their sets
            if old_loop.is_closed():
                old.close()
                del _sets[old_loop]
        found = _sets[loop] = ReadySet(loop)
    return found
