"""Event stream benchmarks: delivery rate to control-socket subscribers, and their cost per run.

Run from the repository root::

    .venv/bin/python bench/events.py            # full figures (about a minute)
    .venv/bin/python bench/events.py --quick    # smaller counts, a smoke run
    .venv/bin/python bench/events.py --only 2   # only the added latency per run

1. **Events per second delivered** to 1, 10 and 100 ``subscribe`` connections. A daemon
   runs in this process; synthetic ``step_done`` events (a realistic ~250-byte payload) are
   emitted on its bus as fast as the subscribers' buffers allow (the emitter reads
   ``ControlServer.stream_backlog()``, the deepest subscriber buffer, to pace itself below
   the bound, so no subscriber is dropped), then a sentinel event. All subscriber
   connections live in one separate reader process (asyncio), which records when each
   connection saw the sentinel.
   Figure: deliveries (events x subscribers) per second, first emit to last sentinel.
2. **Added latency per run** with 10 subscribers attached. A real ``flowtaskd run``
   subprocess runs a 20-step Dummy task again and again (``trigger`` with ``wait`` over the
   control socket, one after another); the wall time of each trigger-to-result round trip is
   measured with no subscriber and with 10 subscribers following every event, in
   alternating blocks so drift hits both sides alike; the figure is the median, over the
   pairs of adjacent blocks, of (median with subscribers / median without). Goal: under 5 %
   added. On a shared
   or small machine wall times drift a lot, so the daemon's own CPU time per run (from
   ``/proc``, in clock ticks: coarse, summed over the blocks) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowtaskd.daemon.config.load import load_config  # noqa: E402 - after the path set-up
from flowtaskd.daemon.control.server import ControlServer  # noqa: E402
from flowtaskd.daemon.service import Daemon  # noqa: E402

FLOWTASKD = str(Path(sys.executable).with_name("flowtaskd"))
SENTINEL = "daemon_reloaded"
PAYLOAD: dict[str, Any] = {
    "task": "bench",
    "run_id": "20260101T000000-0123456789ab",
    "component": "Dummy",
    "status": "done",
    "exit_code": 0,
    "attempt": 1,
    "output": "a short line of step output, as most steps print",
}


# -- the reader process ---------------------------------------------------------------------


async def _subscribe(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    writer.write(b'{"cmd": "subscribe"}\n')
    await writer.drain()
    reply = json.loads(await reader.readline())
    assert reply.get("ok"), reply
    return reader, writer


async def _follow(reader: asyncio.StreamReader, stop: asyncio.Event, out: dict[str, Any]) -> None:
    """Count event lines until the sentinel (or ``stop``); note when the sentinel came."""
    marker = f'"event":"{SENTINEL}"'.encode()  # the stream is compact JSON
    out["events"], tail = 0, b""
    while not stop.is_set():
        chunk = await reader.read(1 << 16)
        if not chunk:
            break
        out["events"] += chunk.count(b"\n")
        if marker in tail + chunk:
            out["sentinel_at"] = time.monotonic()
            out["events"] -= 1
            break
        tail = chunk[-64:]


async def reader_main(path: str, n: int) -> None:
    """``--reader``: ``n`` subscribers; print ``ready``, then a JSON result at the end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    conns = [await _subscribe(path) for _ in range(n)]
    print("ready", flush=True)
    results: list[dict[str, Any]] = [{} for _ in conns]
    follows = [
        asyncio.ensure_future(_follow(r, stop, out))
        for (r, _), out in zip(conns, results, strict=True)
    ]
    stopper = asyncio.ensure_future(stop.wait())
    while not stopper.done() and not all(f.done() for f in follows):
        waiting = [f for f in follows if not f.done()]
        await asyncio.wait([*waiting, stopper], return_when=asyncio.FIRST_COMPLETED)
    for f in [*follows, stopper]:
        f.cancel()
    await asyncio.gather(*follows, stopper, return_exceptions=True)
    for _, writer in conns:
        writer.close()
    print(json.dumps(results), flush=True)


async def start_readers(path: Path, n: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--reader", str(path), str(n),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if line.strip() != b"ready":
        raise RuntimeError(f"reader failed to start: {line!r}")
    return proc


async def reader_results(proc: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    out = await asyncio.wait_for(proc.stdout.read(), 120)
    await proc.wait()
    return list(json.loads(out.decode().strip().splitlines()[-1]))


# -- 1. delivery rate --------------------------------------------------------------------


def _config(root: Path, tasks: Path, level: str = "warning") -> Path:
    path = root / "flowtaskd.yaml"
    path.write_text(
        json.dumps(
            {
                "state_dir": str(root / "state"),
                "tasks": [str(tasks)],
                "log": {"format": "json", "level": level},
            }
        )
    )
    return path


async def _poll(cond: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{cond} not true within {limit}s")
        await asyncio.sleep(0.01)


async def delivery_rate(n_subs: int, n_events: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ftdb-", dir="/tmp"))
    try:
        tasks = root / "tasks"
        tasks.mkdir()
        path = _config(root, tasks)
        daemon = Daemon(load_config(path), config_path=path)
        ready = asyncio.Event()
        daemon.bus.connect("daemon_ready", lambda _: ready.set())
        control = next(e for e in daemon.extensions if isinstance(e, ControlServer))
        runner = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(ready.wait(), 30)
            await _poll(daemon.config.control.socket.exists)
            readers = await start_readers(daemon.config.control.socket, n_subs)
            await _poll(lambda: control.subscribers >= n_subs)
            chunk = 50
            high = control.queue_size - 2 * chunk
            emit = daemon.bus.emit
            started = time.monotonic()
            sent = 0
            while sent < n_events:
                if control.stream_backlog() > high:
                    await asyncio.sleep(0)
                    continue
                for i in range(sent, min(sent + chunk, n_events)):
                    emit("step_done", {**PAYLOAD, "step": f"s{i}"})
                sent = min(sent + chunk, n_events)
                await asyncio.sleep(0)
            emit(SENTINEL, {"tasks": 0, "restart_needed": []})
            emitted = time.monotonic()
            results = await reader_results(readers)
        finally:
            daemon.request_stop()
            await runner
    finally:
        shutil.rmtree(root, ignore_errors=True)
    last = max(r.get("sentinel_at", float("nan")) for r in results)
    delivered = sum(r["events"] for r in results)
    elapsed = last - started
    return {
        "subscribers": n_subs,
        "events": n_events,
        "delivered": delivered,
        "complete": delivered == n_events * n_subs and control.dropped == 0,
        "dropped_subscribers": control.dropped,
        "emit_seconds": emitted - started,
        "seconds": elapsed,
        "deliveries_per_s": delivered / elapsed,
        "events_per_s_each": n_events / elapsed,
    }


# -- 2. added latency per run ---------------------------------------------------------------


TASKS = {
    # 20 in-process steps: the engine's own cost only (about 2 ms a run), the worst case
    "dummy20": "".join(f"  - Dummy: {{name: s{i}}}\n" for i in range(20)),
    # 20 short processes (`true`): what a small real task costs
    "command20": "".join(f"  - Command: {{name: s{i}, command: ['true']}}\n" for i in range(20)),
}


def _cpu(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far; None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _trigger(path: Path, task: str) -> tuple[float, dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
    try:
        started = time.perf_counter()
        writer.write(json.dumps({"cmd": "trigger", "task": task, "wait": True}).encode() + b"\n")
        await writer.drain()
        first = json.loads(await reader.readline())
        assert first.get("ok"), first
        end = json.loads(await reader.readline())
        elapsed = time.perf_counter() - started
        assert end.get("status") == "done", end
        return elapsed, end
    finally:
        writer.close()


async def run_latency(task: str, blocks: int, per_block: int, n_subs: int = 10) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ftdb-", dir="/tmp"))
    proc: asyncio.subprocess.Process | None = None
    try:
        tasks = root / "tasks"
        tasks.mkdir()
        for name, steps in TASKS.items():
            (tasks / f"{name}.yaml").write_text(f"name: {name}\nsteps:\n{steps}")
        path = _config(root, tasks, level="info")  # the default level: runs log as usual
        socket_path = load_config(path).control.socket
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        proc = await asyncio.create_subprocess_exec(
            FLOWTASKD, "run", "--config", str(path), cwd=root, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(3000):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_unix_connection(str(socket_path))
                w.close()
                break
            await asyncio.sleep(0.01)
        for _ in range(10):  # warm-up
            await _trigger(socket_path, task)
        times: dict[int, list[float]] = {0: [], n_subs: []}
        engine: dict[int, list[float]] = {0: [], n_subs: []}
        cpu: dict[int, float | None] = {0: 0.0, n_subs: 0.0}
        block_medians: dict[int, list[float]] = {0: [], n_subs: []}
        seen = 0
        for block in range(2 * blocks):
            subs = n_subs if block % 2 else 0
            readers = await start_readers(socket_path, subs) if subs else None
            cpu_before = _cpu(proc.pid)
            these: list[float] = []
            for _ in range(per_block):
                elapsed, end = await _trigger(socket_path, task)
                these.append(elapsed)
                engine[subs].append(float(end.get("duration") or 0.0))
            times[subs].extend(these)
            block_medians[subs].append(statistics.median(these))
            cpu_after, used = _cpu(proc.pid), cpu[subs]
            if cpu_before is None or cpu_after is None or used is None:
                cpu[subs] = None
            else:
                cpu[subs] = used + cpu_after - cpu_before
            if readers is not None:
                readers.send_signal(signal.SIGTERM)
                seen += sum(r["events"] for r in await reader_results(readers))
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        shutil.rmtree(root, ignore_errors=True)

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "mean_ms": statistics.fmean(values) * 1000,
            "median_ms": statistics.median(values) * 1000,
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        }

    base, loaded = summary(times[0]), summary(times[n_subs])
    cpu_none, cpu_with = cpu[0], cpu[n_subs]
    return {
        "cpu_none_ms": None if cpu_none is None else cpu_none / len(times[0]) * 1000,
        "cpu_with_ms": None if cpu_with is None else cpu_with / len(times[n_subs]) * 1000,
        "runs_each": len(times[0]),
        "subscribers": n_subs,
        "events_streamed": seen,
        "none": base,
        "with_subs": loaded,
        "engine_none_ms": statistics.median(engine[0]) * 1000,
        "engine_with_ms": statistics.median(engine[n_subs]) * 1000,
        "added_median": loaded["median_ms"] / base["median_ms"] - 1,
        "added_mean": loaded["mean_ms"] / base["mean_ms"] - 1,
        # each block with subscribers against the block without just before it: the drift
        # of a noisy machine over the whole measurement cancels out
        "added_paired": statistics.median(
            w / n for n, w in zip(block_medians[0], block_medians[n_subs], strict=True)
        )
        - 1,
    }


# -- main -------------------------------------------------------------------------------------


async def main(quick: bool, only: str) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if "1" in only:
        await rates(quick)
    if "2" in only:
        await latencies(quick)


async def rates(quick: bool) -> None:
    print("\n1. events delivered to control-socket subscribers")
    counts = {1: 50_000, 10: 20_000, 100: 5_000}
    if quick:
        counts = {k: v // 10 for k, v in counts.items()}
    for n, events in counts.items():
        r = await delivery_rate(n, events)
        print(
            f"  {n:>3} subscriber(s): {r['deliveries_per_s']:>9,.0f} deliveries/s"
            f"  ({r['events_per_s_each']:>7,.0f} events/s each;"
            f" {r['events']:,} events in {r['seconds']:.2f}s;"
            f" complete={r['complete']}, dropped={r['dropped_subscribers']})"
        )


async def latencies(quick: bool) -> None:
    plans = {"dummy20": (20, 20), "command20": (20, 10)}
    for task, plan in plans.items():
        blocks, per_block = (2, 5) if quick else plan
        print(f"\n2. latency of a run of {task}, 10 subscribers vs none")
        r = await run_latency(task, blocks, per_block)
        for label, key in (("no subscriber", "none"), ("10 subscribers", "with_subs")):
            s = r[key]
            print(
                f"  {label:<15} median {s['median_ms']:7.2f} ms  mean {s['mean_ms']:7.2f} ms"
                f"  p90 {s['p90_ms']:7.2f} ms  ({r['runs_each']} runs)"
            )
        print(
            f"  engine-reported run duration (median): {r['engine_none_ms']:.2f} ms vs"
            f" {r['engine_with_ms']:.2f} ms"
        )
        if r["cpu_none_ms"] is not None and r["cpu_with_ms"] is not None:
            print(
                f"  daemon CPU per run: {r['cpu_none_ms']:.2f} ms vs {r['cpu_with_ms']:.2f} ms"
                f" ({r['cpu_with_ms'] / r['cpu_none_ms'] - 1:+.1%})"
            )
        print(
            f"  added: {r['added_paired']:+.1%} (median of paired blocks; overall"
            f" {r['added_median']:+.1%} median, {r['added_mean']:+.1%} mean);"
            f" {r['events_streamed']:,} events streamed; goal < +5%"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--only", default="12", help="parts to run: 1 (rates), 2 (latency)")
    parser.add_argument("--reader", nargs=2, metavar=("SOCKET", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        asyncio.run(reader_main(args.reader[0], int(args.reader[1])))
    else:
        asyncio.run(main(args.quick, args.only))
