"""``flowtaskd exec`` and ``flowtaskd next`` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import pid_alive, wait_for_sync, write

CLI = [sys.executable, "-m", "flowtaskd"]


def flowtaskd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_exec_json_stats_and_exit_zero(tmp_path: Path) -> None:
    task = write(
        tmp_path / "t.yaml",
        "name: t\nparams: {who: x}\nsteps:\n"
        "  - Command: {name: hi, command: [echo, 'hi {who}']}\n"
        "  - Dummy: {name: after}\n",
    )
    r = flowtaskd("exec", str(task), "-p", "who=bob", "--json", "--log-dir", str(tmp_path / "logs"))
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert {"task", "run_id", "status", "started_at", "finished_at", "duration", "steps"} <= set(
        stats
    )
    assert stats["status"] == "done"
    hi = stats["steps"]["hi"]
    assert {"status", "attempts", "exit_code", "duration", "output"} <= set(hi)
    assert hi["output"] == "hi bob" and hi["exit_code"] == 0 and hi["attempts"] == 1


def test_exec_failed_task_exits_one(tmp_path: Path) -> None:
    task = write(tmp_path / "f.yaml", "name: f\nsteps:\n  - Command: {command: ['false']}\n")
    r = flowtaskd("exec", str(task), "--log-dir", str(tmp_path))
    assert r.returncode == 1
    assert "failed" in r.stderr


def test_exec_invalid_file_exits_one_with_file_line_key(tmp_path: Path) -> None:
    task = write(tmp_path / "bad.yaml", "name: bad\nsteps:\n  - Command:\n      comand: [echo]\n")
    r = flowtaskd("exec", str(task))
    assert r.returncode == 1  # the README's table: an invalid task file is a failure
    assert r.stderr.startswith("flowtaskd: ")
    assert "bad.yaml:4: steps[0].Command.comand: unknown key" in r.stderr
    assert "did you mean `command`" in r.stderr
    assert "Traceback" not in r.stderr


def test_exec_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = write(
        tmp_path / "slow.yaml",
        f"name: slow\nsteps:\n  - RunShell: {{command: 'echo $$ > {pidfile}; exec sleep 60'}}\n",
    )
    proc = subprocess.Popen(
        [*CLI, "exec", str(task), "--json", "--log-dir", str(tmp_path / "l")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_sync(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20)
        child = int(pidfile.read_text())
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err  # Ctrl-C: cancelled, and the shell's code for SIGINT
    stats = json.loads(out)
    assert stats["status"] == "cancelled"
    assert stats["steps"]["RunShell_1"]["status"] == "cancelled"
    wait_for_sync(lambda: not pid_alive(child), timeout=5)


def test_next_prints_fire_times_with_crontab_weekdays() -> None:
    r = flowtaskd(
        "next",
        "0 9 * * 1",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-11-25T00:00:00+00:00",
        "-n",
        "2",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2026-11-30T09:00:00+01:00", "2026-12-07T09:00:00+01:00"]  # Mondays


def test_next_bad_cron_is_one_line_error() -> None:
    r = flowtaskd("next", "61 * * * *")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("flowtaskd: ") and "minute" in r.stderr
    assert "Traceback" not in r.stderr
