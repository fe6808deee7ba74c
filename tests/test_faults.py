"""Faults and hostile input against a real daemon: nothing takes it down, strands a file or
leaks a secret (issue #11). Each test drives ``flowtaskd run`` through its socket, folders
and signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon_harness import DaemonProcess, event, short_root

pytestmark = pytest.mark.e2e


def task(name: str, *steps: dict[str, Any], **header: Any) -> str:
    return yaml.safe_dump({"name": name, **header, "steps": list(steps)}, sort_keys=False)


def dummy(name: str, **params: Any) -> dict[str, Any]:
    return {"Dummy": {"name": name, **params}}


def command(name: str, *argv: str, **options: Any) -> dict[str, Any]:
    return {"Command": {"name": name, "command": list(argv), **options}}


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with short_root() as root:
        proc = DaemonProcess(root)
        try:
            yield proc
        finally:
            proc.close()


def _sock_path(daemon: DaemonProcess) -> str:
    return str(daemon.state / "control.sock")


def connect(daemon: DaemonProcess, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(_sock_path(daemon))
    except BaseException:
        sock.close()
        raise
    return sock


def request(daemon: DaemonProcess, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    with connect(daemon, timeout) as sock:
        # refused (busy) and closed before we wrote: its line still waits to be read
        with contextlib.suppress(BrokenPipeError):
            sock.sendall(json.dumps(req).encode() + b"\n")
        with sock.makefile("rb") as f:
            reply: dict[str, Any] = json.loads(f.readline())
    return reply


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# -- 1. descriptors run out: the daemon stays up ------------------------------------------


def test_running_out_of_descriptors_does_not_end_the_daemon(daemon: DaemonProcess) -> None:
    # A limit of 96 descriptors, and a connection bound above it: the clients take every
    # descriptor, so the inbox rescan's scandir fails with EMFILE.
    daemon.write_config(control={"max_connections": 10_000, "idle_timeout": 600})
    daemon.start(nofile=96)
    held: list[socket.socket] = []
    try:
        since = daemon.mark()
        for _ in range(200):
            try:
                held.append(connect(daemon, timeout=0.5))
            except OSError:
                break
        # the daemon's next rescan (every 5 s) meets EMFILE: reported once, not fatal
        daemon.wait_log(event("daemon_fault", cause="inbox_rescan:EMFILE"), 15, since=since)
        assert daemon.running
    finally:
        for sock in held:
            sock.close()
    daemon.wait_log(event("daemon_fault_cleared", where="inbox_rescan"), 15, since=since)
    daemon.drop("after.yaml", task("after", dummy("one")))
    daemon.wait_log(event("inbox_archived", file="after.yaml", ok=True), 15)
    faults = request(daemon, {"cmd": "status"})["faults"]
    assert faults["counts"]["inbox_rescan:EMFILE"] >= 1 and faults["failing"] == []
    assert len(daemon.find(event("daemon_fault", cause="inbox_rescan:EMFILE"), since)) == 1


def test_fd_soft_limit_is_raised_to_the_hard_one(daemon: DaemonProcess) -> None:
    daemon.start(nofile=(256, 512))
    limits = Path(f"/proc/{daemon.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard


def test_connections_beyond_max_connections_are_refused_and_others_served(
    daemon: DaemonProcess,
) -> None:
    daemon.write_config(control={"max_connections": 4, "idle_timeout": 600})
    daemon.start()
    held = [connect(daemon) for _ in range(4)]
    try:
        for sock in held:  # all four are served (none was refused)
            sock.sendall(b'{"cmd": "tasks"}\n')
            assert json.loads(sock.makefile("rb").readline())["ok"] is True
        with connect(daemon) as extra:
            reply = json.loads(read_until_eof(extra))
        assert reply["ok"] is False and "too many connections" in reply["error"]
    finally:
        held.pop().close()
    deadline = time.monotonic() + 10
    while not (reply := request(daemon, {"cmd": "status"}))["ok"]:  # a slot frees soon
        assert reply.get("busy") and time.monotonic() < deadline, reply
        time.sleep(0.01)
    assert reply["control"]["refused_connections"] >= 1
    assert reply["control"]["max_connections"] == 4
    for sock in held:
        sock.close()


def test_an_idle_connection_is_closed_after_idle_timeout(daemon: DaemonProcess) -> None:
    daemon.write_config(control={"idle_timeout": "0.5s"})
    daemon.start()
    with connect(daemon) as idle:
        started = time.monotonic()
        assert read_until_eof(idle) == b""  # the daemon closed it
        assert time.monotonic() - started < 5
    with connect(daemon) as sub:  # a subscriber is not idle, however quiet
        sub.sendall(b'{"cmd": "subscribe", "events": ["task_loaded"]}\n')
        f = sub.makefile("rb")
        assert json.loads(f.readline())["ok"] is True
        since = daemon.mark()
        time.sleep(0.1)
        daemon.put_task("later.yaml", task("later", dummy("x")))
        daemon.wait_log(event("task_loaded", task="later"), 10, since=since)
        assert json.loads(f.readline())["task"] == "later"
    assert request(daemon, {"cmd": "status"})["control"]["idle_closed"] >= 1


def _has_socket(pid: int) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    return True
    return False


# -- 5. connect floods ----------------------------------------------------------------------


def test_a_connect_flood_does_not_lock_the_cli_out(daemon: DaemonProcess) -> None:
    daemon.start()
    pending: list[socket.socket] = []
    os.kill(daemon.pid, signal.SIGSTOP)  # nothing is accepted while it is stopped
    try:
        while len(pending) < 20_000:  # fill the listen backlog
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(_sock_path(daemon))
            except BlockingIOError:
                sock.close()
                break
            pending.append(sock)
        assert len(pending) > 200  # the backlog holds a burst (it was 100)
        cli = daemon.cli_popen("status")
        # the CLI meets the full backlog (EAGAIN) and retries instead of giving up at once
        deadline = time.monotonic() + 20
        while cli.poll() is None and not _has_socket(cli.pid):
            assert time.monotonic() < deadline, "the CLI never opened its socket"
            time.sleep(0.01)
        time.sleep(0.5)  # long enough to meet EAGAIN a few times
        assert cli.poll() is None, f"the CLI gave up on a daemon that is up: {cli.communicate()}"
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    for sock in pending:
        sock.close()
    _out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err


# -- 14. run data is private whatever the umask ----------------------------------------------


def test_run_data_gets_explicit_modes_whatever_the_umask(daemon: DaemonProcess) -> None:
    old = os.umask(0o022)  # a checkout's usual umask: the daemon inherits it
    try:
        daemon.start()
    finally:
        os.umask(old)
    daemon.drop("talk.yaml", task("talk", command("say", "echo", "a secret the step prints")))
    daemon.wait_log(event("inbox_archived", file="talk.yaml", ok=True), 15)

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    assert mode(daemon.state) == 0o750
    for name in ("history.db", "history.db-wal", "history.db-shm"):
        assert mode(daemon.state / name) & 0o007 == 0, name
    logs = [p for p in (daemon.state / "logs").rglob("*") if p.is_file()]
    assert logs and all(mode(p) & 0o007 == 0 for p in logs)
    assert mode(daemon.archive / "done" / "talk.yaml.result.json") == 0o640


# -- 12. entries that will never run are not silent ------------------------------------------


def test_every_inbox_entry_that_never_runs_gets_one_log_line(daemon: DaemonProcess) -> None:
    daemon.start()
    since = daemon.mark()
    real = daemon.root / "real.yaml"
    real.write_text(task("real", dummy("x")))
    (daemon.inbox / "link.yaml").symlink_to(real)
    os.mkfifo(daemon.inbox / "pipe.yaml")
    (daemon.inbox / "folder.yaml").mkdir()
    for name in ("link.yaml", "pipe.yaml", "folder.yaml"):
        line = daemon.wait_log(
            event("inbox_ignored", file=str(daemon.inbox / name)), 15, since=since
        )
        assert line["reason"]
    # two more rescans: still one line each
    mark = daemon.mark()
    daemon.wait_log(event("inbox_rescan"), 15, since=mark, count=2)
    for name in ("link.yaml", "pipe.yaml", "folder.yaml"):
        assert len(daemon.find(event("inbox_ignored", file=str(daemon.inbox / name)), since)) == 1
