"""Web API and dashboard benchmarks against a real daemon with a big library and history.

Run from the repository root::

    .venv/bin/python bench/web.py            # 1,000 tasks, 10,000 runs (about a minute)
    .venv/bin/python bench/web.py --quick    # smaller counts, a smoke run
    .venv/bin/python bench/web.py --only sse # only (4), the SSE clients' cost

A ``flowtaskd run`` subprocess serves 1,000 task files (3 steps each, half scheduled) and a
history of 10,000 finished runs (10 per task, with stats), written beforehand through the
history store. One keep-alive httpx client (bearer token) then measures:

1. ``GET /api/v1/status``, ``GET /api/v1/runs`` (the first page, 50 runs),
   ``GET /api/v1/runs?task=T`` and ``GET /api/v1/tasks`` (all 1,000): p50 and p99 over
   N requests each. Goal: p99 < 20 ms for status and runs.
2. The Tasks page: bytes transferred (HTML + app.js + style.css, compressed as a browser
   asks for them), and, with Playwright driving Debian's chromium, the time from navigation
   to first contentful paint. Goal: < 300 KB.
3. The Run page live: for runs of 5 chained 0.3 s steps, the time from a step's end in the
   daemon to its DAG node turning done in chromium (a MutationObserver). Goal: < 250 ms.
4. The added run latency with 10 SSE clients on ``/api/v1/events`` (in one reader process
   on the same cores): ``POST /api/v1/tasks/T/runs?wait=true`` of a task of 20 ``Command``
   steps (``/bin/true``, the goal's case) and of 20 ``Dummy`` steps (the worst case: a run
   that does nothing but emit events),
   in alternating blocks without and with the clients; the figure is the median over block
   pairs of (median with / median without), for the wall time and for the daemon's CPU
   per run. Goal: < 5 % added.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowtaskd.daemon.runs.store import AttemptRecord, HistoryStore, RunRecord  # noqa: E402

FLOWTASKD = str(Path(sys.executable).with_name("flowtaskd"))
CHROMIUM = "/usr/bin/chromium"
TASK = """\
name: {name}
description: benchmark task {i}
{schedule}steps:
  - Dummy: {{name: extract}}
  - Dummy: {{name: transform, depends: [extract]}}
  - Dummy: {{name: load, depends: [transform]}}
"""
BENCH20 = "name: bench20\nsteps:\n" + "".join(f"  - Dummy: {{name: s{i}}}\n" for i in range(20))
BENCH20CMD = "name: bench20cmd\nsteps:\n" + "".join(
    f"  - Command: {{name: s{i}, command: [/bin/true]}}\n" for i in range(20)
)
BENCHLIVE = "name: benchlive\nsteps:\n" + "".join(
    f"  - Command: {{name: s{i}, command: [sleep, '0.3']{f', depends: [s{i - 1}]' if i else ''}}}\n"
    for i in range(5)
)
# records when each DAG node of the Run page changes state, from the page's first moment
_OBSERVE = """
window.__seen = [];
new MutationObserver((records) => {
  const t = performance.timeOrigin + performance.now();
  for (const r of records)
    if (r.target.matches && r.target.matches("svg.dag g.node"))
      window.__seen.push([r.target.dataset.step, r.target.dataset.state, t]);
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
"""


def _stats(run_id: str, task: str, t: float) -> dict[str, Any]:
    steps = {
        s: {
            "status": "done",
            "component": "Dummy",
            "attempts": 1,
            "exit_code": None,
            "started_at": t,
            "finished_at": t + 0.01,
            "duration": 0.01,
            "tries": [{"attempt": 1, "status": "done", "started_at": t, "finished_at": t + 0.01}],
        }
        for s in ("extract", "transform", "load")
    }
    return {"task": task, "run_id": run_id, "status": "done", "steps": steps}


async def _fill(path: Path, tasks: int, per_task: int) -> None:
    store = HistoryStore(path)
    await store.open()
    now = time.time() - tasks * per_task
    writes = []
    for i in range(tasks):
        for k in range(per_task):
            t = now + i * per_task + k
            rid = f"{int(t * 1000):012x}{i:04x}{k:02x}"
            status = "failed" if k % 7 == 3 else "done"
            run = RunRecord(
                run_id=rid,
                task=f"task{i:04d}",
                trigger="schedule" if k % 2 else "manual",
                status=status,
                started_at=t,
                finished_at=t + 0.03,
                duration=0.03,
                stats=_stats(rid, f"task{i:04d}", t),
            )
            writes.append(store.insert_run(run))
            for s in ("extract", "transform", "load"):
                writes.append(store.record_attempt(AttemptRecord(rid, s, 1, "done", t, t + 0.01)))
        if len(writes) > 4000:
            await asyncio.gather(*writes)
            writes = []
    await asyncio.gather(*writes)
    await store.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(client: httpx.Client, path: str, n: int) -> tuple[float, float]:
    client.get(path).raise_for_status()  # warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    return _pct(times, 0.5) * 1000, _pct(times, 0.99) * 1000


def _tasks_page(base: str, token: str) -> tuple[int, float | None]:
    with httpx.Client(base_url=base, timeout=30) as browser:
        assert browser.get("/login", params={"token": token}).status_code == 303
        total = 0
        for path in ("/tasks", "/static/app.js", "/static/style.css"):
            r = browser.get(path, headers={"Accept-Encoding": "gzip"})
            r.raise_for_status()
            total += r.num_bytes_downloaded
    fcp = None
    if os.path.exists(CHROMIUM):
        try:
            from playwright.sync_api import sync_playwright  # noqa: PLC0415
        except ImportError:
            return total, None
        with sync_playwright() as pw:
            b = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"],
            )
            page = b.new_page(base_url=base)
            page.goto(f"/login?token={token}")
            values = []
            for _ in range(5):
                page.goto("/tasks")
                fcp = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
                for _ in range(100):  # the paint entry comes a moment after the load
                    got = page.evaluate(fcp)
                    if got is not None:
                        break
                    page.wait_for_timeout(20)
                values.append(got)
            b.close()
            got = [v for v in values if v is not None]
            fcp = statistics.median(got) if got else None
    return total, fcp


_READERS = """
import asyncio, sys, httpx
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def one(client, opened):
    async with client.stream("GET", "/api/v1/events") as resp:
        opened.release()
        async for _ in resp.aiter_raw():
            pass
async def main():
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=None) as client:
        opened = asyncio.Semaphore(0)
        tasks = [asyncio.create_task(one(client, opened)) for _ in range(n)]
        for _ in range(n):
            await opened.acquire()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for t in tasks:
            t.cancel()
asyncio.run(main())
"""


def _live_delay(client: httpx.Client, base: str, token: str, runs: int) -> list[float]:
    """Per step of ``runs`` runs of 5 chained steps: ms from the step's end in the daemon
    to its node turning done on the open Run page (chromium, the page's own SSE)."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    delays: list[float] = []
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"],
        )
        page = b.new_page(base_url=base)
        page.add_init_script(_OBSERVE)
        page.goto(f"/login?token={token}")
        for _ in range(runs):
            run_id = client.post("/api/v1/tasks/benchlive/runs").json()["run_id"]
            page.goto(f"/runs/{run_id}")
            page.locator("#run-state", has_text="done").wait_for(timeout=30_000)
            seen = {st: t for st, state, t in page.evaluate("window.__seen") if state == "done"}
            steps = client.get(f"/api/v1/runs/{run_id}").json()["steps"]
            for sid, step in steps.items():
                end = step["tries"][-1]["finished_at"]
                if sid in seen and seen[sid] / 1000 > end:
                    delays.append(seen[sid] - end * 1000)
        b.close()
    return delays


def _cpu(pid: int) -> float:
    """The daemon process's own CPU seconds (user + system; not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latency(
    client: httpx.Client, base: str, token: str, blocks: int, per: int, task: str, pid: int
) -> tuple[float, float]:
    """Median over block pairs of (median with 10 SSE clients / median without) - 1, in %,
    for the wall time of a run and for the daemon's CPU per run (which the machine's other
    load disturbs much less); the clients live in another process, so they do not share
    this one's GIL or the daemon's."""

    def block() -> tuple[float, float]:
        times = []
        cpu0 = _cpu(pid)
        for _ in range(per):
            t0 = time.perf_counter()
            client.post(f"/api/v1/tasks/{task}/runs", params={"wait": "true"}).raise_for_status()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), (_cpu(pid) - cpu0) / per

    block()  # warm
    walls, cpus = [], []
    for _ in range(blocks):
        bare, bare_cpu = block()
        readers = subprocess.Popen(
            [sys.executable, "-c", _READERS, base, token, "10"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert readers.stdout is not None and readers.stdin is not None
        assert readers.stdout.readline().strip() == "ready"
        with_clients, with_cpu = block()
        readers.stdin.close()
        readers.wait(30)
        walls.append(with_clients / bare)
        cpus.append(with_cpu / bare_cpu if bare_cpu else 1.0)
        print(
            f"  block pair: {bare * 1000:.2f} ms bare, {with_clients * 1000:.2f} ms with 10"
            f" clients; daemon CPU {bare_cpu * 1000:.2f} / {with_cpu * 1000:.2f} ms per run"
        )
    return (statistics.median(walls) - 1) * 100, (statistics.median(cpus) - 1) * 100


def _requests(client: httpx.Client, n: int) -> None:
    print("| request | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for path in (
        "/api/v1/status",
        "/api/v1/runs",
        "/api/v1/runs?task=task0042",
        "/api/v1/runs?status=failed&limit=100",
        "/api/v1/tasks",
    ):
        p50, p99 = _timed(client, path, n if "tasks" not in path else n // 5)
        print(f"| `GET {path}` | {p50:.2f} | {p99:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--blocks", type=int, help="block pairs for (3) (default 6)")
    ap.add_argument(
        "--only", choices=("requests", "page", "live", "sse"), help="measure only this part"
    )
    args = ap.parse_args()
    tasks, per_task, n = (100, 10, 100) if args.quick else (1000, 10, 500)
    root = Path(tempfile.mkdtemp(prefix="ftd-web-", dir="/tmp"))
    proc = None
    try:
        lib = root / "tasks"
        lib.mkdir()
        for i in range(tasks):
            sched = f'schedule: "{i % 60} {i % 24} * * *"\n' if i % 2 else ""
            name = f"task{i:04d}"
            (lib / f"{name}.yaml").write_text(TASK.format(name=name, i=i, schedule=sched))
        (lib / "bench20.yaml").write_text(BENCH20)
        (lib / "bench20cmd.yaml").write_text(BENCH20CMD)
        (lib / "benchlive.yaml").write_text(BENCHLIVE)
        state = root / "state"
        t0 = time.perf_counter()
        asyncio.run(_fill(state / "history.db", tasks, per_task))
        print(f"history: {tasks * per_task} runs written in {time.perf_counter() - t0:.1f} s")
        cfg = root / "flowtaskd.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "state_dir": str(state),
                    "tasks": [str(lib)],
                    "log": {"format": "json", "level": "warning"},
                    "history": {"max_runs_per_task": None, "retention_days": None},
                    "concurrency": {"max_runs": 4},
                    "web": {"listen": "127.0.0.1:0"},
                }
            )
        )
        proc = subprocess.Popen(
            [FLOWTASKD, "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert proc.stderr is not None
        base = None
        for line in proc.stderr:
            if "/login?token=" in line:
                base = line.split(": ", 1)[1].split("/login")[0].strip()
                break
        assert base, "the daemon printed no login URL"
        token = (state / "web-token").read_text().strip()
        drain = threading.Thread(target=proc.stderr.read, daemon=True)  # never let it block
        drain.start()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 60
            while client.get("/api/v1/status").json()["tasks"] < tasks + 3:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            print(f"{tasks} tasks, {tasks * per_task} runs in the history; {n} requests each")
            if args.only in (None, "requests"):
                _requests(client, n)
            if args.only in (None, "page"):
                size, fcp = _tasks_page(base, token)
                print(f"Tasks page (100 of {tasks} tasks): {size / 1024:.1f} KB", end="")
                print(f", first contentful paint {fcp:.0f} ms" if fcp is not None else "")
            if args.only in (None, "live") and os.path.exists(CHROMIUM):
                d = sorted(_live_delay(client, base, token, 2 if args.quick else 6))
                print(f"Run page: a step's end to its node showing done, {len(d)} steps:", end="")
                print(f" median {statistics.median(d):.0f} ms, max {d[-1]:.0f} ms")
            blocks, per = (3, 10) if args.quick else (args.blocks or 6, 20)
            cases = (("bench20cmd", "20 Command steps"), ("bench20", "20 Dummy steps"))
            for task, what in cases if args.only in (None, "sse") else ():
                added, cpu = _latency(client, base, token, blocks, per, task, proc.pid)
                print(f"{what}: run latency added by 10 SSE clients {added:+.1f} %", end="")
                print(f", daemon CPU per run {cpu:+.1f} % (medians of {blocks} pairs)")
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
