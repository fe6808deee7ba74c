"""End-to-end: a real ``flowtaskd run`` process, fed through its folders and signals."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import file_text, wait_for_sync
from tests.daemon_harness import FLOWTASKD, DaemonProcess, event, short_root

pytestmark = pytest.mark.e2e


def task(name: str, *steps: dict[str, Any], **header: Any) -> str:
    return yaml.safe_dump({"name": name, **header, "steps": list(steps)}, sort_keys=False)


def dummy(name: str, **params: Any) -> dict[str, Any]:
    return {"Dummy": {"name": name, **params}}


def command(name: str, *argv: str) -> dict[str, Any]:
    return {"Command": {"name": name, "command": list(argv)}}


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with short_root() as root:
        proc = DaemonProcess(root)
        try:
            yield proc
        finally:
            proc.close()


# -- inboxes ------------------------------------------------------------------------------


def test_dropped_file_runs_once_and_is_archived_with_its_result(daemon: DaemonProcess) -> None:
    daemon.start()
    daemon.drop("hello.yaml", task("hello", dummy("first"), dummy("second", message="hi")))
    line = daemon.wait_log(event("inbox_archived", file="hello.yaml"))
    assert line["ok"] is True
    assert not (daemon.inbox / "hello.yaml").exists()
    assert (daemon.archive / "done" / "hello.yaml").read_text().startswith("name: hello")
    result = daemon.sidecar("hello.yaml")
    assert result["status"] == "done" and result["task"] == "hello" and result["errors"] == []
    assert {sid: (s["status"], s["attempts"]) for sid, s in result["steps"].items()} == {
        "first": ("done", 1),
        "second": ("done", 1),
    }
    assert list((daemon.state / "spool").iterdir()) == []
    assert daemon.stop() == 0
    rows = daemon.history()  # read with the daemon stopped
    assert [(r["run_id"], r["task"], r["status"], r["trigger"]) for r in rows] == [
        (result["run_id"], "hello", "done", "inbox")
    ]
    shown = daemon.cli("show", result["run_id"][:10])
    assert shown.returncode == 0 and "first" in shown.stdout and "second" in shown.stdout


def test_invalid_dropped_file_goes_to_failed_with_its_errors(daemon: DaemonProcess) -> None:
    daemon.start()
    daemon.drop("broken.yaml", "name: broken\nsteps:\n  - Dummy: {name: one, bogus: 1}\n")
    invalid = daemon.wait_log(event("task_invalid", file="broken.yaml"))
    assert "broken.yaml:3" in invalid["problem"]
    line = daemon.wait_log(event("inbox_archived", file="broken.yaml"))
    assert line["ok"] is False
    result = daemon.sidecar("broken.yaml", "failed")
    assert result["status"] == "invalid"
    assert any(e.startswith("broken.yaml:3: ") and "bogus" in e for e in result["errors"])
    assert (daemon.archive / "failed" / "broken.yaml").exists()
    assert daemon.runs() == []  # nothing ran
    assert daemon.stop() == 0


def test_world_writable_dropped_file_is_rejected(daemon: DaemonProcess) -> None:
    daemon.start()
    daemon.drop("open.yaml", task("open", dummy("one")), mode=0o666)
    rejected = daemon.wait_log(event("task_rejected", file="open.yaml"))
    assert "world-writable" in rejected["reason"]
    daemon.wait_log(event("inbox_archived", file="open.yaml", ok=False))
    result = daemon.sidecar("open.yaml", "failed")
    assert result["status"] == "rejected" and "world-writable" in result["errors"][0]
    assert daemon.runs() == []
    assert daemon.stop() == 0


def test_half_written_file_never_runs_before_it_is_complete(daemon: DaemonProcess) -> None:
    marker = daemon.root / "complete"
    steps = [dummy(f"s{i:02d}", message="x" * 40) for i in range(40)]
    steps.append(command("last", "touch", str(marker)))
    text = task("slow", *steps)
    daemon.start()
    # Written in place under its final name, in pieces: the writer never pauses long, but
    # the file grows for a while, and is valid YAML at many points on the way.
    pieces = [text[i : i + 64] for i in range(0, len(text), 64)]
    assert len(pieces) > 40
    with (daemon.inbox / "slow.yaml").open("w") as out:
        for piece in pieces:
            out.write(piece)
            out.flush()
            time.sleep(0.001)  # pace the writer (below the daemon's stability window)
    daemon.wait_log(event("inbox_archived", file="slow.yaml"))
    result = daemon.sidecar("slow.yaml")
    assert result["status"] == "done" and len(result["steps"]) == 41
    assert marker.exists()
    assert daemon.find(event("task_invalid")) == []
    assert len(daemon.find(event("start", task="slow"))) == 1
    assert daemon.stop() == 0


def test_three_hundred_files_dropped_at_once_all_run_exactly_once(daemon: DaemonProcess) -> None:
    n = 300
    daemon.write_config(concurrency={"max_runs": 16})
    daemon.start()
    for i in range(n):
        daemon.drop(f"job{i:03d}.yaml", task(f"job{i:03d}", dummy("only")))
    daemon.wait_log(event("inbox_archived", ok=True), timeout=60, count=n)
    done = daemon.archive / "done"
    sidecars = sorted(done.glob("*.result.json"))
    assert len(sidecars) == n
    assert sorted(p.name for p in done.glob("*.yaml")) == [f"job{i:03d}.yaml" for i in range(n)]
    assert not (daemon.archive / "failed").exists()
    assert list(daemon.inbox.iterdir()) == [] and list((daemon.state / "spool").iterdir()) == []
    assert daemon.stop() == 0
    rows = daemon.history(1000)
    assert len(rows) == n and len({r["run_id"] for r in rows}) == n
    assert sorted(r["task"] for r in rows) == [f"job{i:03d}" for i in range(n)]
    assert {(r["status"], r["trigger"]) for r in rows} == {("done", "inbox")}
    assert len(daemon.find(event("start"))) == n


def test_kill9_during_a_run_then_restart_loses_nothing(daemon: DaemonProcess) -> None:
    once = daemon.root / "ran-once"
    pidfile = daemon.root / "step.pid"
    script = (
        f"if [ -e {once} ]; then exit 0; fi; touch {once}; "
        f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; exec sleep 30"
    )
    daemon.start()
    daemon.drop("crashy.yaml", task("crashy", command("work", "sh", "-c", script)))
    step_pid = int(wait_for_sync(lambda: file_text(pidfile)))
    try:
        first = daemon.wait_runs(lambda runs: [r for r in runs if r.status == "running"])
        daemon.kill9()
        spooled = list((daemon.state / "spool").iterdir())
        assert [p.name.endswith("--inbox--crashy.yaml") for p in spooled] == [True]
        mark = daemon.mark()
        daemon.start()
        daemon.wait_log(event("run_interrupted", run_id=first[0].run_id), since=mark)
        daemon.wait_log(event("inbox_recovered", file="crashy.yaml"), since=mark)
        daemon.wait_log(event("inbox_archived", file="crashy.yaml", ok=True), since=mark)
        result = daemon.sidecar("crashy.yaml")
        assert result["status"] == "done" and result["run_id"] != first[0].run_id
        assert daemon.stop() == 0
        rows = {r["run_id"]: r for r in daemon.history()}
        assert rows[first[0].run_id]["status"] == "interrupted"
        assert rows[result["run_id"]]["status"] == "done"
        assert {r["trigger"] for r in rows.values()} == {"inbox"} and len(rows) == 2
        assert list((daemon.state / "spool").iterdir()) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(step_pid, signal.SIGKILL)


# -- signals and process life --------------------------------------------------------------


def test_sigterm_drains_running_steps_then_exits_zero(daemon: DaemonProcess) -> None:
    daemon.start()
    daemon.drop("short.yaml", task("short", dummy("nap", sleep=1)))
    started = daemon.wait_log(event("start", task="short"))
    code = daemon.stop(signal.SIGTERM)
    assert code == 0
    stopping = daemon.logs.index(daemon.find(event("daemon_stopping"))[0])
    completed = daemon.logs.index(daemon.wait_log(event("done", task="short")))
    assert stopping < completed  # the run finished after the signal, during the drain
    [run] = daemon.runs()
    assert (run.run_id, run.status) == (started["run_id"], "done")
    assert daemon.sidecar("short.yaml")["status"] == "done"


def test_second_sigterm_forces_stop_and_kills_the_step_group(daemon: DaemonProcess) -> None:
    pidfile = daemon.root / "long.pid"
    script = f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; exec sleep 30"
    daemon.start()
    daemon.drop("long.yaml", task("long", command("wait", "sh", "-c", script)))
    pgid = int(wait_for_sync(lambda: file_text(pidfile)))
    try:
        assert group_alive(pgid)
        daemon.send(signal.SIGTERM)
        daemon.wait_log(event("daemon_stopping"))
        assert group_alive(pgid)  # the first signal drains: the step keeps running
        t0 = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout=10)
        assert code == 0 and time.monotonic() - t0 < 8
        assert daemon.find(event("daemon_forced_stop"))
        assert not group_alive(pgid)
        [run] = daemon.runs()
        assert run.status == "cancelled"
        # not finished, so not archived: the next start runs it again
        assert [p.name.endswith("--long.yaml") for p in (daemon.state / "spool").iterdir()] == [
            True
        ]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def test_sighup_reloads_config_schedules_and_library(daemon: DaemonProcess) -> None:
    out = daemon.root / "ticks"
    daemon.start()
    mark = daemon.mark()
    daemon.put_task("new.yaml", task("new", dummy("one")))
    daemon.write_config(
        schedules=[{"id": "tick", "command": ["sh", "-c", f"echo x >> {out}"], "every": 0.2}]
    )
    daemon.send(signal.SIGHUP)
    reloaded = daemon.wait_log(event("daemon_reloaded"), since=mark)
    assert reloaded["restart_needed"] == [] and reloaded["tasks"] == 1  # the new file too
    daemon.wait_log(event("task_loaded", task="new"), since=mark)
    daemon.wait_log(event("schedule_added", schedule="tick"), since=mark)
    wait_for_sync(lambda: file_text(out))
    runs = daemon.wait_runs(lambda rs: [r for r in rs if r.status == "done"])
    assert {(r.task, r.trigger, r.schedule_id) for r in runs} == {("tick", "schedule", "tick")}
    mark = daemon.mark()
    daemon.write_config(schedules=[], concurrency={"max_runs": 3})
    daemon.send(signal.SIGHUP)
    daemon.wait_log(event("schedule_removed", schedule="tick"), since=mark)
    daemon.wait_log(event("daemon_reloaded"), since=mark)
    assert daemon.stop() == 0


def test_library_hot_reload_keeps_the_last_good_version(daemon: DaemonProcess) -> None:
    def version(n: int) -> str:
        return task("lib", dummy(f"v{n}"))

    def next_run_steps(since: int) -> set[str]:
        start = daemon.wait_log(event("start", task="lib"), since=since)
        runs = daemon.wait_runs(
            lambda rs: [r for r in rs if r.run_id == start["run_id"] and r.stats is not None]
        )
        run = next(r for r in runs if r.run_id == start["run_id"])
        assert run.stats is not None
        return set(run.stats["steps"])

    daemon.put_task("lib.yaml", version(1))
    daemon.write_config(schedules=[{"id": "lib-tick", "task": "lib", "every": 0.2}])
    daemon.start()
    assert daemon.find(event("task_loaded", task="lib", reloaded=False))
    assert next_run_steps(daemon.mark()) == {"v1"}

    mark = daemon.mark()
    daemon.put_task("lib.yaml", version(2))
    daemon.wait_log(event("task_loaded", task="lib", reloaded=True), since=mark)
    assert next_run_steps(daemon.mark()) == {"v2"}

    mark = daemon.mark()
    daemon.put_task("lib.yaml", "name: lib\nsteps:\n  - Dummy: {name: v3, nope: 1}\n")
    bad = daemon.wait_log(event("task_invalid"), since=mark)
    assert bad["kept_last_good"] is True and "lib.yaml:3" in bad["problem"]
    assert next_run_steps(daemon.mark()) == {"v2"}  # the last good version still runs

    mark = daemon.mark()
    daemon.put_task("lib.yaml", version(4))
    daemon.wait_log(event("task_loaded", task="lib", reloaded=True), since=mark)
    assert next_run_steps(daemon.mark()) == {"v4"}

    mark = daemon.mark()
    daemon.put_task("other.yaml", task("other", dummy("one")))
    daemon.wait_log(event("task_loaded", task="other", reloaded=False), since=mark)
    (daemon.tasks / "other.yaml").unlink()
    daemon.wait_log(event("task_removed", task="other"), since=mark)

    mark = daemon.mark()
    (daemon.tasks / "lib.yaml").unlink()
    daemon.wait_log(event("task_removed", task="lib"), since=mark)
    daemon.wait_log(event("run_skipped", task="lib"), since=daemon.mark())
    assert daemon.stop() == 0


def test_notify_protocol_against_a_fake_socket(daemon: DaemonProcess) -> None:
    path = daemon.root / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    messages: list[str] = []

    def wait_message(prefix: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for text in messages:
                if text.startswith(prefix):
                    messages.remove(text)
                    return text
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {prefix!r} message within {timeout}s: {messages}")
            sock.settimeout(left)
            with contextlib.suppress(TimeoutError):
                messages.append(sock.recv(4096).decode())

    try:
        daemon.start(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
        ready = wait_message("READY=1")
        assert "\nSTATUS=" in ready and "tasks" in ready
        for _ in range(3):  # every 0.1 s (half of WATCHDOG_USEC)
            wait_message("WATCHDOG=1", timeout=2)
        daemon.send(signal.SIGHUP)
        assert "MONOTONIC_USEC=" in wait_message("RELOADING=1")
        wait_message("READY=1")
        daemon.send(signal.SIGTERM)
        wait_message("STOPPING=1")
        assert daemon.wait_exit() == 0
    finally:
        sock.close()


def test_second_daemon_on_the_same_state_dir_exits_with_a_clear_message(
    daemon: DaemonProcess,
) -> None:
    daemon.start()
    other = subprocess.run(
        [FLOWTASKD, "run", "--config", str(daemon.config_path)],
        cwd=daemon.root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert other.returncode != 0
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "another flowtaskd" in lines[0] and str(daemon.pid) in lines[0]
    assert daemon.running
    assert daemon.stop() == 0
