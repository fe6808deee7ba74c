"""Process start: each CLI command against a bare ``python -c pass`` in the same venv.

Runs, interleaved over ``--rounds`` rounds (default 7; the median is shown), with the
venv's Python: ``python -c pass`` (the baseline), ``flowtaskd --help``, ``--version``,
``status`` / ``tasks`` against a socket nobody listens on (the whole client path up to the
connect), and ``exec`` of a one-step ``Dummy`` task. Wall time and peak RSS (``ru_maxrss``
of the child) per command, and the ratio to the baseline; then, from ``python -X
importtime``, the modules a control command imports that it should not need (networkx,
pydantic, the daemon) and the import time of ``flowtaskd.cli``.

Goals (issue 17): ``--help``, ``--version``, ``status``, ``tasks``, ``trigger`` < 2x the
baseline; ``exec`` of a one-step task < 250 ms and < 45 MB peak RSS.

    python bench/startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["measure"]

_AVOID = ("networkx", "pydantic", "flowtaskd.daemon.service", "flowtaskd.engine.runner")


def _run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of ``argv``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, _status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = 0  # reaped by wait4
    return wall, usage.ru_maxrss / 1024


def measure(rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall seconds and median peak RSS (MB) per command."""
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="ftd-start-") as tmp:
        task = Path(tmp, "one.yaml")
        task.write_text("name: one\nsteps:\n  - Dummy: {name: only}\n")
        sock = str(Path(tmp, "nobody.sock"))
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "flowtaskd --help": [py, "-m", "flowtaskd", "--help"],
            "flowtaskd --version": [py, "-m", "flowtaskd", "--version"],
            "flowtaskd status": [py, "-m", "flowtaskd", "status", "--socket", sock],
            "flowtaskd tasks": [py, "-m", "flowtaskd", "tasks", "--socket", sock],
            "flowtaskd trigger": [py, "-m", "flowtaskd", "trigger", "x", "--socket", sock],
            "flowtaskd exec (1 step)": [
                py,
                "-m",
                "flowtaskd",
                "exec",
                str(task),
                "--log-dir",
                str(Path(tmp, "logs")),
            ],
        }
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(rounds):
            for name, argv in commands.items():
                samples[name].append(_run(argv))
    return {
        name: (statistics.median(w for w, _ in s), statistics.median(m for _, m in s))
        for name, s in samples.items()
    }


def imports_of(argv: list[str]) -> tuple[float, list[str]]:
    """Cumulative import time (ms) of ``flowtaskd.cli`` and the avoidable modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=False
    )
    cli_ms, heavy = 0.0, set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.split("|")
        cumulative, name = parts[1].strip(), parts[2].strip()
        if name == "flowtaskd.cli":
            cli_ms = int(cumulative) / 1000
        if any(name == m or name.startswith(m + ".") for m in _AVOID):
            heavy.add(name.split(".")[0] if not name.startswith("flowtaskd") else name)
    return cli_ms, sorted(heavy)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    figures = measure(args.rounds)
    base_wall, base_mb = figures["python -c pass"]
    print(f"{'command':<26} {'wall ms':>8} {'x pass':>7} {'peak MB':>8}")
    for name, (wall, mb) in figures.items():
        print(f"{name:<26} {wall * 1000:>8.1f} {wall / base_wall:>7.2f} {mb:>8.1f}")
    cli_ms, heavy = imports_of(["-m", "flowtaskd", "status", "--socket", "/nonexistent.sock"])
    print(f"import flowtaskd.cli (status): {cli_ms:.0f} ms cumulative")
    print(f"avoidable modules a control command loads: {', '.join(heavy) or 'none'}")
    print(f"load average (1 min): {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print("goal: --help/--version/status/tasks/trigger < 2x python -c pass; exec < 250 ms, < 45 MB")
    print(f"baseline python -c pass: {base_wall * 1000:.1f} ms, {base_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
