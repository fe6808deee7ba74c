"""Prometheus metrics: real runs through a real run manager, scraped over HTTP."""

from __future__ import annotations

import asyncio
import platform
import shutil
import socket
import time
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from prometheus_client import PLATFORM_COLLECTOR
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from flowtaskd.clock import SystemClock
from flowtaskd.daemon.config.load import WebhookConfig
from flowtaskd.daemon.intake.library import Library
from flowtaskd.daemon.outputs.metrics import DaemonMetrics
from flowtaskd.daemon.outputs.webhooks import WebhookDispatcher
from flowtaskd.daemon.runs.manager import RunManager
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.engine.events import EventBus
from flowtaskd.execution.local import LocalExecutor
from flowtaskd.tasks import TaskPile
from tests.conftest import wait_for, write

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return parse(response.text)


def pile(name: str, *, fail: bool = False) -> TaskPile:
    steps = [{"Dummy": {"name": "a", "sleep": 0.02}}, {"Dummy": {"name": "b"}}]
    steps.append({"Dummy": {"name": "c", "fail": fail}})
    return TaskPile({"name": name, "steps": steps})


async def test_runs_are_counted_and_scraped(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    write(tasks / "good.yaml", "name: good\nsteps:\n  - Dummy: {}\n")
    write(tasks / "bad.yaml", "name: bad\nsteps:\n  - NoSuchComponent: {}\n")
    for name in ("nightly", "broken"):  # loaded tasks keep their names as labels
        write(tasks / f"{name}.yaml", f"name: {name}\nsteps:\n  - Dummy: {{name: a}}\n")
    library = Library([tasks], trust_all=True)
    await asyncio.to_thread(library.scan)
    store = HistoryStore(tmp_path / "history.db")
    await store.open()
    bus = EventBus()
    runs = RunManager(
        store=store,
        bus=bus,
        executor=LocalExecutor(),
        clock=SystemClock(),
        log_root=tmp_path / "logs",
    )
    # Not served: one "completed" delivery is queued, the second is dropped.
    hooks = WebhookDispatcher(
        bus, [WebhookConfig(url="http://127.0.0.1:9/", events=["completed"])], queue_size=1
    )
    metrics = DaemonMetrics(
        bus, listen=("127.0.0.1", 0), library=library, runs=runs, webhooks=hooks
    )
    stop, runs_stop = asyncio.Event(), asyncio.Event()
    try:
        async with bus, asyncio.TaskGroup() as tg:
            tg.create_task(runs.run(runs_stop))
            server = tg.create_task(metrics.serve(stop))
            port = await wait_for(lambda: metrics.port)
            runs.submit(
                RunRequest(pile=pile("nightly"), trigger="schedule", fire_time=time.time() - 1.5)
            )
            runs.submit(RunRequest(pile=pile("broken", fail=True), trigger="manual"))
            await wait_for(lambda: runs.completed == 2)
            got = await scrape(port)
            stop.set()
            await server
            runs_stop.set()
        with pytest.raises(httpx.ConnectError):
            await scrape(port)  # the server stopped with its stop event
    finally:
        await store.close()

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("flowtaskd_runs_total", task="nightly", status="done") == 1
    assert value("flowtaskd_runs_total", task="broken", status="failed") == 1
    assert value("flowtaskd_run_duration_seconds_count", task="nightly") == 1
    assert value("flowtaskd_run_duration_seconds_sum", task="nightly") >= 0.02
    step = {"task": "nightly", "status": "done"}
    assert value("flowtaskd_step_duration_seconds_count", **step, step="a") == 1
    # b and c are not steps of the loaded nightly.yaml (the run used another snapshot)
    assert value("flowtaskd_step_duration_seconds_count", **step, step="other") == 2
    assert value("flowtaskd_step_duration_seconds_bucket", **step, step="a", le="+Inf") == 1
    failed = {"task": "broken", "step": "other", "status": "failed"}
    assert value("flowtaskd_step_duration_seconds_count", **failed) == 1
    assert value("flowtaskd_step_attempts_total", task="broken", step="a") == 1
    assert value("flowtaskd_last_run_status", task="broken", status="failed") == 1
    assert value("flowtaskd_last_run_status", task="broken", status="done") == 0
    assert ("flowtaskd_last_success_timestamp_seconds", (("task", "broken"),)) not in got
    assert value("flowtaskd_last_success_timestamp_seconds", task="nightly") > time.time() - 60
    assert value("flowtaskd_queue_wait_seconds_count") == 2
    assert value("flowtaskd_schedule_lag_seconds_count") == 1  # the manual run has no fire time
    assert value("flowtaskd_schedule_lag_seconds_sum") >= 1.5
    assert value("flowtaskd_active_runs") == 0
    assert value("flowtaskd_queued_runs") == 0
    assert value("flowtaskd_tasks_loaded") == 3
    assert value("flowtaskd_tasks_invalid") == 1
    assert value("flowtaskd_webhook_deliveries_total", result="dropped") == 1
    assert value("flowtaskd_webhook_deliveries_total", result="delivered") == 0
    assert value("flowtaskd_events_dropped_total") == 0
    hooks.close()


async def test_active_runs_and_open_steps_follow_the_events() -> None:
    bus = EventBus()
    m = DaemonMetrics(bus)

    def sample(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    bus.emit("start", {"task": "t", "run_id": "r1", "trigger": "manual", "ts": 100.0})
    bus.emit("step_start", {"task": "t", "run_id": "r1", "step": "g", "item": 0, "ts": 100.0})
    bus.emit("step_start", {"task": "t", "run_id": "r1", "step": "g", "item": 1, "ts": 100.5})
    bus.emit("step_retry", {"task": "t", "run_id": "r1", "step": "g", "item": 1, "ts": 101.0})
    assert sample("flowtaskd_active_runs") == 1
    assert sample("flowtaskd_step_duration_seconds_sum", task="t", step="g", status="failed") == 0.5
    assert sample("flowtaskd_step_retries_total", task="t", step="g") == 1
    # item 0 never ends (the run is cancelled): completed forgets it, no later pairing
    bus.emit("completed", {"task": "t", "run_id": "r1", "status": "cancelled", "ts": 103.0})
    bus.emit("step_done", {"task": "t", "run_id": "r1", "step": "g", "item": 0, "ts": 104.0})
    assert sample("flowtaskd_active_runs") == 0
    assert sample("flowtaskd_step_duration_seconds_count", task="t", step="g", status="failed") == 1
    assert sample("flowtaskd_run_duration_seconds_sum", task="t") == 3.0
    assert sample("flowtaskd_runs_total", task="t", status="cancelled") == 1
    assert sample("flowtaskd_tasks_loaded") is None  # no library given: left out
    m.close()
    bus.emit("completed", {"task": "t", "run_id": "r2", "status": "done"})
    assert sample("flowtaskd_runs_total", task="t", status="done") is None


def test_each_instance_has_its_own_registry() -> None:
    first, second = DaemonMetrics(EventBus()), DaemonMetrics(EventBus())
    assert first.registry is not second.registry


async def test_a_busy_port_is_logged_not_fatal() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        m = DaemonMetrics(EventBus(), listen=("127.0.0.1", port))
        with capture_logs() as logs:
            async with asyncio.timeout(5):
                await m.serve(asyncio.Event())  # returns at once instead of serving
    assert [e["event"] for e in logs] == ["metrics_failed"]
    assert m.port is None


async def test_without_listen_serve_returns() -> None:
    m = DaemonMetrics(EventBus())
    async with asyncio.timeout(5):
        await m.serve(asyncio.Event())


def _series(m: DaemonMetrics) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in m.registry.collect()
        if family.name.startswith("flowtaskd_")
        for s in family.samples
    }


def _drop(bus: EventBus, n: int) -> None:
    """The events of one run of a dropped file whose task and step names are made up."""
    task, run = f"job-{n:04x}", f"run-{n}"
    base = {"task": task, "run_id": run}
    bus.emit("run_queued", {**base, "trigger": "inbox", "inbox": "drops", "ts": 1.0})
    bus.emit("start", {**base, "trigger": "inbox", "ts": 2.0})
    for i in range(3):
        step = {**base, "step": f"s{n}-{i}", "item": None}
        bus.emit("step_start", {**step, "ts": 2.0})
        bus.emit("step_done", {**step, "status": "done", "ts": 3.0})
    bus.emit("completed", {**base, "status": "done", "ts": 4.0})


async def test_inbox_runs_add_no_series_per_file(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "nightly.yaml", "name: nightly\nsteps:\n  - Dummy: {name: a}\n")
    library = Library([tmp_path / "tasks"], trust_all=True)
    await asyncio.to_thread(library.scan)
    bus = EventBus()
    m = DaemonMetrics(bus, library=library)
    _drop(bus, 1)
    after_one = _series(m)
    for n in range(2, 6):
        _drop(bus, n)
    assert _series(m) == after_one  # 5 drops, the series of 1
    get = m.registry.get_sample_value
    labels = {"task": "inbox:drops", "step": "other", "status": "done"}
    assert get("flowtaskd_step_duration_seconds_count", labels) == 15
    assert get("flowtaskd_runs_total", {"task": "inbox:drops", "status": "done"}) == 5
    # a run of a task that is not loaded (flowtaskd exec of a file elsewhere): "other"
    bus.emit("completed", {"task": "elsewhere", "run_id": "x", "status": "failed", "ts": 5.0})
    assert get("flowtaskd_runs_total", {"task": "other", "status": "failed"}) == 1
    m.close()


def test_skips_misses_and_build_info() -> None:
    bus = EventBus()
    m = DaemonMetrics(bus)
    get = m.registry.get_sample_value
    for reason in ("2 run(s) of t going or queued (overlap: skip)", "queue full (5 runs waiting)"):
        bus.emit("run_skipped", {"task": "t", "run_id": "r", "reason": reason})
    bus.emit("run_skipped", {"task": "t", "run_id": "r", "reason": "task is paused"})
    bus.emit("schedule_missed", {"task": "t", "schedule": "t#0", "missed": 4})
    for reason in ("overlap", "queue_full", "paused"):
        assert get("flowtaskd_runs_skipped_total", {"task": "t", "reason": reason}) == 1
    assert get("flowtaskd_schedule_missed_total", {"task": "t"}) == 4
    version = metadata.version("flowtaskd")
    assert get("flowtaskd_build_info", {"version": version, "python": platform.python_version()})
    assert get("process_cpu_seconds_total") is not None
    assert get("python_info", dict(PLATFORM_COLLECTOR.collect()[0].samples[0].labels)) == 1
    m.close()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
async def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    bus = EventBus()
    m = DaemonMetrics(bus, listen=("127.0.0.1", 0))
    _drop(bus, 1)
    bus.emit("run_skipped", {"task": "t", "run_id": "r", "reason": "queue full"})
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        server = tg.create_task(m.serve(stop))
        port = await wait_for(lambda: m.port)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
        stop.set()
        await server
    m.close()
    proc = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()
    assert out.decode().strip() == "", out.decode()  # no lint warnings either
