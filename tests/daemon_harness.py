"""A real ``flowtaskd run`` in a temporary folder, for end-to-end tests.

:class:`DaemonProcess` writes a config (state dir, task library, one inbox, JSON logs at
debug level), starts the daemon as a subprocess in its own process group, and collects every
stdout/stderr line in reader threads: JSON lines go to :attr:`DaemonProcess.logs`, anything
else to :attr:`DaemonProcess.raw`. Tests wait for log lines with :meth:`wait_log` (a
condition variable and a deadline, never a blind sleep) and stop the daemon with a signal
(:meth:`stop`) or ``SIGKILL`` (:meth:`kill9`). :meth:`close` kills whatever is left.

Paths are kept short (a ``/tmp/ftd-*`` root, see :func:`short_root`) because a Unix socket
path holds at most 107 bytes and the config validates the control socket's path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal as _signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import yaml

from flowtaskd.daemon.runs.records import RunRecord
from flowtaskd.daemon.runs.store import HistoryStore

__all__ = ["FLOWTASKD", "DaemonProcess", "LogLine", "short_root"]

FLOWTASKD = str(Path(sys.executable).with_name("flowtaskd"))
LogLine = dict[str, Any]
Predicate = Callable[[LogLine], bool]
_SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS")


@contextlib.contextmanager
def short_root() -> Iterator[Path]:
    """A fresh ``/tmp/ftd-XXXX`` folder (mode 0700), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="ftd-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def event(name: str, **fields: Any) -> Predicate:
    """A predicate: the line's ``event`` is ``name`` and each given field has that value."""

    def match(line: LogLine) -> bool:
        return line.get("event") == name and all(line.get(k) == v for k, v in fields.items())

    match.__name__ = f"event({name!r}, {fields!r})"
    return match


class DaemonProcess:
    """One daemon's folders, config and (while running) process; see the module docstring."""

    def __init__(self, root: Path, **config: Any) -> None:
        self.root = root
        self.state = root / "state"
        self.tasks = root / "tasks"
        self.inbox = root / "inbox"
        self.archive = self.state / "archive" / "inbox"
        self.config_path = root / "flowtaskd.yaml"
        for folder in (self.tasks, self.inbox):
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.config: dict[str, Any] = {
            "state_dir": str(self.state),
            "tasks": [str(self.tasks)],
            "inboxes": [{"path": str(self.inbox)}],
            "log": {"format": "json", "level": "debug"},
            "shutdown_grace": 10,
            "kill_grace": 1,
            "web": False,  # tests that want it set web: {listen: "127.0.0.1:0"}
        }
        self.write_config(**config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[LogLine] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._readers: list[threading.Thread] = []
        self._mark = 0

    # -- config and files -------------------------------------------------------------
    def write_config(self, **changes: Any) -> None:
        """Update the config with ``changes`` and write it (atomically)."""
        self.config.update(changes)
        tmp = self.config_path.with_name(".flowtaskd.yaml.tmp")
        tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
        os.replace(tmp, self.config_path)

    def drop(self, name: str, text: str, *, mode: int = 0o600, folder: Path | None = None) -> Path:
        """Drop a task file the documented way: a hidden temp name, then a rename."""
        folder = folder or self.inbox
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, mode)
        os.rename(tmp, folder / name)
        return folder / name

    def put_task(self, name: str, text: str) -> Path:
        """Write (or replace) a library file atomically."""
        return self.drop(name, text, folder=self.tasks)

    # -- process ----------------------------------------------------------------------
    def start(
        self,
        *,
        env: Mapping[str, str] | None = None,
        ready: bool = True,
        timeout: float = 20.0,
        nofile: int | tuple[int, int] | None = None,
    ) -> None:
        """Start the daemon; with ``ready`` wait for its ``daemon_ready`` line.

        ``nofile`` sets the daemon's limits on open descriptors (both, or (soft, hard))."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        environ = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
        environ.update(env or {})
        with self._cond:
            self._mark = len(self.logs)
        argv = [FLOWTASKD, "run", "--config", str(self.config_path)]
        if nofile is not None:
            soft, hard = nofile if isinstance(nofile, tuple) else (nofile, nofile)
            argv = ["prlimit", f"--nofile={soft}:{hard}", "--", *argv]
        self.proc = subprocess.Popen(
            argv,
            cwd=self.root,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()
        if ready:
            self.wait_log(event("daemon_ready"), timeout, since=self._mark)

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode(errors="replace").rstrip("\n")
            try:
                line = json.loads(text)
            except ValueError:
                line = None
            with self._cond:
                if isinstance(line, dict):
                    self.logs.append(line)
                else:
                    self.raw.append(text)
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = _signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not exit within {timeout}s\n{self.dump()}") from None
        for reader in self._readers:
            reader.join(5)
        return code

    def kill9(self) -> None:
        """``SIGKILL`` the daemon (its steps, in their own process groups, survive)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)

    def close(self) -> None:
        """Teardown: kill the daemon if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, _signal.SIGKILL)
            self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)

    # -- logs -------------------------------------------------------------------------
    def find(self, pred: Predicate, since: int = 0) -> list[LogLine]:
        with self._cond:
            return [line for line in self.logs[since:] if pred(line)]

    def wait_log(
        self, pred: Predicate, timeout: float = 10.0, *, since: int = 0, count: int = 1
    ) -> LogLine:
        """The ``count``-th line (from index ``since``) matching ``pred``; fail at the deadline
        or when the daemon exits first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self.logs[since:] if pred(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if left <= 0 or (exited and not any(r.is_alive() for r in self._readers)):
                    what = getattr(pred, "__name__", repr(pred))
                    why = "the daemon exited" if exited else f"{timeout}s passed"
                    raise AssertionError(
                        f"{len(found)}/{count} log line(s) {what} before {why}\n{self.dump()}"
                    )
                self._cond.wait(min(left, 0.5))

    def mark(self) -> int:
        """The current end of the log (pass as ``since`` to look only at later lines)."""
        with self._cond:
            return len(self.logs)

    def dump(self, last: int = 30) -> str:
        with self._cond:
            lines = [json.dumps(line) for line in self.logs[-last:]]
            return "\n".join(["--- log tail ---", *lines, "--- other output ---", *self.raw[-20:]])

    # -- results ----------------------------------------------------------------------
    def sidecar(self, name: str, folder: str = "done") -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.archive / folder / f"{name}.result.json").read_text()
        )
        return data

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``flowtaskd ARGS --config <this config>``."""
        return subprocess.run(
            [FLOWTASKD, *args, "--config", str(self.config_path)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``flowtaskd ARGS --config <this config>`` without waiting for it."""
        return subprocess.Popen(
            [FLOWTASKD, *args, "--config", str(self.config_path)],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def history(self, n: int = 1000) -> list[dict[str, Any]]:
        """``flowtaskd history -n N --json``, parsed."""
        done = self.cli("history", "-n", str(n), "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def runs(self, task: str | None = None) -> list[RunRecord]:
        """The history read in-process (cheap enough to poll)."""
        path = self.state / "history.db"
        if not path.exists():
            return []
        return HistoryStore.open_readonly(path).list_runs(task, limit=0)

    def wait_runs(
        self, cond: Callable[[list[RunRecord]], object], timeout: float = 10.0
    ) -> list[RunRecord]:
        """Poll the history until ``cond(runs)``; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs()
            if cond(runs):
                return runs
            if time.monotonic() > deadline:
                shown = [(r.task, r.status, r.trigger) for r in runs]
                raise AssertionError(f"history condition not met within {timeout}s: {shown}")
            with self._cond:
                self._cond.wait(0.02)  # woken early by new log lines
