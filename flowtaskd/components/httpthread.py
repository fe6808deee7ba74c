"""A blocking HTTP exchange in a thread of its own, stoppable from the event loop.

``HTTPClient`` / ``RESTClient`` run httpx's sync client here: streaming a body through
httpx's async client costs the event loop's scheduling per chunk (and a ``to_thread`` per
write), about 2.4x the CPU of ``curl`` per download; the sync client in one thread, writing
as it reads, costs about what ``curl`` does (bench/components.py). Each exchange has its own
thread, not the loop's default executor, whose few workers other steps need.

Stopping (the step is cancelled or times out) sets a flag and shuts down the sockets the
exchange opened (:class:`Transfer` is the connection pool's network backend), which wakes
a blocked connect-reply, header or body read at once. When the exchange has begun writing a
``.part`` file, the loop waits for the thread to remove it before the step ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import httpcore

__all__ = ["Stopped", "Transfer", "run_in_thread"]

T = TypeVar("T")


class Stopped(Exception):
    """The exchange was stopped from the event loop."""


class Transfer(httpcore.SyncBackend):
    """One exchange's stop flag, and the network backend that knows its sockets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._sockets: list[socket.socket] = []
        self.writing = False  # a .part file is open: stopping waits for the thread

    @property
    def stopped(self) -> bool:
        return self._stopped

    def check(self) -> None:
        if self._stopped:
            raise Stopped

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def open_part(self, path: Path) -> IO[bytes]:
        """``path`` opened for writing, unless the exchange is already stopped."""
        with self._lock:
            self.check()
            fh = open(path, "wb")  # noqa: SIM115 - the caller closes it
            self.writing = True
            return fh

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.check()
        stream = super().connect_tcp(host, port, timeout, local_address, socket_options)
        sock = stream.get_extra_info("socket")
        with self._lock:
            if isinstance(sock, socket.socket):
                self._sockets.append(sock)
            stopped = self._stopped
        if stopped:
            stream.close()
            raise Stopped
        return stream

    def attach(self, transport: Any) -> None:
        """Make this the network backend of an ``httpx.HTTPTransport``'s pool (httpx does
        not take one in its constructor; without it, stopping waits for httpx's timeout)."""
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.ConnectionPool) and hasattr(pool, "_network_backend"):
            pool._network_backend = self


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


async def run_in_thread(transfer: Transfer, work: Callable[[], T]) -> T:
    """``work()`` in a new thread; cancelling the caller stops ``transfer`` and, when it
    writes a file, waits for the thread to clean up before the cancellation goes on."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, exc: BaseException | None) -> None:
        if done.cancelled():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def body() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = work()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=body, name="flowtaskd-http", daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        transfer.stop()
        if transfer.writing:
            with contextlib.suppress(BaseException):
                await asyncio.shield(done)
        done.add_done_callback(_consume)
        raise


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: no "exception was never retrieved" warning
