"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowtaskd.daemon.systemd import Notifier, watchdog_loop

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound in tmp_path, and the NOTIFY_SOCKET value naming it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()


def _recv(sock: socket.socket, timeout: float = 2.0) -> str:
    """The next datagram, waiting for it up to ``timeout``."""
    readable, _, _ = select.select([sock], [], [], timeout)
    assert readable, "no datagram before the deadline"
    return sock.recv(4096).decode()


def _pending(sock: socket.socket) -> list[str]:
    """Every datagram already queued, without waiting."""
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def _until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.001)


def test_exact_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    with Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"}) as n:
        assert n.enabled
        assert n.ready() is True
        assert _recv(sock) == "READY=1"
        n.ready("watching 3 folders")
        assert _recv(sock) == "READY=1\nSTATUS=watching 3 folders"
        n.status("2 runs\nqueued")
        assert _recv(sock) == "STATUS=2 runs queued"
        n.stopping()
        assert _recv(sock) == "STOPPING=1"
        n.watchdog()
        assert _recv(sock) == "WATCHDOG=1"
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        n.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        first, second = _recv(sock).split("\n")
        assert first == "RELOADING=1"
        key, value = second.split("=")
        assert key == "MONOTONIC_USEC"
        assert before <= int(value) <= after
        assert _pending(sock) == []


def test_abstract_socket() -> None:
    name = f"flowtaskd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        with Notifier.from_env({"NOTIFY_SOCKET": "@" + name}) as n:
            n.ready()
        assert _recv(sock) == "READY=1"


def test_unset_socket_is_a_noop() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert n.ready("x") is False
    assert n.reloading() is False
    assert n.watchdog() is False


def test_relative_socket_path_is_ignored() -> None:
    assert not Notifier.from_env({"NOTIFY_SOCKET": "relative/notify"}).enabled


def test_send_failure_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowtaskd.daemon.systemd")
    with Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) as n:
        assert n.ready() is False
        assert n.status("again") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # warned once, then debug
    assert "sd_notify send failed" in warnings[0].getMessage()


@pytest.mark.timeout(10)  # a blocking send would hang here
def test_full_receiver_queue_does_not_block(listener: tuple[socket.socket, str]) -> None:
    _sock, address = listener
    with Notifier.from_env({"NOTIFY_SOCKET": address}) as n:
        results = [n.status("x" * 1024) for _ in range(10_000)]  # nobody reads: queue fills
    assert results[0] is True
    assert results[-1] is False  # dropped, not blocked


def test_watchdog_interval_and_pid() -> None:
    sock = "/run/nothing"
    mine = str(os.getpid())
    assert (
        Notifier.from_env({"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "30000000"}).watchdog_interval
        == 15.0
    )
    assert Notifier.from_env(
        {"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": mine}
    ).watchdog_interval == pytest.approx(0.05)
    for bad in ("0", "-5", "soon"):
        assert (
            Notifier.from_env({"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": bad}).watchdog_interval
            is None
        )
    assert Notifier.from_env({"NOTIFY_SOCKET": sock}).watchdog_interval is None


def test_watchdog_pid_mismatch_disables_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    other = str(os.getpid() + 1)
    n = Notifier.from_env(
        {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": other}
    )
    assert n.watchdog_interval is None
    assert n.watchdog() is False
    n.ready()  # the rest of the protocol still works
    assert _pending(sock) == ["READY=1"]
    n.close()


async def test_watchdog_loop_pings_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    assert n.watchdog_interval == pytest.approx(0.05)
    well = True
    ticks = 0
    slept: list[float] = []

    async def counting_sleep(seconds: float) -> None:
        nonlocal ticks
        slept.append(seconds)
        await asyncio.sleep(seconds)
        ticks += 1

    received: list[str] = []

    def got(count: int) -> Callable[[], bool]:
        def check() -> bool:
            received.extend(_pending(sock))
            return len(received) >= count

        return check

    task = asyncio.create_task(watchdog_loop(n, lambda: well, counting_sleep))
    try:
        started = time.monotonic()
        await _until(got(3))
        assert time.monotonic() - started >= 0.09  # three pings are two intervals apart
        assert set(received) == {"WATCHDOG=1"}
        assert slept == [pytest.approx(0.05)] * len(slept)

        # The loop is suspended in its sleep while this runs, so everything it sent while
        # healthy is already queued: drain it, then no round after the flip may ping.
        well = False
        _pending(sock)
        seen = ticks
        await _until(lambda: ticks >= seen + 3)  # three more rounds, all unhealthy
        assert _pending(sock) == []

        well = True  # recovers: pings resume
        received.clear()
        await _until(got(1))
        assert received == ["WATCHDOG=1"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        n.close()


async def test_watchdog_loop_returns_without_watchdog(listener: tuple[socket.socket, str]) -> None:
    _sock, address = listener
    calls: list[float] = []

    async def sleep(seconds: float) -> None:
        calls.append(seconds)

    await asyncio.wait_for(
        watchdog_loop(Notifier.from_env({"NOTIFY_SOCKET": address}), lambda: True, sleep), 1
    )
    await asyncio.wait_for(watchdog_loop(Notifier.from_env({}), lambda: True, sleep), 1)
    assert calls == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_passes_ci_check() -> None:
    """The unit verifies cleanly and its exposure score stays low (.ci/check-systemd)."""
    proc = subprocess.run(
        ["bash", str(REPO / ".ci" / "check-systemd")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "exposure" in proc.stdout
