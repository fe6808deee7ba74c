"""Local executor vs a 2-worker Dask LocalCluster: throughput and per-step overhead.

Runs 200 independent ``Command`` steps of ``sleep 0.05`` concurrently (at most 32 at once,
as the engine's ``max_active_steps`` semaphore would), on the local executor and on a Dask
``LocalCluster`` of 2 worker processes x 16 threads (32 slots), after one untimed warm-up
batch each. Then 20 steps one at a time, for the round-trip latency of a single step.

    .venv/bin/python bench/dask.py [--steps 200] [--concurrency 32] [--sleep 0.05]

Figures: steps/s; overhead = wall time - ideal (steps * sleep / concurrency); per-step
overhead = overhead * concurrency / steps (the extra time each step held a slot); serial
latency = mean time of one step - sleep.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named dask.py: drop its folder from sys.path so `import dask` finds Dask.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from flowtaskd.components.context import Executor, StepContext  # noqa: E402
from flowtaskd.execution.dask import DaskExecutor  # noqa: E402
from flowtaskd.execution.local import LocalExecutor  # noqa: E402


@dataclass
class Figures:
    name: str
    wall: float
    ideal: float
    steps: int
    concurrency: int
    serial_latency: float

    @property
    def rate(self) -> float:
        return self.steps / self.wall

    @property
    def overhead(self) -> float:
        return self.wall - self.ideal

    @property
    def per_step(self) -> float:
        return self.overhead * self.concurrency / self.steps


def _ctx(log_dir: Path, i: int, sleep: float) -> StepContext:
    return StepContext(
        task="bench",
        run_id="r1",
        step_id=f"s{i}",
        component="Command",
        params={"command": ["sleep", str(sleep)]},
        env={"PATH": "/usr/bin:/bin"},
        log_dir=log_dir,
    )


async def _batch(ex: Executor, log_dir: Path, n: int, limit: int, sleep: float) -> float:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with gate:
            out = await ex.run(_ctx(log_dir, i, sleep))
        if not out.ok:
            raise RuntimeError(f"step {i} failed: {out.error}")

    began = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(one(i))
    return time.perf_counter() - began


async def _serial(ex: Executor, log_dir: Path, n: int, sleep: float) -> float:
    began = time.perf_counter()
    for i in range(n):
        out = await ex.run(_ctx(log_dir, i, sleep))
        if not out.ok:
            raise RuntimeError(f"step {i} failed: {out.error}")
    return (time.perf_counter() - began) / n - sleep


async def _measure(name: str, ex: Executor, args: argparse.Namespace, root: Path) -> Figures:
    log_dir = root / name
    await _batch(ex, log_dir, args.concurrency, args.concurrency, args.sleep)  # warm-up
    wall = await _batch(ex, log_dir, args.steps, args.concurrency, args.sleep)
    latency = await _serial(ex, log_dir, 20, args.sleep)
    ideal = args.steps * args.sleep / args.concurrency
    return Figures(name, wall, ideal, args.steps, args.concurrency, latency)


async def _main(args: argparse.Namespace) -> None:
    threads = max(1, args.concurrency // 2)
    with tempfile.TemporaryDirectory(prefix="flowtaskd-bench-") as tmp:
        root = Path(tmp)
        local = await _measure("local", LocalExecutor(), args, root)
        began = time.perf_counter()
        dask_ex = DaskExecutor(local={"n_workers": 2, "threads_per_worker": threads})
        await dask_ex.start()
        startup = time.perf_counter() - began
        try:
            remote = await _measure("dask", dask_ex, args, root)
        finally:
            await dask_ex.aclose()
    print(
        f"{args.steps} x `sleep {args.sleep}`, concurrency {args.concurrency} "
        f"(dask: 2 workers x {threads} threads; cluster start {startup:.2f} s)"
    )
    print(
        f"{'executor':<9}{'wall s':>8}{'steps/s':>9}{'overhead s':>12}"
        f"{'per step ms':>13}{'serial latency ms':>19}"
    )
    for f in (local, remote):
        print(
            f"{f.name:<9}{f.wall:>8.2f}{f.rate:>9.0f}{f.overhead:>12.2f}"
            f"{f.per_step * 1000:>13.1f}{f.serial_latency * 1000:>19.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sleep", type=float, default=0.05)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":  # required: Dask starts worker processes by re-importing this file
    main()
