"""Library scale: ready time, CPU and RSS of a daemon as its task library grows.

For each size (default 100, 1,000, 10,000 and 30,000 files; ``--quick`` skips 30,000)
writes a fresh library of small tasks (the ones ``bench/idle.py`` writes, *every one* with
a cron schedule, 100 files per subfolder), starts a real ``flowtaskd run`` on it and
reports, from ``/proc``:

* **ready**: spawn to the ``daemon_ready`` log line (wall seconds), and the CPU the
  process used until then;
* **RSS** at ready and after an idle window of ``--seconds`` (default 5), and the CPU over
  that window as % of one core;
* **per file**: (figure at N - figure of an empty library) / N, for wall, CPU and RSS. An
  empty-library daemon is measured first in the same run as the baseline, so the machine's
  load weighs on both. A linear cost shows as a flat per-file column; a quadratic one
  grows with N.

Goal (issue 17): 10,000 scheduled files ready in < 3 s, idle RSS < 150 MB, idle CPU
< 0.5 % of a core, per-file cost flat.

    python bench/library_scale.py [--quick] [--sizes 100,1000] [--seconds 5] [--daemon CMD]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from drop_latency import DaemonProcess, bench_root, event_is, log_time
from idle import cpu_ticks, rss_kb

__all__ = ["Sample", "measure", "write_library"]

_TICK = os.sysconf("SC_CLK_TCK")
_PER_FOLDER = 100


def _default_daemon() -> list[str]:
    script = Path(sys.executable).with_name("flowtaskd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowtaskd"]


def _task(i: int) -> str:
    lines = [
        f"name: scale-{i:05d}",
        f"description: generated task {i}",
        f'schedule: "{i % 60} {i % 24} * * *"',
        "params:",
        f"  n: {i}",
        "steps:",
        "  - Dummy:",
        "      name: prepare",
        "  - Command:",
        "      name: work",
        "      command: [/bin/echo, '{{ params.n }}']",
        "      depends: [prepare]",
    ]
    if i % 2:
        lines += ["  - RunShell:", "      name: report", "      command: echo done"]
        lines += ["      depends: [work]"]
    return "\n".join(lines) + "\n"


def write_library(folder: Path, count: int) -> None:
    """``count`` scheduled task files (mode 0644), :data:`_PER_FOLDER` per subfolder."""
    for i in range(count):
        sub = folder / f"group-{i // _PER_FOLDER:03d}"
        if i % _PER_FOLDER == 0:
            sub.mkdir(mode=0o700)
        path = sub / f"scale-{i:05d}.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, _task(i).encode())
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class Sample:
    files: int
    loaded: int
    ready_s: float
    ready_cpu_s: float
    ready_rss_mb: float
    idle_rss_mb: float
    peak_rss_mb: float
    idle_cpu_pct: float


def _wait(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def measure(count: int, command: list[str], seconds: float, timeout: float) -> Sample:
    """One daemon on a fresh library of ``count`` files: see the module docstring."""
    with bench_root("ftd-scale-") as root:
        (root / "tasks").mkdir(mode=0o700)
        (root / "inbox").mkdir(mode=0o700)
        write_library(root / "tasks", count)
        config = {
            "state_dir": str(root / "state"),
            "tasks": [str(root / "tasks")],
            "inboxes": [{"path": str(root / "inbox")}],
            "log": {"format": "json", "level": "info"},
        }
        daemon = DaemonProcess(config, root, command)
        try:
            ready = daemon.wait_for(event_is("daemon_ready"), timeout)
            ready_s = log_time(ready) - daemon.started
            ready_cpu = cpu_ticks(daemon.pid)[0] / _TICK
            ready_mem = rss_kb(daemon.pid)
            _wait(1.0)  # let the ready-time work (catch-up writes, first wake-ups) finish
            total0 = cpu_ticks(daemon.pid)[0]
            t0 = time.monotonic()
            _wait(seconds)
            total1 = cpu_ticks(daemon.pid)[0]
            window = time.monotonic() - t0
            mem = rss_kb(daemon.pid)
        finally:
            daemon.close()
    return Sample(
        files=count,
        loaded=int(ready.get("tasks") or 0),
        ready_s=ready_s,
        ready_cpu_s=ready_cpu,
        ready_rss_mb=ready_mem["VmRSS"] / 1024,
        idle_rss_mb=mem["VmRSS"] / 1024,
        peak_rss_mb=mem["VmHWM"] / 1024,
        idle_cpu_pct=(total1 - total0) / _TICK / window * 100,
    )


def table(base: Sample, samples: list[Sample]) -> list[str]:
    head = (
        f"{'files':>7} {'loaded':>7} {'ready s':>8} {'CPU s':>7} {'RSS MB':>7} "
        f"{'idle MB':>8} {'idle CPU%':>9} | {'ms/file':>8} {'CPU ms/file':>11} {'kB/file':>8}"
    )
    rows = [head, "-" * len(head)]
    for s in [base, *samples]:
        per = ""
        if s.files:
            wall = (s.ready_s - base.ready_s) / s.files * 1000
            cpu = (s.ready_cpu_s - base.ready_cpu_s) / s.files * 1000
            kb = (s.idle_rss_mb - base.idle_rss_mb) * 1024 / s.files
            per = f"{wall:>8.3f} {cpu:>11.3f} {kb:>8.2f}"
        rows.append(
            f"{s.files:>7} {s.loaded:>7} {s.ready_s:>8.2f} {s.ready_cpu_s:>7.2f} "
            f"{s.ready_rss_mb:>7.1f} {s.idle_rss_mb:>8.1f} {s.idle_cpu_pct:>9.2f} | {per}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="skip the 30,000-file library")
    ap.add_argument("--sizes", help="comma-separated library sizes (overrides the default)")
    ap.add_argument("--seconds", type=float, default=5.0, help="idle window (default 5)")
    ap.add_argument("--timeout", type=float, default=600.0, help="most wait for ready (s)")
    ap.add_argument("--daemon", help="command that starts flowtaskd (default: the venv's)")
    args = ap.parse_args(argv)
    command = shlex.split(args.daemon) if args.daemon else _default_daemon()
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    else:
        sizes = [100, 1000, 10000] if args.quick else [100, 1000, 10000, 30000]
    load0 = os.getloadavg()[0]
    base = measure(0, command, args.seconds, args.timeout)
    samples = []
    for n in sizes:
        samples.append(measure(n, command, args.seconds, args.timeout))
        print(f"  {n} files: ready in {samples[-1].ready_s:.2f} s", file=sys.stderr, flush=True)
    print("\n".join(table(base, samples)))
    print(f"load average (1 min): {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print("goal: 10,000 files ready < 3 s, idle RSS < 150 MB, idle CPU < 0.5 %, per file flat")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
