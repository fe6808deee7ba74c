"""Engine overhead: (a) a 10,000-step DAG of Dummy steps, (b) a chain of 200 /bin/true
Command steps against a shell loop (ratio), (c) a fan-out of 1,000 /bin/true steps at
several max_active_steps. Prints figures; record them in bench/README.md.

    python bench/run_overhead.py [--quick] [--only abc] [--log-root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flowtaskd.engine.events import EventBus
from flowtaskd.logs import configure_logging
from flowtaskd.tasks import TaskPile
from flowtaskd.tasks.task import Task


def dummy_dag(chains: int, length: int) -> dict[str, Any]:
    steps = []
    for c in range(chains):
        for i in range(length):
            name = f"c{c}_{i}"
            dep = [] if i == 0 else [f"c{c}_{i - 1}"]
            steps.append({"Dummy": {"name": name, "depends": dep}})
    return {"name": "dummy-dag", "max_active_steps": 64, "steps": steps}


def true_chain(n: int) -> dict[str, Any]:
    return {
        "name": "true-chain",
        "steps": [{"Command": {"command": ["/bin/true"]}} for _ in range(n)],
    }


def fan_out(n: int, width: int) -> dict[str, Any]:
    steps = [{"Command": {"command": ["/bin/true"], "depends": []}} for _ in range(n)]
    return {"name": f"fan-{width}", "max_active_steps": width, "steps": steps}


async def run_once(pile: TaskPile, log_dir: Path, with_bus: bool = True) -> float:
    bus = EventBus()
    async with bus:
        task = Task(task=pile, events=bus, log_dir=log_dir)
        async with task:
            t0 = time.perf_counter()
            stats = await task.run()
            took = time.perf_counter() - t0
    assert str(stats.status) == "done", stats.error
    return took


def shell_loop(n: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["/bin/sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"], check=True
    )
    return time.perf_counter() - t0


def popen_loop(n: int) -> float:
    """The floor for any Python runner: a bare Popen + wait of /bin/true, n times."""
    t0 = time.perf_counter()
    for _ in range(n):
        proc = subprocess.Popen(
            ["/bin/true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc.wait()
    return time.perf_counter() - t0


def best(fn: Any, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def part_a(logs: Path, chains: int, length: int) -> None:
    t0 = time.perf_counter()
    pile = TaskPile(dummy_dag(chains, length))
    build = time.perf_counter() - t0
    took = best(lambda: asyncio.run(run_once(pile, logs)), 3)
    n = chains * length
    print(
        f"(a) {n} Dummy steps ({chains} chains of {length}): build {build * 1e3:.0f} ms, "
        f"run {took:.3f} s = {took / n * 1e6:.1f} us/step (goal < 100 us)"
    )


def part_b(logs: Path, n: int = 200, rounds: int = 5) -> None:
    chain = TaskPile(true_chain(n))
    asyncio.run(run_once(chain, logs))  # warm up: imports, page cache
    engine, shell, popen = [], [], []
    for _ in range(rounds):  # interleaved, so a noisy moment hits all three alike
        engine.append(asyncio.run(run_once(chain, logs)))
        shell.append(shell_loop(n))
        popen.append(popen_loop(n))
    e, sh, p = min(engine), min(shell), min(popen)
    print(
        f"(b) {n} /bin/true in a chain: engine {e * 1e3:.0f} ms ({e / n * 1e6:.0f} us/step), "
        f"shell loop {sh * 1e3:.0f} ms ({sh / n * 1e6:.0f} us/step), "
        f"ratio {e / sh:.2f} (goal < 1.5); bare Popen+wait {p / n * 1e6:.0f} us/step "
        f"= {p / sh:.2f} x shell"
    )


def part_c(logs: Path, fan: int) -> None:
    for width in (2, 8, 32):
        pile = TaskPile(fan_out(fan, width))
        took = best(lambda pile=pile: asyncio.run(run_once(pile, logs)), 2)
        print(
            f"(c) fan-out of {fan} /bin/true, max_active_steps {width:>2}: "
            f"{fan / took:,.0f} steps/s"
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")
    ap.add_argument("--only", default="abc", help="which parts to run, e.g. 'b' (default abc)")
    ap.add_argument(
        "--log-root",
        type=Path,
        default=Path(__file__).parent,
        help="where step log files go (default: beside the repo, like ./var)",
    )
    args = ap.parse_args()
    configure_logging("json", "error", stream=sys.stderr)
    logging.getLogger().setLevel(logging.ERROR)
    chains, length = (20, 50) if args.quick else (100, 100)
    fan = 200 if args.quick else 1000
    # logs go beside the repo (the state dir's filesystem), not /tmp, which may be slower
    with tempfile.TemporaryDirectory(dir=args.log_root) as tmp:
        logs = Path(tmp)
        # each part starts from a collected heap: one part's garbage is not another's cost
        if "a" in args.only:
            part_a(logs, chains, length)
            gc.collect()
        if "b" in args.only:
            part_b(logs)
            gc.collect()
        if "c" in args.only:
            part_c(logs, fan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
