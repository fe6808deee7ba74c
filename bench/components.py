"""Transfers: a 100 MB download over HTTP (HTTPClient) and over SFTP (DownloadFromSFTP)
from 127.0.0.1, each against the tool of the trade (curl, OpenSSH's sftp) fetching the
same file in the same run, and the peak memory of the process that ran the step.

Each measurement runs in a fresh process (``--one``) so its peak RSS (``ru_maxrss``)
belongs to that download alone; a run of a ``Dummy`` task gives the baseline. Servers:
``python -m http.server`` (its own process) and a throwaway sshd (``tests/sshd.py``).
Throughput is the best of ``--repeat`` runs, in MB/s (10^6 bytes).

    python bench/components.py [--size-mb 100] [--repeat 3]
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _one(spec: dict[str, Any]) -> None:
    """Run one task (in this fresh process) and print seconds and peak RSS as JSON."""
    from flowtaskd.tasks.task import Task  # noqa: PLC0415

    async def main() -> float:
        async with Task(task=spec["task"], log_dir=spec["logs"], base_env=dict(os.environ)) as t:
            start = time.perf_counter()
            stats = await t.run()
            took = time.perf_counter() - start
        bad = [s.error for s in stats.steps.values() if s.error]
        if bad:
            raise SystemExit(f"step failed: {bad}")
        return took

    took = asyncio.run(main())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": took, "max_rss_kb": rss}))


def _run_one(task: dict[str, Any], logs: Path) -> dict[str, float]:
    spec = json.dumps({"task": task, "logs": str(logs)})
    out = subprocess.run(
        [sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


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
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(json.loads(args.one))
        return
    from tests.servers import free_port  # noqa: PLC0415
    from tests.sshd import sshd_server  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="flowtaskd-bench-"))
    size = args.size_mb * 1_000_000
    src = tmp / "srv" / "big.bin"
    src.parent.mkdir()
    with open(src, "wb") as fh:
        for _ in range(args.size_mb):
            fh.write(os.urandom(1_000_000))
    logs = tmp / "logs"
    results: dict[str, list[float]] = {}
    rss: dict[str, int] = {}

    def note(name: str, seconds: float, kb: int | None = None) -> None:
        results.setdefault(name, []).append(seconds)
        if kb is not None:
            rss[name] = max(rss.get(name, 0), kb)

    base = _run_one({"name": "idle", "steps": [{"Dummy": {}}]}, logs)
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
        for _ in range(args.repeat):
            r = _run_one({"name": "http", "steps": [{"HTTPClient": step}]}, logs)
            note("HTTPClient", r["seconds"], int(r["max_rss_kb"]))
            assert (dest / "big.bin").stat().st_size == size
            (dest / "big.bin").unlink()
            if shutil.which("curl"):
                note("curl", _timed(["curl", "-fsS", "-o", str(tmp / "curl.bin"), url]))
    finally:
        http.terminate()
        http.wait()
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
        for _ in range(args.repeat):
            r = _run_one({"name": "sftp", "steps": [{"DownloadFromSFTP": step}]}, logs)
            note("DownloadFromSFTP", r["seconds"], int(r["max_rss_kb"]))
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
            )
    shutil.rmtree(tmp, ignore_errors=True)
    mb = size / 1e6
    print(
        f"{args.size_mb} MB from 127.0.0.1, best of {args.repeat}; baseline RSS (a Dummy task): "
        f"{base['max_rss_kb'] / 1024:.0f} MiB"
    )
    print(f"{'what':<18} {'MB/s':>8} {'x tool':>7} {'peak RSS MiB':>13} {'over baseline':>14}")
    pairs = [("HTTPClient", "curl"), ("DownloadFromSFTP", "sftp")]
    for ours, tool in pairs:
        for name in (ours, tool):
            if name not in results:
                continue
            speed = mb / min(results[name])
            ratio = ""
            if name == ours and tool in results:
                ratio = f"{speed / (mb / min(results[tool])):.2f}"
            peak = rss.get(name)
            extra = (
                f"{peak / 1024:13.0f} {(peak - base['max_rss_kb']) / 1024:14.0f}" if peak else ""
            )
            print(f"{name:<18} {speed:8.0f} {ratio:>7} {extra}")


if __name__ == "__main__":
    main()
