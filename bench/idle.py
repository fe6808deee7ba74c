"""Idle cost: RSS and CPU of a daemon with 1,000 library tasks loaded and nothing to do.

Generates a task library of small tasks (2-3 ``Dummy``/``Command``/``RunShell`` steps, in
ten subfolders), ``--scheduled`` of them (default 50) with a daily ``schedule:``, starts a
real ``flowtaskd run`` on it (an empty inbox, JSON logs at info level), waits for
``daemon_ready`` and then, after ``--settle`` seconds, watches it for ``--seconds`` (default
30): RSS from ``/proc/<pid>/status`` (``VmRSS``, and the peak ``VmHWM``), CPU from
``/proc/<pid>/stat`` (``utime + stime`` delta, as % of one core), split by thread name from
``/proc/<pid>/task/*/stat`` so a busy thread shows who it is. Startup is the time from
spawning the process to its ``daemon_ready`` log line.

Goal (issue 4): under 80 MB and under 1% of a core.

    python bench/idle.py [--tasks 1000] [--scheduled 50] [--seconds 30] [--daemon CMD]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from drop_latency import DaemonProcess, bench_root, event_is, log_time

__all__ = ["cpu_ticks", "library", "rss_kb"]

_TICK = os.sysconf("SC_CLK_TCK")


def _default_daemon() -> list[str]:
    script = Path(sys.executable).with_name("flowtaskd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowtaskd"]


def _task(i: int, scheduled: bool) -> str:
    lines = [f"name: idle-{i:04d}", f"description: generated task {i}"]
    if scheduled:
        lines.append(f'schedule: "{i % 60} {i % 24} * * *"')
    lines += [
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
        lines += [
            "  - RunShell:",
            "      name: report",
            "      command: echo done",
            "      depends: [work]",
        ]
    return "\n".join(lines) + "\n"


def library(folder: Path, count: int, scheduled: int) -> None:
    """Write ``count`` task files (mode 0644) under ``folder``, ten per subfolder round."""
    for i in range(count):
        sub = folder / f"group-{i % 10}"
        sub.mkdir(mode=0o700, exist_ok=True)
        path = sub / f"idle-{i:04d}.yaml"
        path.write_text(_task(i, scheduled=i < scheduled))
        path.chmod(0o644)


def rss_kb(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (kB) and ``Threads`` of ``pid``."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            found[key] = int(value.split()[0])
    return found


def _ticks(stat_file: Path) -> tuple[str, int]:
    text = stat_file.read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def cpu_ticks(pid: int) -> tuple[int, dict[int, tuple[str, int]]]:
    """utime+stime of the whole process, and of each live thread (tid -> (name, ticks))."""
    threads: dict[int, tuple[str, int]] = {}
    for entry in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[int(entry.name)] = _ticks(entry / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return _ticks(Path(f"/proc/{pid}/stat"))[1], threads


def _by_thread(
    pid: int, before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]
) -> Counter[str]:
    """Ticks spent per live thread; the main (event loop) thread is called ``main``."""
    spent: Counter[str] = Counter()
    for tid, (name, ticks) in after.items():
        label = "main" if tid == pid else f"{name}/{tid}"
        spent[label] += ticks - before.get(tid, (name, 0))[1]
    return spent


def _wait(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--tasks", type=int, default=1000, help="library tasks (default 1000)")
    ap.add_argument("--scheduled", type=int, default=50, help="of which with a daily schedule")
    ap.add_argument("--seconds", type=float, default=30.0, help="idle window (default 30)")
    ap.add_argument("--settle", type=float, default=1.0, help="wait after ready (default 1)")
    ap.add_argument("--daemon", help="command that starts flowtaskd (default: the venv's)")
    args = ap.parse_args(argv)
    command = shlex.split(args.daemon) if args.daemon else _default_daemon()
    out: dict[str, Any] = {}
    with bench_root("ftd-idle-") as root:
        (root / "tasks").mkdir(mode=0o700)
        (root / "inbox").mkdir(mode=0o700)
        library(root / "tasks", args.tasks, args.scheduled)
        config = {
            "state_dir": str(root / "state"),
            "tasks": [str(root / "tasks")],
            "inboxes": [{"path": str(root / "inbox")}],
            "log": {"format": "json", "level": "info"},
        }
        daemon = DaemonProcess(config, root, command)
        try:
            ready = daemon.wait_for(event_is("daemon_ready"), 300)
            out["startup"] = log_time(ready) - daemon.started
            out["loaded"] = ready.get("tasks")
            out["start_cpu"] = cpu_ticks(daemon.pid)[0] / _TICK
            out["ready_mem"] = rss_kb(daemon.pid)
            _wait(args.settle)
            total0, threads0 = cpu_ticks(daemon.pid)
            t0 = time.monotonic()
            _wait(args.seconds)
            total1, threads1 = cpu_ticks(daemon.pid)
            window = time.monotonic() - t0
            out["mem"] = rss_kb(daemon.pid)
            out["cpu"] = (total1 - total0) / _TICK / window * 100
            out["threads"] = _by_thread(daemon.pid, threads0, threads1)
            out["window"] = window
            out["problems"] = [x for x in daemon.lines if x.get("level") in ("warning", "error")]
        finally:
            daemon.close()
    mem, ready_mem = out["mem"], out["ready_mem"]
    print(f"tasks loaded {out['loaded']} of {args.tasks} ({args.scheduled} scheduled)")
    print(f"{'startup to daemon_ready':<34} {out['startup']:>8.2f} s")
    print(f"{'CPU used by startup':<34} {out['start_cpu']:>8.2f} s")
    print(f"{'RSS at ready':<34} {ready_mem['VmRSS'] / 1024:>8.1f} MB")
    print(f"{'RSS after the window':<34} {mem['VmRSS'] / 1024:>8.1f} MB   (goal < 80)")
    print(f"{'RSS peak (VmHWM)':<34} {mem['VmHWM'] / 1024:>8.1f} MB")
    print(f"{'threads':<34} {mem['Threads']:>8d}")
    print(
        f"{'CPU over ' + format(out['window'], '.0f') + ' s idle':<34} {out['cpu']:>8.2f} %"
        "    (goal < 1% of a core)"
    )
    busy = [(n, t) for n, t in out["threads"].most_common(5) if t > 0]
    if busy:
        spent = ", ".join(f"{n}={t}" for n, t in busy)
        print(f"  by thread (ticks of 1/{_TICK} s): {spent}")
    if out["problems"]:
        print(f"warning/error log lines: {len(out['problems'])}, first: {out['problems'][0]}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # the daemon and the temporary folder are gone already
