"""Accepting control connections without letting a flood or a descriptor shortage spin.

asyncio's own accept loop (``start_unix_server``) accepts up to ``backlog`` connections per
wake-up; when descriptors run out it logs a traceback and schedules a retry *for each
failed try* of the batch, so with a ``SOMAXCONN`` backlog a full descriptor table turns the
event loop into a loop of thousands of retries a second and nothing else runs (not even the
connections that would free descriptors by closing). This listener accepts a bounded batch
per wake-up and, when out of descriptors (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``),
stops listening *once*, reports the fault, and listens again after the fault's backoff.
The kernel keeps the waiting connections in the listen backlog meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable

__all__ = ["Listener", "open_streams"]

_BATCH = 64  # connections accepted per wake-up at most: others get a turn in between
_SCARCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Listener:
    """Calls ``on_connection(conn)`` with each connected socket accepted on ``sock``
    (non-blocking; the callee owns it: see :func:`open_streams`).

    ``on_fault(exc)`` gets each shortage and returns the delay before listening again;
    ``on_ok()`` is called when accepting works again after one.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_connection: Callable[[socket.socket], None],
        *,
        on_fault: Callable[[OSError], float],
        on_ok: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._on_connection = on_connection
        self._on_fault = on_fault
        self._on_ok = on_ok
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._faulted = False
        self._closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._sock.listen(socket.SOMAXCONN)  # a burst waits in the kernel, not refused
        self._listen()

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _listen(self) -> None:
        self._retry = None
        if not self._closed and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._ready)

    def _ready(self) -> None:
        assert self._loop is not None
        for _ in range(_BATCH):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _SCARCE:
                    raise
                self._faulted = True
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(self._on_fault(exc), self._listen)
                return
            if self._faulted:
                self._faulted = False
                self._on_ok()
            conn.setblocking(False)
            self._on_connection(conn)


async def open_streams(
    conn: socket.socket, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over an accepted socket; the socket is closed if that fails."""
    try:
        return await asyncio.open_unix_connection(sock=conn, limit=limit)
    except BaseException:
        with contextlib.suppress(OSError):
            conn.close()
        raise
