"""Drop latency: from a task file's atomic rename into an inbox to its run's ``start`` event.

Starts a real ``flowtaskd run`` on a temporary folder (state dir, an empty task library, one
inbox, JSON logs at info level) and drops tiny one-step (``Dummy``) task files into the
inbox the way writers are told to: write under a hidden ``.tmp`` name in the same folder,
then ``os.rename`` it into place. Each drop names a task of its own.

* **latency**: 100 drops one at a time, each after the previous one is archived and a
  random 10-30 ms pause (so drops do not phase-lock with the watcher's polling step); the
  file is written and renamed at once, as a writer would. The figure is the ``timestamp``
  of the daemon's ``start`` log line (its own clock, same machine) minus ``time.time()``
  taken just before the rename.
* **first drop**: one drop made the moment ``daemon_ready`` is logged, shown on its own:
  a file dropped before the inbox watch is set up waits for the next rescan.
* **floor**: in the same run, the watcher the daemon's inboxes use (inotify on the event
  loop on Linux, else ``watchfiles.awatch`` with the daemon's step and debounce) on a
  separate folder, timed from the rename to the batch reaching an asyncio consumer. What
  is left above it is the daemon's own decision time (mostly the 10 ms quiet window that
  proves a file complete).
* **burst**: 100 files renamed in at once; files/s until the last is archived in ``done/``
  (every file must run exactly once).

Goal (issue 4): latency p50 under 20 ms and p99 under 100 ms.

    python bench/drop_latency.py [-n 100] [--burst 100] [--daemon CMD]

``--daemon`` replaces the command that starts the daemon (``run --config FILE`` is
appended), to measure a patched daemon against the same harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import watchfiles

from flowtaskd.daemon.intake import inotify
from flowtaskd.daemon.intake.watcher import is_ignored, watch_paths

__all__ = [
    "DaemonProcess",
    "LogLine",
    "bench_root",
    "event_is",
    "log_time",
    "summary",
    "write_task",
]

LogLine = dict[str, Any]
_SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS")
_RUST_TIMEOUT_MS = 1_000  # what flowtaskd.daemon.intake.watcher passes; only bounds idle returns


def _default_daemon() -> list[str]:
    script = Path(sys.executable).with_name("flowtaskd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowtaskd"]


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def bench_root(prefix: str) -> Iterator[Path]:
    """A fresh ``/tmp/<prefix>XXXX`` folder (mode 0700; short, for the control socket).

    Removed on exit, also on Ctrl-C and SIGTERM (turned into ``KeyboardInterrupt``).
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def write_task(folder: Path, name: str, body: str) -> Path:
    """Write ``body`` to a hidden temporary file (mode 0644) in ``folder``; return its path."""
    tmp = folder / f".{name}.yaml.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, body.encode())
    finally:
        os.close(fd)
    return tmp


class DaemonProcess:
    """A ``flowtaskd run`` subprocess in its own process group, its JSON log lines collected."""

    def __init__(self, config: dict[str, Any], folder: Path, command: Sequence[str]) -> None:
        self.config_file = folder / "flowtaskd.yaml"
        self.config_file.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.lines: list[LogLine] = []
        self.raw: deque[str] = deque(maxlen=40)
        self._cond = threading.Condition()
        env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
        self.started = time.time()
        self.proc = subprocess.Popen(
            [*command, "run", "--config", str(self.config_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            text = raw.decode(errors="replace").rstrip("\n")
            try:
                line = json.loads(text)
            except ValueError:
                line = None
            with self._cond:
                if isinstance(line, dict):
                    self.lines.append(line)
                else:
                    self.raw.append(text)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """The index the next log line will have (to wait for lines after now)."""
        with self._cond:
            return len(self.lines)

    def wait_for(self, match: Callable[[LogLine], bool], timeout: float, start: int = 0) -> LogLine:
        """The first line from index ``start`` on that ``match``es; wait up to ``timeout``."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    if match(self.lines[i]):
                        return self.lines[i]
                    i += 1
                if not self._reader.is_alive():
                    raise RuntimeError(f"the daemon exited ({self.proc.poll()}):\n{self._tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching log line in {timeout}s:\n{self._tail()}")
                self._cond.wait(left)

    def _tail(self) -> str:
        last = [json.dumps(x) for x in self.lines[-10:]]
        return "\n".join([*self.raw, *last])

    def close(self) -> None:
        """SIGTERM the daemon's process group; SIGKILL it if it is still there after 10 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def log_time(line: LogLine) -> float:
    """A log line's ``timestamp`` (ISO 8601, UTC) as seconds since the epoch."""
    return datetime.fromisoformat(str(line["timestamp"])).timestamp()


def event_is(event: str, **fields: Any) -> Callable[[LogLine], bool]:
    def match(line: LogLine) -> bool:
        return line.get("event") == event and all(line.get(k) == v for k, v in fields.items())

    return match


def summary(values_ms: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 (nearest rank) and max of ``values_ms``."""
    ordered = sorted(values_ms)
    p50 = ordered[math.ceil(0.50 * len(ordered)) - 1]
    p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]
    return p50, p99, ordered[-1]


def _task_body(name: str) -> str:
    return f"name: {name}\nsteps:\n  - Dummy: {{}}\n"


def _pause() -> None:
    time.sleep(random.uniform(0.010, 0.030))  # jitter, not security


def drop_one(daemon: DaemonProcess, inbox: Path, name: str) -> float:
    """Drop one task file named ``name`` (write, then rename at once): rename -> start, ms.

    Returns once the file is archived, so the next drop finds the daemon idle.
    """
    tmp = write_task(inbox, name, _task_body(name))
    mark = daemon.mark()
    renamed = time.time()
    os.rename(tmp, inbox / f"{name}.yaml")
    start = daemon.wait_for(event_is("start", task=name, trigger="inbox"), 30, mark)
    daemon.wait_for(event_is("inbox_archived", file=f"{name}.yaml"), 30, mark)
    return (log_time(start) - renamed) * 1000


def measure_drops(daemon: DaemonProcess, inbox: Path, n: int) -> list[float]:
    """Latencies (ms) of ``n`` drops, one at a time, a random 10-30 ms apart."""
    latencies = []
    for i in range(n):
        _pause()
        latencies.append(drop_one(daemon, inbox, f"lat-{i:03d}"))
    return latencies


async def _floor(folder: Path, n: int) -> list[float]:
    defaults = inspect.signature(watch_paths).parameters
    step, debounce = defaults["step_ms"].default, defaults["debounce_ms"].default
    stop = asyncio.Event()
    got: asyncio.Queue[tuple[float, set[Path]]] = asyncio.Queue()

    async def consume() -> None:
        if inotify.available():  # what the daemon's inbox watcher uses on Linux
            batches: Any = inotify.watch_folders([folder], stop)
            async with contextlib.aclosing(batches):
                async for paths in batches:
                    await got.put((time.time(), set(paths)))
            return
        raw = watchfiles.awatch(
            folder,
            watch_filter=lambda _c, p: not is_ignored(Path(p), folder),
            step=step,
            debounce=debounce,
            stop_event=stop,
            rust_timeout=_RUST_TIMEOUT_MS,
            recursive=False,
        )
        async with contextlib.aclosing(raw):
            async for changes in raw:
                await got.put((time.time(), {Path(p) for _c, p in changes}))

    async def until(path: Path) -> float:
        while True:
            received, paths = await asyncio.wait_for(got.get(), 10)
            if path in paths:
                return received

    latencies: list[float] = []
    async with asyncio.TaskGroup() as tg:
        consumer = tg.create_task(consume())
        try:
            for i in range(100):  # the watch is set up in a thread: drop probes until one shows
                probe = folder / f"probe-{i}.yaml"
                probe.write_text("x")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(until(probe), 0.1)
                    break
            else:
                raise RuntimeError("the floor watcher never reported a file")
            for i in range(n):
                name = f"floor-{i:03d}"
                await asyncio.sleep(random.uniform(0.010, 0.030))
                tmp = write_task(folder, name, _task_body(name))
                target = folder / f"{name}.yaml"
                renamed = time.time()
                os.rename(tmp, target)
                latencies.append((await until(target) - renamed) * 1000)
        finally:
            stop.set()
            consumer.cancel()
    return latencies


def measure_floor(folder: Path, n: int) -> list[float]:
    """Rename -> watcher batch (ms), ``n`` times, with the daemon's inbox watcher."""
    return asyncio.run(_floor(folder, n))


def measure_burst(daemon: DaemonProcess, inbox: Path, state: Path, n: int) -> tuple[float, float]:
    """Drop ``n`` files at once: (seconds from the first rename to the last archive, files/s)."""
    names = [f"burst-{i:03d}" for i in range(n)]
    tmps = [write_task(inbox, name, _task_body(name)) for name in names]
    mark = daemon.mark()
    first = time.time()
    for tmp, name in zip(tmps, names, strict=True):
        os.rename(tmp, inbox / f"{name}.yaml")
    last = 0.0
    for name in names:
        line = daemon.wait_for(event_is("inbox_archived", file=f"{name}.yaml", ok=True), 60, mark)
        last = max(last, log_time(line))
    done = state / "archive" / "inbox" / "done"
    archived = {p.name for p in done.glob("burst-*.yaml")}
    starts = [x["task"] for x in daemon.lines[mark:] if x.get("event") == "start"]
    if len(archived) != n or sorted(starts) != names:
        raise RuntimeError(f"burst: {len(archived)} archived, {len(starts)} starts (want {n} each)")
    took = last - first
    return took, n / took


def _row(label: str, values: Sequence[float]) -> str:
    p50, p99, top = summary(values)
    return f"{label:<28} {p50:>8.1f} {p99:>8.1f} {top:>8.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("-n", type=int, default=100, help="drops one at a time (default 100)")
    ap.add_argument("--burst", type=int, default=100, help="files dropped at once (default 100)")
    ap.add_argument("--daemon", help="command that starts flowtaskd (default: the venv's)")
    args = ap.parse_args(argv)
    command = shlex.split(args.daemon) if args.daemon else _default_daemon()
    with bench_root("ftd-drop-") as root:
        for sub in ("tasks", "inbox", "floor"):
            (root / sub).mkdir(mode=0o700)
        state, inbox = root / "state", root / "inbox"
        config = {
            "state_dir": str(state),
            "tasks": [str(root / "tasks")],
            "inboxes": [{"path": str(inbox)}],
            "log": {"format": "json", "level": "info"},
        }
        daemon = DaemonProcess(config, root, command)
        try:
            daemon.wait_for(event_is("daemon_ready"), 60)
            first = drop_one(daemon, inbox, "first")
            latency = measure_drops(daemon, inbox, args.n)
            floor = measure_floor(root / "floor", args.n)
            took, rate = measure_burst(daemon, inbox, state, args.burst) if args.burst else (0, 0)
        finally:
            daemon.close()
    print(f"{'ms (n=' + str(args.n) + ')':<28} {'p50':>8} {'p99':>8} {'max':>8}")
    print(_row("rename -> start (daemon)", latency))
    print(_row("rename -> batch (floor)", floor))
    ratio = summary(latency)[0] / summary(floor)[0]
    print(f"{'first drop, at daemon_ready':<28} {first:>8.1f}")
    print(f"p50 ratio daemon/floor: {ratio:.1f}x   (goal: p50 < 20 ms, p99 < 100 ms)")
    if args.burst:
        print(f"burst: {args.burst} files archived in {took:.2f} s = {rate:.0f} files/s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # the daemon and the temporary folder are gone already
