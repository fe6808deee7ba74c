"""Transfers: a 100 MB download over HTTP (HTTPClient) and over SFTP (DownloadFromSFTP)
from 127.0.0.1, each against the tool of the trade (curl, OpenSSH's sftp) fetching the
same file in the same run, and the peak memory of the process that ran the step.

CPU seconds per 100 MB are printed beside MB/s: ours is the step's process (all its threads)
from the start of the run to its end, the tool's its whole process (``RUSAGE_CHILDREN``).
On a shared machine CPU time is the steadier figure; wall-clock throughput also depends on
the server (``python -m http.server``, a process of its own) getting a core.

Each measurement runs in a fresh process (``--one``) so its peak RSS (``ru_maxrss``)
belongs to that download alone; a run of a ``Dummy`` task gives the baseline. The process
downloads twice (overwriting) and times the second: a daemon has imported httpx/asyncssh
already; the first run's CPU, imports included, is printed below it. Servers:
``python -m http.server`` (its own process) and a throwaway sshd (``tests/sshd.py``).
Throughput is the best of ``--repeat`` runs, in MB/s (10^6 bytes).

    python bench/components.py [--size-mb 100] [--repeat 3] [--only http|sftp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _one(spec: dict[str, Any]) -> None:
    """Run one task twice (in this fresh process) and print, as JSON, the second run's
    seconds and CPU (a daemon has imported httpx / asyncssh already), the first run's CPU
    (``cold``: with those imports) and the peak RSS."""
    from flowtaskd.tasks.task import Task  # noqa: PLC0415

    async def once() -> tuple[float, float]:
        async with Task(task=spec["task"], log_dir=spec["logs"], base_env=dict(os.environ)) as t:
            cpu, start = _cpu(resource.RUSAGE_SELF), time.perf_counter()
            stats = await t.run()
            took, cpu = time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu
        bad = [s.error for s in stats.steps.values() if s.error]
        if bad:
            raise SystemExit(f"step failed: {bad}")
        return took, cpu

    _, cold = asyncio.run(once())
    if spec.get("output"):
        os.unlink(spec["output"])  # not timed: freeing a 100 MB file's pages costs CPU too
    took, cpu = asyncio.run(once())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": took, "cpu": cpu, "cold": cold, "max_rss_kb": rss}))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _run_one(task: dict[str, Any], logs: Path, output: Path | None = None) -> dict[str, float]:
    spec = json.dumps({"task": task, "logs": str(logs), "output": output and str(output)})
    out = subprocess.run(
        [sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of the tool's process."""
    cpu, start = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start, _cpu(resource.RUSAGE_CHILDREN) - cpu


def _wait_port(port: int) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["http", "sftp"], help="Measure one of the two.")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(json.loads(args.one))
        return
    tmp = Path(tempfile.mkdtemp(prefix="flowtaskd-bench-"))
    size = args.size_mb * 1_000_000
    src = tmp / "srv" / "big.bin"
    src.parent.mkdir()
    with open(src, "wb") as fh:
        for _ in range(args.size_mb):
            fh.write(os.urandom(1_000_000))
    logs = tmp / "logs"
    results: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    rss: dict[str, int] = {}

    def note(name: str, timed: tuple[float, ...], kb: int | None = None) -> None:
        results.setdefault(name, []).append(timed[0])
        cpus.setdefault(name, []).append(timed[1])
        if len(timed) > 2:
            cpus.setdefault(name + " cold", []).append(timed[2])
        if kb is not None:
            rss[name] = max(rss.get(name, 0), kb)

    base = _run_one({"name": "idle", "steps": [{"Dummy": {}}]}, logs)
    if args.only != "sftp":
        _bench_http(src, tmp, logs, size, args.repeat, note)
    if args.only != "http":
        _bench_sftp(src, tmp, logs, args.repeat, note)
    shutil.rmtree(tmp, ignore_errors=True)
    _report(args, size, base, results, cpus, rss)


Note = Callable[[str, tuple[float, ...], int | None], None]


def _bench_http(src: Path, tmp: Path, logs: Path, size: int, repeat: int, note: Note) -> None:
    from tests.servers import free_port  # noqa: PLC0415

    port = free_port()
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=src.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        url = f"http://127.0.0.1:{port}/big.bin"
        dest = tmp / "dl"
        step = {"url": url, "download": True, "destination": {"directory": str(dest)}}
        for _ in range(repeat):
            r = _run_one({"name": "http", "steps": [{"HTTPClient": step}]}, logs, dest / "big.bin")
            note("HTTPClient", (r["seconds"], r["cpu"], r["cold"]), int(r["max_rss_kb"]))
            assert (dest / "big.bin").stat().st_size == size
            (dest / "big.bin").unlink()
            if shutil.which("curl"):
                (tmp / "curl.bin").unlink(missing_ok=True)  # as ours: a new file each time
                note("curl", _timed(["curl", "-fsS", "-o", str(tmp / "curl.bin"), url]), None)
    finally:
        http.terminate()
        http.wait()


def _bench_sftp(src: Path, tmp: Path, logs: Path, repeat: int, note: Note) -> None:
    from tests.sshd import sshd_server  # noqa: PLC0415

    with sshd_server(tmp / "sshd") as s:
        creds = {"username": s.user, "client_keys": [str(s.key)], "known_hosts": str(s.known_hosts)}
        step = {
            "host": "127.0.0.1",
            "port": s.port,
            "credentials": creds,
            "filename": str(src),
            "directory": str(tmp / "sftp"),
        }
        batch = tmp / "batch"
        batch.write_text(f"get {src} {tmp / 'sftp-tool.bin'}\n")
        for _ in range(repeat):
            (tmp / "sftp-tool.bin").unlink(missing_ok=True)
            task = {"name": "sftp", "steps": [{"DownloadFromSFTP": step}]}
            r = _run_one(task, logs, tmp / "sftp" / "big.bin")
            note("DownloadFromSFTP", (r["seconds"], r["cpu"], r["cold"]), int(r["max_rss_kb"]))
            (tmp / "sftp" / "big.bin").unlink()
            note(
                "sftp",
                _timed(
                    [
                        "sftp",
                        "-q",
                        "-b",
                        str(batch),
                        "-i",
                        str(s.key),
                        "-P",
                        str(s.port),
                        "-o",
                        f"UserKnownHostsFile={s.known_hosts}",
                        "-o",
                        "BatchMode=yes",
                        f"{s.user}@127.0.0.1",
                    ]
                ),
                None,
            )


def _report(
    args: argparse.Namespace,
    size: int,
    base: dict[str, float],
    results: dict[str, list[float]],
    cpus: dict[str, list[float]],
    rss: dict[str, int],
) -> None:
    mb = size / 1e6
    print(
        f"{args.size_mb} MB from 127.0.0.1, best of {args.repeat}; baseline RSS (a Dummy task): "
        f"{base['max_rss_kb'] / 1024:.0f} MiB, its run {base['cpu']:.3f} CPU s"
    )
    print(
        f"{'what':<18} {'MB/s':>8} {'x tool':>7} {'CPU s/100MB':>12} {'tool/ours':>10} "
        f"{'peak RSS MiB':>13} {'over baseline':>14}"
    )
    pairs = [("HTTPClient", "curl"), ("DownloadFromSFTP", "sftp")]
    per100 = 100 / mb  # CPU seconds per 100 MB: the median run's

    def cpu_of(name: str) -> float:
        return sorted(cpus[name])[len(cpus[name]) // 2] * per100

    for ours, tool in pairs:
        for name in (ours, tool):
            if name not in results:
                continue
            speed = mb / min(results[name])
            ratio = cpu_ratio = ""
            if name == ours and tool in results:
                ratio = f"{speed / (mb / min(results[tool])):.2f}"
                cpu_ratio = f"{cpu_of(tool) / cpu_of(ours):.2f}"
            peak = rss.get(name)
            extra = (
                f"{peak / 1024:13.0f} {(peak - base['max_rss_kb']) / 1024:14.0f}" if peak else ""
            )
            cpu = f"{cpu_of(name):12.3f}"
            print(f"{name:<18} {speed:8.0f} {ratio:>7} {cpu} {cpu_ratio:>10} {extra}")
            if name + " cold" in cpus:
                cold = cpu_of(name + " cold")
                print(f"  its first run in the process, imports included: {cold:.3f} CPU s/100MB")


if __name__ == "__main__":
    main()
