"""Run every bench and print one table: figure, goal, baseline, ratio, load average.

Each bench runs as its own process (``--quick`` passes the smaller sizes each one
offers); the figures are read back from what it prints, so each script stays the
reference for how its figure is made. The load average (1 min) is sampled before and
after each bench: on a shared machine a figure is only as good as the load beside it.
A bench that fails or whose output cannot be read shows ``?``; ``--verbose`` prints
every bench's own output too.

    python bench/all.py [--quick] [--only library,drop,...] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    label: str
    pattern: str  # a regex over the bench's output; group "v" is the figure
    unit: str
    goal: str
    baseline: str | None = None  # a regex whose group "v" is the baseline, same unit


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    figures: tuple[Figure, ...]


_ROW10K = r"^\s*10000\s+\d+\s+"
BENCHES = (
    Bench(
        "library",
        "library_scale.py",
        (),
        ("--sizes", "100,1000,10000", "--seconds", "3"),
        (
            Figure("10k files: ready", _ROW10K + r"(?P<v>[\d.]+)", "s", "< 3 s"),
            Figure(
                "10k files: idle RSS",
                _ROW10K + r"(?:[\d.]+\s+){3}(?P<v>[\d.]+)",
                "MB",
                "< 150 MB",
                r"^\s*0\s+0\s+(?:[\d.]+\s+){3}(?P<v>[\d.]+)",
            ),
            Figure(
                "10k files: idle CPU", _ROW10K + r"(?:[\d.]+\s+){4}(?P<v>[\d.]+)", "%", "< 0.5 %"
            ),
            Figure(
                "10k files: CPU per file",
                _ROW10K + r"(?:[\d.]+\s+){5}\|\s+[-\d.]+\s+(?P<v>[-\d.]+)",
                "ms",
                "flat in N",
                r"^\s*1000\s+\d+\s+(?:[\d.]+\s+){5}\|\s+[-\d.]+\s+(?P<v>[-\d.]+)",
            ),
        ),
    ),
    Bench(
        "drop",
        "drop_latency.py",
        (),
        ("-n", "50", "--burst", "50"),
        (
            Figure(
                "drop -> start p50",
                r"rename -> start \(daemon\)\s+(?P<v>[\d.]+)",
                "ms",
                "< 2 ms",
                r"rename -> batch \(floor\)\s+(?P<v>[\d.]+)",
            ),
            Figure(
                "drop -> start p99",
                r"rename -> start \(daemon\)\s+[\d.]+\s+(?P<v>[\d.]+)",
                "ms",
                "< 5 ms",
                r"rename -> batch \(floor\)\s+[\d.]+\s+(?P<v>[\d.]+)",
            ),
        ),
    ),
    Bench(
        "startup",
        "startup.py",
        (),
        ("--rounds", "3"),
        (
            Figure(
                "flowtaskd --help",
                r"flowtaskd --help\s+(?P<v>[\d.]+)",
                "ms",
                "< 2x",
                r"python -c pass\s+(?P<v>[\d.]+)",
            ),
            Figure(
                "flowtaskd status",
                r"flowtaskd status\s+(?P<v>[\d.]+)",
                "ms",
                "< 2x",
                r"python -c pass\s+(?P<v>[\d.]+)",
            ),
            Figure(
                "exec 1 step: wall",
                r"exec \(1 step\)\s+(?P<v>[\d.]+)",
                "ms",
                "< 250 ms",
                r"python -c pass\s+(?P<v>[\d.]+)",
            ),
            Figure(
                "exec 1 step: peak RSS",
                r"exec \(1 step\)\s+[\d.]+\s+[\d.]+\s+(?P<v>[\d.]+)",
                "MB",
                "< 45 MB",
                r"python -c pass\s+[\d.]+\s+[\d.]+\s+(?P<v>[\d.]+)",
            ),
        ),
    ),
    Bench(
        "idle",
        "idle.py",
        (),
        ("--seconds", "10"),
        (
            Figure("1k tasks: idle RSS", r"RSS after the window\s+(?P<v>[\d.]+)", "MB", "< 80 MB"),
            Figure("1k tasks: idle CPU", r"CPU over \d+ s idle\s+(?P<v>[\d.]+)", "%", "< 1 %"),
        ),
    ),
    Bench(
        "overhead",
        "run_overhead.py",
        (),
        ("--quick",),
        (
            Figure("Dummy chain", r"\(a\).*= (?P<v>[\d.]+) us/step", "us/step", "<= 8 us"),
            Figure(
                "200 /bin/true chain",
                r"engine \d+ ms \((?P<v>\d+) us/step\)",
                "us/step",
                "<= 1.25x shell",
                r"shell loop \d+ ms \((?P<v>\d+) us/step\)",
            ),
            Figure(
                "  bare Popen floor",
                r"bare Popen\+wait (?P<v>\d+) us/step",
                "us/step",
                "-",
                r"shell loop \d+ ms \((?P<v>\d+) us/step\)",
            ),
        ),
    ),
    Bench(
        "parse",
        "parse.py",
        (),
        ("--files", "200", "--repeat", "2"),
        (
            Figure(
                "load_pile per file",
                r"load_pile \(load\+validate\+build\):\s+(?P<v>[\d.]+)",
                "ms",
                "< 2x bare",
                r"yaml.load\(CSafeLoader\) per file:\s+(?P<v>[\d.]+)",
            ),
        ),
    ),
    Bench(
        "events",
        "events.py",
        (),
        ("--quick", "--only", "1"),
        (Figure("stream, 10 subscribers", r"\b10 subscribers?\D+(?P<v>[\d,]+)", "/s", "-"),),
    ),
)


def _value(pattern: str | None, text: str) -> float | None:
    if pattern is None:
        return None
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group("v").replace(",", "")) if match else None


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="the smaller sizes of each bench")
    ap.add_argument(
        "--only", help="comma-separated bench names: " + ",".join(b.name for b in BENCHES)
    )
    ap.add_argument("--verbose", action="store_true", help="print each bench's own output")
    args = ap.parse_args(argv)
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    rows: list[tuple[str, ...]] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for bench in chosen:
        load0 = os.getloadavg()[0]
        extra = bench.quick if args.quick else bench.full
        proc = subprocess.run(
            [sys.executable, str(_HERE / bench.script), *extra],
            capture_output=True,
            text=True,
            check=False,
            cwd=_HERE,
        )
        load = f"{load0:.1f}-{os.getloadavg()[0]:.1f}"
        text = proc.stdout
        if args.verbose or proc.returncode:
            print(f"== {bench.script} (exit {proc.returncode})\n{text}{proc.stderr[-2000:]}")
        for fig in bench.figures:
            value, base = _value(fig.pattern, text), _value(fig.baseline, text)
            ratio = f"{value / base:.2f}x" if value is not None and base else "-"
            rows.append(
                (
                    bench.name,
                    fig.label,
                    f"{_fmt(value)} {fig.unit}",
                    fig.goal,
                    _fmt(base) if fig.baseline else "-",
                    ratio,
                    load,
                )
            )
        print(f"  {bench.name} done (load {load})", file=sys.stderr, flush=True)
    head = ("bench", "figure", "value", "goal", "baseline", "ratio", "load")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"bench/all.py{' --quick' if args.quick else ''}, {started}, {os.cpu_count()} CPUs")
    for row in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
