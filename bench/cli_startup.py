"""How long ``flowtaskd --help`` and ``--version`` take (the target: under 150 ms).

    .venv/bin/python bench/cli_startup.py [--repeat 20]

Runs the installed console script as a new process each time (what a shell does) and
prints the median and the best wall time of each, beside a bare ``python -c pass``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "flowtaskd"


def timed(argv: list[str], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "flowtaskd --help": [str(SCRIPT), "--help"],
        "flowtaskd --version": [str(SCRIPT), "--version"],
        "flowtaskd trigger --help": [str(SCRIPT), "trigger", "--help"],
    }
    print(f"{'command':<26} {'median ms':>10} {'best ms':>8}")
    for name, argv in cases.items():
        median, best = timed(argv, args.repeat)
        print(f"{name:<26} {median:>10.1f} {best:>8.1f}")


if __name__ == "__main__":
    main()
