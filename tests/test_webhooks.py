"""Webhooks against a real HTTP receiver on loopback: signing, filters, retries, the queue."""

from __future__ import annotations

import asyncio
import base64
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
import standardwebhooks
from structlog.testing import capture_logs

from flowtaskd.daemon.config.load import WebhookConfig
from flowtaskd.daemon.outputs.webhooks import WebhookDispatcher, target_of, user_agent
from flowtaskd.engine.events import EventBus
from tests.conftest import wait_for, wait_for_sync
from tests.daemon_harness import DaemonProcess, event, short_root

SECRET = "s3cret-hook-key"
WHSEC = "whsec_" + base64.b64encode(b"flowtaskd-test-key-0123456789ab").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"the-previous-key-0123456789abcd").decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def data(self) -> dict[str, Any]:
        """The event payload: a Standard Webhooks body's ``data``, or a github-style body."""
        doc = self.json
        return dict(doc["data"]) if set(doc) == {"type", "timestamp", "data"} else doc


@dataclass
class Receiver:
    """A real HTTP server in a thread; ``statuses`` are answered in turn (last one repeats)."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    retry_after: str | None = None
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
            if state.retry_after is not None:
                self.send_header("Retry-After", state.retry_after)
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
    hook = WebhookConfig(url=receiver.url + "/hook", secret=SECRET, signing="github")
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

    got = sorted((r.path, r.data["event"], r.data.get("task")) for r in receiver.requests)
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
        url="http://user:pw@" + receiver.url.removeprefix("http://"),
        secret=SECRET,
        signing="github",
        retry_schedule=[0.5, 1, 2, 4],
        retries=3,
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
    hook = WebhookConfig(url=receiver.url, retry_schedule=[0.5, 1, 2])
    dispatcher = WebhookDispatcher(bus, [hook], workers=1, sleep=sleeps)
    stop, task = await serving(dispatcher)
    bus.emit("done", {"task": "a"})
    await wait_for(lambda: dispatcher.delivered == 1)
    bus.emit("done", {"task": "b"})
    await wait_for(lambda: dispatcher.failed == 1)
    await finish(stop, task)
    assert len(receiver.requests) == 4
    assert sleeps.waits == [0.5, 1.0] and dispatcher.retried == 2


def test_the_retry_schedule_and_its_defaults() -> None:
    default = target_of(WebhookConfig(url="http://x/"))
    assert default.schedule == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
    assert default.delay(6) == 36000.0 and default.delay(7) is None
    custom = target_of(WebhookConfig(url="http://x/", retry_schedule=["1s", "2m"], retries=4))
    assert custom.schedule == (1.0, 120.0, 120.0, 120.0)  # the last wait repeats
    assert target_of(WebhookConfig(url="http://x/", retries=0)).delay(1) is None


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
        bus,
        [WebhookConfig(url="http://127.0.0.1:9/", retry_schedule=[0.5, 1], retries=2)],
        sleep=sleeps,
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
    assert sorted(r.data["step"] for r in receiver.requests) == sorted(f"s{i}" for i in range(50))
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
            webhooks=[{"url": receiver.url + "/hook", "secret": WHSEC, "events": ["completed"]}],
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
    doc = standardwebhooks.Webhook(WHSEC).verify(req.body, req.headers)
    assert doc["type"] == "completed" and doc["data"]["task"] == "hello"


def test_the_daemon_masks_webhook_secrets_in_logs(tmp_path: Path) -> None:
    from flowtaskd.daemon.config.load import default_config  # noqa: PLC0415
    from flowtaskd.daemon.service import Daemon  # noqa: PLC0415
    from flowtaskd.logs import GLOBAL_MASKER  # noqa: PLC0415

    secret = "whsec-only-for-this-test-4711"
    cfg = default_config(environ={}, cwd=tmp_path)
    cfg = cfg.model_copy(
        update={
            "webhooks": [
                WebhookConfig(url="http://127.0.0.1:9/x", secret=secret, signing="github"),
                WebhookConfig(url="http://127.0.0.1:9/y", secret=[WHSEC, WHSEC_OLD]),
            ]
        }
    )
    Daemon(cfg)
    try:
        assert GLOBAL_MASKER.mask(f"posting with {secret}") == "posting with ***"
        assert GLOBAL_MASKER.mask(f"{WHSEC} {WHSEC_OLD}") == "*** ***"
    finally:
        for value in (secret, WHSEC, WHSEC_OLD):
            GLOBAL_MASKER.discard(value)


# -- Standard Webhooks, Retry-After, pending deliveries across restarts, the WebHook action --


async def test_standard_webhooks_verify_with_either_secret_while_rotating(
    bus: EventBus, receiver: Receiver
) -> None:
    hook = WebhookConfig(url=receiver.url, secret=[WHSEC, WHSEC_OLD])
    dispatcher = WebhookDispatcher(bus, [hook], sleep=Sleeps())
    stop, task = await serving(dispatcher)
    bus.emit("step_error", {"task": "t", "run_id": "r1", "step": "a", "ts": time.time()})
    await wait_for(lambda: dispatcher.delivered == 1)
    await finish(stop, task)
    (req,) = receiver.requests
    for secret in (WHSEC, WHSEC_OLD):  # the receiver may still hold the old one
        doc = standardwebhooks.Webhook(secret).verify(req.body, req.headers)
        assert doc["type"] == "step_error" and doc["data"]["step"] == "a"
        assert doc["timestamp"].endswith("Z")
    assert req.headers["webhook-id"].startswith("msg_")
    assert req.headers["X-Flowtaskd-Delivery"] == req.headers["webhook-id"]
    other = "whsec_" + base64.b64encode(b"some-other-key-0123456789abcdef").decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(req.body, req.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(WHSEC).verify(req.body + b" ", req.headers)
    # a replay an hour later is refused by the receiver's timestamp check
    stale = {**req.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(WHSEC).verify(req.body, stale)


def test_secrets_must_fit_the_signing() -> None:
    with pytest.raises(ValueError, match=r"whsec_.*signing: github"):
        WebhookConfig(url="http://x/", secret="plain-key")
    with pytest.raises(ValueError, match="one secret"):
        WebhookConfig(url="http://x/", secret=["a-key", "b-key"], signing="github")
    assert WebhookConfig(url="http://x/", secret="plain-key", signing="github")


async def test_retry_after_replaces_the_scheduled_wait(bus: EventBus, receiver: Receiver) -> None:
    receiver.statuses, receiver.retry_after = [429, 200], "7"
    sleeps = Sleeps()
    hook = WebhookConfig(url=receiver.url, retry_schedule=[0.5])
    dispatcher = WebhookDispatcher(bus, [hook], sleep=sleeps)
    stop, task = await serving(dispatcher)
    bus.emit("done", {"task": "t"})
    await wait_for(lambda: dispatcher.delivered == 1)
    await finish(stop, task)
    assert sleeps.waits == [7.0]
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    stamps = [r.headers["webhook-timestamp"] for r in receiver.requests]
    assert len(ids) == 1 and len(stamps) == 2  # one delivery, re-signed per attempt


class NeverDue:
    """A retry wait that does not end before the dispatcher stops."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.Event().wait()


async def test_pending_deliveries_survive_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [503, 200]
    pending = tmp_path / "state" / "webhooks"
    hook = WebhookConfig(url=receiver.url, secret=WHSEC, retry_schedule=["5m"])
    async with EventBus() as bus:
        first = WebhookDispatcher(bus, [hook], sleep=NeverDue(), pending_dir=pending)
        stop, task = await serving(first)
        bus.emit("on_error", {"task": "t", "run_id": "r1", "ts": time.time()})
        await wait_for(lambda: first.retried == 1)
        bus.emit("done", {"task": "t", "run_id": "r2"})  # queued: the worker may be busy
        await wait_for(lambda: first.pending == 1 or len(list(pending.glob("*.json"))) == 1)
        await finish(stop, task)
    files = sorted(pending.glob("*.json"))
    assert len(files) >= 1
    saved = [json.loads(f.read_text()) for f in files]
    retried = next(d for d in saved if d["payload"]["run_id"] == "r1")
    assert retried["attempt"] == 2 and retried["due"] > time.time() + 200
    assert receiver.url not in files[0].read_text() and WHSEC not in files[0].read_text()

    # the next start: the same entry, the clock moved past the due time
    async with EventBus() as bus:
        second = WebhookDispatcher(
            bus, [hook], sleep=Sleeps(), clock=lambda: time.time() + 600, pending_dir=pending
        )
        stop, task = await serving(second)
        await wait_for(lambda: second.delivered == len(saved))
        await finish(stop, task)
    assert not list(pending.glob("*.json"))
    again = [r for r in receiver.requests if r.data["run_id"] == "r1"]
    assert len({r.headers["webhook-id"] for r in again}) == 1 and len(again) == 2


async def test_a_pending_file_of_a_removed_entry_is_dropped(tmp_path: Path) -> None:
    pending = tmp_path / "webhooks"
    pending.mkdir()
    doc = {"id": "msg_x", "target": "0123456789abcdef", "attempt": 2, "due": 0, "payload": {}}
    (pending / "msg_x.json").write_text(json.dumps(doc))
    (pending / "broken.json").write_text("{")
    async with EventBus() as bus:
        d = WebhookDispatcher(bus, [WebhookConfig(url="http://127.0.0.1:9/")], pending_dir=pending)
        stop = asyncio.Event()
        stop.set()
        with capture_logs() as logs:
            await d.serve(stop)
    assert [e["event"] for e in logs].count("webhook_pending_dropped") == 2
    assert not list(pending.iterdir())


async def test_the_webhook_action_goes_through_the_dispatcher(
    tmp_path: Path, receiver: Receiver
) -> None:
    from flowtaskd.tasks import Task  # noqa: PLC0415

    definition = {
        "name": "act",
        "steps": [{"Dummy": {"name": "a"}}],
        "events": {"done": [{"WebHook": {"url": receiver.url + "/act", "secret": WHSEC}}]},
    }
    async with EventBus() as bus:
        dispatcher = WebhookDispatcher(bus, [], sleep=Sleeps())
        stop, task = await serving(dispatcher)
        async with Task(task=definition, events=bus, log_dir=tmp_path, webhooks=dispatcher) as t:
            await t.run()
        await wait_for(lambda: dispatcher.delivered == 1)
        await finish(stop, task)
    (req,) = receiver.requests
    doc = standardwebhooks.Webhook(WHSEC).verify(req.body, req.headers)
    assert doc["type"] == "done" and doc["data"]["task"] == "act"
    assert req.headers["User-Agent"] == user_agent()


async def test_the_webhook_action_without_a_daemon_retries_inline(
    tmp_path: Path, receiver: Receiver, fake_clock: Any
) -> None:
    from flowtaskd.tasks import Task  # noqa: PLC0415

    receiver.statuses = [500, 200]
    action = {"url": receiver.url, "signing": "github", "secret": SECRET, "retry_schedule": [3]}
    definition = {
        "name": "solo",
        "steps": [{"Dummy": {"name": "a"}}],
        "events": {"done": [{"WebHook": action}]},
    }
    async with Task(task=definition, log_dir=tmp_path, clock=fake_clock) as t:
        await t.run()
    assert len(receiver.requests) == 2
    body = receiver.requests[1].body
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert receiver.requests[1].headers["X-Flowtaskd-Signature"] == f"sha256={expected}"
    assert receiver.requests[1].data["event"] == "done"
