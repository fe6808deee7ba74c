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

    @property
    def closed(self) -> bool:
        return self._epoll.closed

    def add(self, fd: int, callback: Callable[[], None], *, oneshot: bool = False) -> None:
        """Watch ``fd``; ``oneshot``: only until it first reads as ready."""
        self._epoll.register(fd, select.EPOLLIN | (select.EPOLLONESHOT if oneshot else 0))
        self._callbacks[fd] = callback

    def discard(self, fd: int, *, closing: bool = False) -> None:
        """Stop watching ``fd``. ``closing``: the caller closes it at once (or it was added
        ``oneshot`` and has fired), which removes it from the set without a system call."""
        if self._callbacks.pop(fd, None) is not None and not closing:
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


class _LoopReaders:
    """The same interface straight on the loop's selector, where there is no epoll."""

    closed = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, fd: int, callback: Callable[[], None], *, oneshot: bool = False) -> None:
        if oneshot:
            callback = self._once(fd, callback)
        self._loop.add_reader(fd, callback)

    def _once(self, fd: int, callback: Callable[[], None]) -> Callable[[], None]:
        def fire() -> None:
            self._loop.remove_reader(fd)
            callback()

        return fire

    def discard(self, fd: int, *, closing: bool = False) -> None:
        if not self._loop.is_closed():
            self._loop.remove_reader(fd)

    def close(self) -> None:
        return None


def ready_set(loop: asyncio.AbstractEventLoop) -> ReadySet:
    """The loop's set (made on first use)."""
    if not hasattr(select, "epoll"):
        return _LoopReaders(loop)  # type: ignore[return-value]  # same interface
    found = _sets.get(loop)
    if found is None:
        for old_loop, old in list(_sets.items()):  # loops closed since: release their sets
            if old_loop.is_closed():
                old.close()
                del _sets[old_loop]
        found = _sets[loop] = ReadySet(loop)
    return found
