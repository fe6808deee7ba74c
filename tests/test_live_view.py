"""The live terminal view, as a person sees it: the CLI in a real tmux pseudo-terminal.

Each test runs ``flowtaskd`` in a private tmux server (``-L``) and reads the screen with
``capture-pane``: what is asserted is the text on the terminal after rich drew it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon_harness import FLOWTASKD, DaemonProcess, short_root

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Terminal:
    """One tmux server and window, 120x40, running a shell command."""

    def __init__(self) -> None:
        self.name = f"ftd-{uuid.uuid4().hex[:8]}"

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, command: str, env: dict[str, str] | None = None) -> None:
        extra = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        line = (
            f"env -u COLUMNS -u LINES TERM=xterm-256color {extra} {command}; echo RC=$?; sleep 600"
        )
        # bash goes on after a child that exits 130 on Ctrl-C (dash would stop there)
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", "bash", "-c", line)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J")

    def wait(self, pred: Callable[[str], object], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if pred(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched within {timeout}s:\n{text}")
            time.sleep(0.05)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def close(self) -> None:
        """Kill this server; the next ``run`` starts a new one under a new name (a new
        session under the old name could meet the old server still exiting)."""
        subprocess.run(
            ["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=10, check=False
        )
        self.name = f"ftd-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def term() -> Iterator[Terminal]:
    t = Terminal()
    try:
        yield t
    finally:
        t.close()


def _task(path: Path, name: str, *steps: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "steps": list(steps)}, sort_keys=False))
    return path


def _sh(name: str, script: str, **opts: object) -> dict[str, object]:
    return {"Command": {"name": name, "command": ["sh", "-c", script], **opts}}


def _elapsed(screen: str, step: str) -> float | None:
    m = re.search(rf"^\s+{step}\s+running\s+([\d.]+)s", screen, re.MULTILINE)
    return float(m.group(1)) if m else None


def test_exec_view_ticks_counts_down_retries_and_keeps_log_lines_above(
    term: Terminal, tmp_path: Path
) -> None:
    task = _task(
        tmp_path / "t.yaml",
        "live",
        _sh("wait", "sleep 1.5"),
        _sh("flaky", "echo oops >&2; exit 3", retry={"attempts": 2, "delay": "3s"}),
    )
    term.run(f"{FLOWTASKD} exec {task} --log-dir {tmp_path / 'logs'}")
    first = term.wait(lambda s: _elapsed(s, "wait") is not None)
    t0 = _elapsed(first, "wait")
    assert t0 is not None
    # no event comes while the step sleeps: the time still moves on the screen
    later = term.wait(lambda s: (_elapsed(s, "wait") or 0) >= t0 + 0.4)
    assert "0 done · 1 running · 1 waiting · 0 failed  of 2" in later
    countdown = term.wait(lambda s: "retrying in" in s)
    assert re.search(r"flaky\s+retrying\s+[\d.]+s\s+try 1/2\s+retrying in [123]s", countdown)
    end = term.wait(lambda s: "RC=" in s)
    assert "RC=1" in end
    lines = end.splitlines()
    retry_log = next(i for i, x in enumerate(lines) if "step_retry" in x)
    view_top = next(i for i, x in enumerate(lines) if re.match(r"^\s+wait\s+done", x))
    assert retry_log < view_top  # the warning went above the view, not through it
    assert re.search(r"flaky\s+failed\s+[\d.]+s\s+try 2/2\s+exit code 3: oops", end)
    assert re.search(r"^\s+oops$", end, re.MULTILINE)  # the tail of the failing step's stderr
    assert "1 done · 0 running · 0 waiting · 1 failed  of 2" in end


def test_exec_prints_the_last_steps_output(term: Terminal, tmp_path: Path) -> None:
    task = _task(
        tmp_path / "hello.yaml",
        "hello",
        {"Command": {"name": "greet", "command": ["echo", "hello, world"]}},
    )
    term.run(f"{FLOWTASKD} exec {task} --log-dir {tmp_path / 'logs'}")
    end = term.wait(lambda s: "RC=" in s)
    assert "RC=0" in end
    assert re.search(r"^hello, world$", end, re.MULTILINE)
    assert "1 done · 0 running · 0 waiting · 0 failed  of 1" in end


def test_exec_show_output_streams_lines_prefixed_by_step(term: Terminal, tmp_path: Path) -> None:
    task = _task(tmp_path / "o.yaml", "o", _sh("talk", "echo line-one; sleep 1; echo line-two"))
    term.run(f"{FLOWTASKD} exec {task} -v --log-dir {tmp_path / 'logs'}")
    seen = term.wait(lambda s: "talk | line-one" in s)
    assert "talk | line-two" not in seen  # streamed while the step still runs
    end = term.wait(lambda s: "RC=0" in s)
    assert end.index("talk | line-one") < end.index("talk | line-two")


def test_ctrl_c_cancels_and_exits_130(term: Terminal, tmp_path: Path) -> None:
    task = _task(tmp_path / "slow.yaml", "slow", _sh("nap", "sleep 60"))
    term.run(f"{FLOWTASKD} exec {task} --log-dir {tmp_path / 'logs'}")
    term.wait(lambda s: _elapsed(s, "nap") is not None)
    term.keys("C-c")
    end = term.wait(lambda s: "RC=" in s)
    assert "RC=130" in end
    assert re.search(r"nap\s+cancelled", end)
    assert "0 done · 0 running · 0 waiting · 0 failed · 1 not run  of 1" in end


def test_without_a_real_terminal_there_is_no_view(term: Terminal, tmp_path: Path) -> None:
    task = _task(tmp_path / "p.yaml", "p", _sh("one", "echo out"))
    term.run(f"{FLOWTASKD} exec {task} --log-dir {tmp_path / 'logs'}", env={"TERM": "dumb"})
    end = term.wait(lambda s: "RC=" in s)
    assert "RC=0" in end and " waiting · " not in end
    assert re.search(r"^task p run \w+: done", end, re.MULTILINE)


def test_trigger_wait_follows_a_daemon_run_in_the_view(term: Terminal) -> None:
    with short_root() as root:
        daemon = DaemonProcess(root)
        try:
            daemon.put_task(
                "two.yaml",
                yaml.safe_dump(
                    {
                        "name": "two",
                        "steps": [_sh("first", "sleep 0.6; echo a"), _sh("second", "echo b")],
                    }
                ),
            )
            daemon.start()
            term.run(f"{FLOWTASKD} trigger two --wait --config {daemon.config_path}")
            running = term.wait(lambda s: _elapsed(s, "first") is not None)
            assert "1 running" in running
            end = term.wait(lambda s: "RC=" in s)
            assert "RC=0" in end and re.search(r"run \w+ done in", end)
            assert re.search(r"^\s+first\s+done", end, re.MULTILINE)
            assert re.search(r"^\s+second\s+done", end, re.MULTILINE)
            assert "2 done · 0 running · 0 waiting · 0 failed  of 2" in end
        finally:
            daemon.close()


def test_retry_and_backfill_show_their_progress(term: Terminal) -> None:
    with short_root() as root:
        daemon = DaemonProcess(root)
        fixed = root / "fixed"
        try:
            daemon.put_task(
                "job.yaml",
                yaml.safe_dump(
                    {
                        "name": "job",
                        "schedule": "0 * * * *",
                        "steps": [
                            _sh("prep", "echo ready"),
                            _sh("work", f"sleep 0.4; test -e {fixed}"),
                        ],
                    }
                ),
            )
            daemon.start()
            failed = daemon.cli("trigger", "job", "--wait")
            assert failed.returncode == 1
            fixed.write_text("")
            term.run(f"{FLOWTASKD} retry {failed.stdout.split()[0]} --config {daemon.config_path}")
            end = term.wait(lambda s: "RC=" in s)
            assert "RC=0" in end
            assert re.search(r"^\s+prep\s+kept", end, re.MULTILINE)  # not run again
            assert re.search(r"^\s+work\s+done", end, re.MULTILINE)
            term.close()

            term.run(
                f"{FLOWTASKD} backfill job --from 2026-01-01T00:00 --to 2026-01-01T02:00"
                f" --config {daemon.config_path}"
            )
            going = term.wait(lambda s: re.search(r"2026-01-01T0\d:00:00\+00:00 +\w+ +running", s))
            assert "backfill bf-" in going
            end = term.wait(lambda s: "RC=" in s)
            assert "RC=0" in end and re.search(r"backfill bf-\w+ done: 3 done", end)
            assert len(re.findall(r"^\s+2026-01-01T0[012]:00:00\+00:00 +\w+ +done", end, re.M)) == 3
        finally:
            daemon.close()
