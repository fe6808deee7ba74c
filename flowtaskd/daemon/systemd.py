"""The sd_notify protocol, written directly: readiness, status, reload, stop and watchdog.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` to the service: a filesystem path or,
when it starts with ``@``, an abstract AF_UNIX name. The service tells systemd about its state
by sending one datagram per notification, each a newline-separated list of ``KEY=VALUE``
lines (``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``).

With ``WatchdogSec=`` set, systemd also passes ``WATCHDOG_USEC`` (and usually
``WATCHDOG_PID``); the service must send ``WATCHDOG=1`` more often than that or be killed.
The watchdog applies to this process only if ``WATCHDOG_PID`` is unset or is our pid: a child
that inherited the variables must not ping for its parent. We ping at half the period, and
only while the daemon is healthy (:func:`watchdog_loop` asks a callable), so a wedged event
loop gets the daemon restarted.

When ``NOTIFY_SOCKET`` is unset (run from a terminal, in tests) every call is a cheap no-op.
Sending never raises: the socket is non-blocking and a failed send is logged and dropped,
because systemd being unreachable must not take the daemon down.

After :meth:`Notifier.reloading` the daemon must send :meth:`Notifier.ready` again once the
reload is done; ``RELOADING=1`` carries ``MONOTONIC_USEC`` as ``Type=notify-reload``
(systemd >= 253) requires, and older systemd ignores the extra field.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

__all__ = ["SYSTEMD_ENV_VARS", "Notifier", "supervise_watchdog", "watchdog_loop"]

#: Variables systemd passes for this protocol. Child processes (steps) should not inherit
#: them: a step must not be able to report readiness or feed the watchdog for the daemon.
SYSTEMD_ENV_VARS: tuple[str, ...] = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

_log = logging.getLogger(__name__)


def _socket_address(value: str | None) -> str | None:
    """``NOTIFY_SOCKET`` -> an address for ``sendto``; None when unset or unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd >= 254 may also pass "vsock:..." (VMs); not a case a host daemon meets.
    _log.warning("notify socket %r is not an absolute path or abstract name; ignored", value)
    return None


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is set and meant for ``pid``."""
    usec_text = environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            owner = int(pid_text)
        except ValueError:
            _log.warning("WATCHDOG_PID=%r is not a pid; watchdog disabled", pid_text)
            return None
        if owner != pid:
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        usec = 0
    if usec <= 0:
        _log.warning("WATCHDOG_USEC=%r is not a positive integer; watchdog disabled", usec_text)
        return None
    return usec / 2_000_000


def _one_line(text: str) -> str:
    """A value must not break the ``KEY=VALUE`` framing."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends sd_notify messages to the socket systemd gave us (or does nothing)."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self._address = address
        self._watchdog_interval = watchdog_interval if address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        address = _socket_address(environ.get("NOTIFY_SOCKET"))
        return cls(address, _watchdog_interval(environ, os.getpid()))

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``); None without a watchdog."""
        return self._watchdog_interval

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        return self._send(lines)

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self._send([f"STATUS={_one_line(text)}"])

    def reloading(self) -> bool:
        """A reload has started; send :meth:`ready` when it is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(["RELOADING=1", f"MONOTONIC_USEC={usec}"])

    def stopping(self) -> bool:
        """Shutdown has started (intake stopped, draining)."""
        return self._send(["STOPPING=1"])

    def watchdog(self) -> bool:
        """Feed the watchdog; a no-op when no watchdog is set for this process."""
        if self._watchdog_interval is None:
            return False
        return self._send(["WATCHDOG=1"])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, lines: list[str]) -> bool:
        """One datagram; True if the kernel took it. Never raises."""
        if self._address is None:
            return False
        message = "\n".join(lines).encode()
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message, self._address)
        except OSError as exc:
            # Warn once; a systemd that stays unreachable would otherwise fill the log
            # with one line per watchdog ping.
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            _log.log(level, "sd_notify send failed (%s): %s", lines[0], exc)
            return False
        return True


async def watchdog_loop(
    notifier: Notifier,
    healthy: Callable[[], bool],
    clock_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Send ``WATCHDOG=1`` every ``notifier.watchdog_interval`` while ``healthy()`` is true.

    Returns at once when no watchdog is configured; otherwise runs until cancelled. While
    ``healthy()`` is false no pings go out, so systemd restarts a daemon that stays unwell
    for ``WatchdogSec``; pings resume when it recovers.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return
    while True:
        if healthy():
            notifier.watchdog()
        await clock_sleep(interval)


async def supervise_watchdog(notifier: Notifier, stop: asyncio.Event, max_lag: float = 5.0) -> None:
    """Ping the watchdog while the event loop keeps up (lag under ``max_lag`` seconds).

    A probe sleeps 0.5 s at a time and measures how late it wakes: a loop blocked or
    starved for longer than ``max_lag`` stops the pings, so systemd restarts the daemon.
    """
    loop = asyncio.get_running_loop()
    lag = 0.0

    async def measure() -> None:
        nonlocal lag
        while not stop.is_set():
            t0 = loop.time()
            await asyncio.sleep(0.5)
            lag = loop.time() - t0 - 0.5

    async with asyncio.TaskGroup() as tg:
        probe = tg.create_task(measure())
        ping = tg.create_task(watchdog_loop(notifier, lambda: lag < max_lag))
        await stop.wait()
        probe.cancel()
        ping.cancel()
