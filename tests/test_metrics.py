"""Prometheus metrics: real runs through a real run manager, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest
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
    assert value("flowtaskd_step_duration_seconds_count", task="nightly") == 3
    assert value("flowtaskd_step_duration_seconds_count", task="broken") == 3
    assert value("flowtaskd_step_duration_seconds_bucket", task="nightly", le="+Inf") == 3
    assert value("flowtaskd_queue_wait_seconds_count") == 2
    assert value("flowtaskd_schedule_lag_seconds_count") == 1  # the manual run has no fire time
    assert value("flowtaskd_schedule_lag_seconds_sum") >= 1.5
    assert value("flowtaskd_active_runs") == 0
    assert value("flowtaskd_queued_runs") == 0
    assert value("flowtaskd_tasks_loaded") == 1
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
    assert sample("flowtaskd_step_duration_seconds_sum", task="t") == 0.5
    # item 0 never ends (the run is cancelled): completed forgets it, no later pairing
    bus.emit("completed", {"task": "t", "run_id": "r1", "status": "cancelled", "ts": 103.0})
    bus.emit("step_done", {"task": "t", "run_id": "r1", "step": "g", "item": 0, "ts": 104.0})
    assert sample("flowtaskd_active_runs") == 0
    assert sample("flowtaskd_step_duration_seconds_count", task="t") == 1
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
