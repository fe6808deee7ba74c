"""Webhooks against a real HTTP receiver on loopback: signing, filters, retries, the queue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from flowtaskd.daemon.config.load import WebhookConfig
from flowtaskd.daemon.outputs.webhooks import WebhookDispatcher, backoff, user_agent
from flowtaskd.engine.events import EventBus
from tests.conftest import wait_for, wait_for_sync
from tests.daemon_harness import DaemonProcess, event, short_root

SECRET = "s3cret-hook-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A real HTTP server in a thread; ``statuses`` are answered in turn (last one repeats)."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert state is not None
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            if state.hang:
                state.release.wait(10)
            index = min(len(state.requests), len(state.statuses)) - 1
            self.send_response(state.statuses[index])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


class Sleeps:
    """The injected backoff: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    async with EventBus() as b:
        yield b


async def serving(dispatcher: WebhookDispatcher) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(dispatcher.serve(stop))


async def finish(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    async with asyncio.timeout(15):
        await task


async def test_a_matching_event_is_posted_signed(bus: EventBus, receiver: Receiver) -> None:
    hook = WebhookConfig(url=receiver.url + "/hook", secret=SECRET)
    dispatcher = WebhookDispatcher(bus, [hook], sleep=Sleeps())
    stop, task = await serving(dispatcher)
    bus.emit("done", {"task": "backup", "run_id": "r1", "status": "done"})
    await wait_for(lambda: dispatcher.delivered == 1)
    await finish(stop, task)

    (req,) = receiver.requests
    assert req.path == "/hook"
    assert req.json["event"] == "done" and req.json["run_id"] == "r1"
    assert req.headers["X-Flowtaskd-Event"] == "done"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"] == user_agent() and user_agent().startswith("flowtaskd/")
    expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["X-Flowtaskd-Signature"], f"sha256={expected}")
    tampered = hmac.new(SECRET.encode(), req.body + b" ", hashlib.sha256).hexdigest()
    assert req.headers["X-Flowtaskd-Signature"] != f"sha256={tampered}"


async def test_no_secret_no_signature(bus: EventBus, receiver: Receiver) -> None:
    dispatcher = WebhookDispatcher(bus, [WebhookConfig(url=receiver.url)], sleep=Sleeps())
    stop, task = await serving(dispatcher)
    bus.emit("daemon_ready", {"tasks": 0})
    await wait_for(lambda: dispatcher.delivered == 1)
    await finish(stop, task)
    assert "X-Flowtaskd-Signature" not in receiver.requests[0].headers


async def test_event_and_task_filters(bus: EventBus, receiver: Receiver) -> None:
    hooks = [
        WebhookConfig(url=receiver.url + "/errors", events=["on_error", "exception"]),
        WebhookConfig(url=receiver.url + "/backup", tasks=["backup"]),
        WebhookConfig(url=receiver.url + "/both", events=["done"], tasks=["backup"]),
    ]
    dispatcher = WebhookDispatcher(bus, hooks, sleep=Sleeps())
    stop, task = await serving(dispatcher)
    bus.emit("done", {"task": "backup"})
    bus.emit("done", {"task": "report"})
    bus.emit("on_error", {"task": "report"})
    bus.emit("daemon_ready", {"tasks": 2})  # no task: a tasks filter never matches it
    await wait_for(lambda: dispatcher.delivered == 3)
    await finish(stop, task)  # drains: anything else queued would arrive too

    got = sorted((r.path, r.json["event"], r.json.get("task")) for r in receiver.requests)
    assert got == [
        ("/backup", "done", "backup"),
        ("/both", "done", "backup"),
        ("/errors", "on_error", "report"),
    ]
    assert dispatcher.delivered == 3


async def test_a_failing_receiver_is_retried_then_given_up(
    bus: EventBus, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    sleeps = Sleeps()
    hook = WebhookConfig(
        url="http://user:pw@" + receiver.url.removeprefix("http://"), secret=SECRET, retries=3
    )
    dispatcher = WebhookDispatcher(bus, [hook], sleep=sleeps)
    stop, task = await serving(dispatcher)
    with capture_logs() as logs:
        bus.emit("on_error", {"task": "t", "run_id": "r9"})
        await wait_for(lambda: dispatcher.failed == 1)
    await finish(stop, task)

    assert len(receiver.requests) == 4  # the first attempt and 3 retries
    assert sleeps.waits == [0.5, 1.0, 2.0]
    assert (dispatcher.delivered, dispatcher.retried) == (0, 3)
    ids = {r.headers["X-Flowtaskd-Delivery"] for r in receiver.requests}
    assert len(ids) == 1, "every retry of one delivery carries the same delivery id"
    (line,) = [entry for entry in logs if entry["event"] == "webhook_failed"]
    assert line["attempts"] == 4 and line["error"] == "HTTP 500" and line["run_id"] == "r9"
    text = json.dumps(line)
    assert SECRET not in text and "pw" not in text and "***@127.0.0.1" in line["url"]


async def test_retry_until_success_and_4xx_is_not_retried(
    bus: EventBus, receiver: Receiver
) -> None:
    receiver.statuses = [503, 429, 200, 404]
    sleeps = Sleeps()
    dispatcher = WebhookDispatcher(bus, [WebhookConfig(url=receiver.url)], workers=1, sleep=sleeps)
    stop, task = await serving(dispatcher)
    bus.emit("done", {"task": "a"})
    await wait_for(lambda: dispatcher.delivered == 1)
    bus.emit("done", {"task": "b"})
    await wait_for(lambda: dispatcher.failed == 1)
    await finish(stop, task)
    assert len(receiver.requests) == 4
    assert sleeps.waits == [0.5, 1.0] and dispatcher.retried == 2


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(7) == 30.0 and backoff(50) == 30.0


async def test_a_receiver_that_hangs_past_the_timeout_is_a_failure(
    bus: EventBus, receiver: Receiver
) -> None:
    receiver.hang = True
    hook = WebhookConfig(url=receiver.url, timeout=0.3, retries=0)
    dispatcher = WebhookDispatcher(bus, [hook], sleep=Sleeps())
    stop, task = await serving(dispatcher)
    started = time.monotonic()
    with capture_logs() as logs:
        bus.emit("done", {"task": "slow"})
        await wait_for(lambda: dispatcher.failed == 1)
    assert time.monotonic() - started < 5
    receiver.release.set()
    await finish(stop, task)
    assert dispatcher.delivered == 0
    (line,) = [entry for entry in logs if entry["event"] == "webhook_failed"]
    assert "0.3s" in line["error"]


async def test_connection_refused_is_retried_then_counted(bus: EventBus) -> None:
    sleeps = Sleeps()
    dispatcher = WebhookDispatcher(
        bus, [WebhookConfig(url="http://127.0.0.1:9/", retries=2)], sleep=sleeps
    )
    stop, task = await serving(dispatcher)
    with capture_logs():
        bus.emit("done", {"task": "x"})
        await wait_for(lambda: dispatcher.failed == 1)
    await finish(stop, task)
    assert dispatcher.retried == 2 and sleeps.waits == [0.5, 1.0]


async def test_a_full_queue_drops_without_blocking_emit(bus: EventBus, receiver: Receiver) -> None:
    # Not serving: nothing drains the queue, as with a receiver that is down for long.
    dispatcher = WebhookDispatcher(bus, [WebhookConfig(url=receiver.url)], queue_size=10_000)
    with capture_logs() as logs:
        started = time.perf_counter()
        for i in range(20_000):
            bus.emit("step_done", {"task": "t", "run_id": "r", "step": f"s{i}"})
        elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"20,000 emits took {elapsed:.2f}s"
    assert dispatcher.pending == 10_000 and dispatcher.dropped == 10_000
    full = [entry for entry in logs if entry["event"] == "webhook_queue_full"]
    assert len(full) == 1, "a burst of drops is logged once"
    dispatcher.close()
    assert receiver.requests == []


async def test_drop_burst_is_logged_again_after_recovery(bus: EventBus, receiver: Receiver) -> None:
    dispatcher = WebhookDispatcher(bus, [WebhookConfig(url=receiver.url)], queue_size=2)
    with capture_logs() as logs:
        for _ in range(4):
            bus.emit("done", {"task": "t"})
        stop, task = await serving(dispatcher)
        await wait_for(lambda: dispatcher.delivered == 2)
        bus.emit("done", {"task": "t"})  # fits again: the burst ends
        await wait_for(lambda: dispatcher.delivered == 3)
        await finish(stop, task)
    events = [entry["event"] for entry in logs if entry["event"].startswith("webhook_queue")]
    assert events == ["webhook_queue_full", "webhook_queue_recovered"]
    assert next(e for e in logs if e["event"] == "webhook_queue_recovered")["dropped"] == 2


async def test_stop_drains_what_is_queued(bus: EventBus, receiver: Receiver) -> None:
    dispatcher = WebhookDispatcher(bus, [WebhookConfig(url=receiver.url)], sleep=Sleeps())
    for i in range(50):
        bus.emit("step_done", {"task": "t", "step": f"s{i}"})
    stop = asyncio.Event()
    stop.set()  # stop before the workers even start: the queue is still delivered
    async with asyncio.timeout(15):
        await dispatcher.serve(stop)
    assert dispatcher.delivered == 50
    assert sorted(r.json["step"] for r in receiver.requests) == sorted(f"s{i}" for i in range(50))
    bus.emit("done", {"task": "t"})  # closed: not queued any more
    assert dispatcher.pending == 0


async def test_drain_gives_up_after_the_grace(bus: EventBus, receiver: Receiver) -> None:
    receiver.hang = True
    hook = WebhookConfig(url=receiver.url, timeout=30)
    dispatcher = WebhookDispatcher(bus, [hook], workers=1, grace=0.3, sleep=Sleeps())
    for _ in range(3):
        bus.emit("done", {"task": "t"})
    stop = asyncio.Event()
    stop.set()
    started = time.monotonic()
    with capture_logs() as logs:
        async with asyncio.timeout(10):
            await dispatcher.serve(stop)
    assert time.monotonic() - started < 5
    assert dispatcher.delivered == 0
    (line,) = [e for e in logs if e["event"] == "webhook_drain_timeout"]
    assert line["undelivered"] == 2
    receiver.release.set()


def test_no_hooks_no_receiver() -> None:
    bus = EventBus()
    dispatcher = WebhookDispatcher(bus, [])
    assert not bus.has_receivers("done")
    dispatcher.close()


@pytest.mark.e2e
def test_a_real_daemon_posts_webhooks_serves_metrics_and_loads_plugins(
    receiver: Receiver,
) -> None:
    repo = str(Path(__file__).resolve().parents[1])
    with short_root() as root:
        daemon = DaemonProcess(
            root,
            subscribers=["tests.subscriber_plugin:setup_logging", "tests.nowhere:setup"],
            webhooks=[{"url": receiver.url + "/hook", "secret": SECRET, "events": ["completed"]}],
            metrics={"listen": "127.0.0.1:0"},
            schedules=[{"task": "hello", "every": "1s"}],
        )
        daemon.put_task("hello.yaml", "name: hello\nsteps:\n  - Dummy: {}\n")
        try:
            env = {"PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
            daemon.start(env=env)
            failed = daemon.wait_log(event("subscriber_failed"), 5)
            assert "tests.nowhere:setup" in failed["error"]
            port = daemon.wait_log(event("metrics_listening"), 5)["port"]
            daemon.wait_log(event("plugin_saw", signal="completed", task="hello"), 10)
            wait_for_sync(lambda: receiver.requests, 10)
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert 'flowtaskd_runs_total{status="done",task="hello"}' in text
            assert "flowtaskd_schedule_lag_seconds_count 0.0" not in text
            assert "flowtaskd_tasks_loaded 1.0" in text
            assert daemon.stop(signal.SIGTERM) == 0
            assert not [line for line in daemon.logs if "HTTP Request" in str(line["event"])]
        finally:
            daemon.close()
    req = receiver.requests[0]
    assert req.json["event"] == "completed" and req.json["task"] == "hello"
    expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Flowtaskd-Signature"] == f"sha256={expected}"


def test_the_daemon_masks_webhook_secrets_in_logs(tmp_path: Path) -> None:
    from flowtaskd.daemon.config.load import default_config  # noqa: PLC0415
    from flowtaskd.daemon.service import Daemon  # noqa: PLC0415
    from flowtaskd.logs import GLOBAL_MASKER  # noqa: PLC0415

    secret = "whsec-only-for-this-test-4711"
    cfg = default_config(environ={}, cwd=tmp_path)
    cfg = cfg.model_copy(
        update={"webhooks": [WebhookConfig(url="http://127.0.0.1:9/x", secret=secret)]}
    )
    Daemon(cfg)
    try:
        assert GLOBAL_MASKER.mask(f"posting with {secret}") == "posting with ***"
    finally:
        GLOBAL_MASKER.discard(secret)
