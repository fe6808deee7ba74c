"""What the on-call operations cost: keeping each run's definition, show, logs, retry plans.

    .venv/bin/python bench/oncall.py [--runs 2000] [--steps 20]

(a) recording the start of ``--runs`` runs of a ``--steps``-step task, with and without the
    kept definition (the extra row ``retry`` needs), all queued at once as the daemon does;
(b) ``describe_run`` (``show``) and ``plan_retry`` of a finished 1,000-step run;
(c) ``read_logs`` of one step that printed 64 MiB, read whole in 1 MiB chunks (``-f``).
Figures are the least wall time of 3 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flowtaskd.daemon import ops
from flowtaskd.daemon.runs import recorder
from flowtaskd.daemon.runs.records import RunRecord
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.tasks.pile import TaskPile


def _task(steps: int) -> dict[str, Any]:
    return {
        "name": "bench",
        "params": {"day": "2026-01-01"},
        "steps": [
            {"Command": {"name": f"s{i}", "command": ["echo", "{day}", f"step {i}"]}}
            for i in range(steps)
        ],
    }


async def _best(make: Callable[[], Awaitable[float]], rounds: int = 3) -> float:
    return min([await make() for _ in range(rounds)])


async def _starts(runs: int, steps: int, keep: bool) -> float:
    pile = TaskPile(_task(steps))
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "history.db")
        await store.open()

        async def skip(*args: Any) -> None:
            return None

        if not keep:
            store.put_definition = skip  # type: ignore[method-assign]
        try:
            reqs = [RunRequest(pile=pile, trigger="manual") for _ in range(runs)]
            t0 = time.perf_counter()
            await asyncio.gather(*(recorder.record_start(store, r, "running") for r in reqs))
            took = time.perf_counter() - t0
        finally:
            await store.close()
    return took


async def _big_run(tmp: Path, steps: int) -> tuple[HistoryStore, str]:
    raw = {
        "name": "big",
        "steps": [{"Dummy": {"name": f"s{i}"}} for i in range(steps)],
    }
    stats = {
        "steps": {
            f"s{i}": {"status": "failed" if i == steps // 2 else "done", "output": "x"}
            for i in range(steps)
        }
    }
    store = HistoryStore(tmp / "history.db")
    await store.open()
    await store.insert_run(RunRecord("big1", "big", "manual", "failed", stats=stats))
    await store.put_definition("big1", TaskPile(raw))
    return store, "big1"


def _timed(fn: Callable[[], object], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    bare = await _best(lambda: _starts(a.runs, a.steps, keep=False))
    kept = await _best(lambda: _starts(a.runs, a.steps, keep=True))
    print(f"(a) {a.runs} run starts, {a.steps}-step task")
    print(f"    without the definition: {bare * 1e6 / a.runs:8.1f} us/run")
    print(f"    with the definition:    {kept * 1e6 / a.runs:8.1f} us/run  (x{kept / bare:.2f})")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store, run_id = await _big_run(tmp, 1000)
        try:
            show = _timed(lambda: ops.describe_run(store, run_id))
            plan = _timed(lambda: ops.plan_retry(store, run_id))
        finally:
            await store.close()
        print("(b) a finished 1,000-step run")
        print(f"    show (describe_run):  {show * 1e3:8.1f} ms")
        print(f"    retry plan:           {plan * 1e3:8.1f} ms")
        logs = tmp / "logs"
        logs.mkdir()
        (logs / "s.1.out").write_bytes((b"x" * 1023 + b"\n") * (64 * 1024))
        store = HistoryStore(tmp / "h2.db")
        await store.open()
        await store.insert_run(RunRecord("r", "t", "manual", "done", log_dir=str(logs)))

        def read_all() -> None:
            offsets: dict[str, int] = {}
            while True:
                out = ops.read_logs(store, "r", offsets=offsets)
                sec = out["sections"][0]
                offsets[sec["path"]] = sec["offset"]
                if not sec["more"]:
                    return

        try:
            took = _timed(read_all)
        finally:
            await store.close()
        print("(c) logs of a step that printed 64 MiB, in 1 MiB reads")
        print(f"    {took * 1e3:8.1f} ms  ({64 / took:.0f} MiB/s)")


if __name__ == "__main__":
    asyncio.run(main())
