"""Webhooks: lifecycle events POSTed as JSON to configured URLs, off the run's path.

Each ``webhooks:`` entry (:class:`~flowtaskd.daemon.config.load.WebhookConfig`) names a ``url``
and optionally the ``events`` and ``tasks`` it wants (``None``: all; an event without a
``task`` field -- ``daemon_ready`` -- never matches a ``tasks`` filter). What is sent -- the
Standard Webhooks body and headers by default, GitHub-style with ``signing: github`` -- is
:mod:`flowtaskd.engine.hookpost`'s. The task file's ``WebHook`` action is handed to the same
dispatcher (:meth:`WebhookDispatcher.submit`), so it gets the same headers, signing,
retries and logging.

**A run never waits for a webhook.** The bus receiver is synchronous and only appends to a
bounded queue; when the queue is full the delivery is dropped, counted in :attr:`dropped`
and logged once per burst (``webhook_queue_full``, then ``webhook_queue_recovered``). A few
worker coroutines share one :class:`httpx.AsyncClient` (made at the first delivery).

**Retries** follow the target's schedule (``retry_schedule``; default 5 s, 5 min, 30 min,
2 h, 5 h, 10 h) after a connection error, a timeout, 5xx or 429; a ``Retry-After`` header
replaces the scheduled wait. Other statuses below 200 or from 300 up fail at once. A waiting
retry holds no worker. A delivery given up is logged as one ``webhook_failed`` line (the
URL without its userinfo and query, never the secret) and counted in :attr:`failed`.
Deliveries may arrive out of order: use the payload's timestamp.

**Restarts.** With a ``pending_dir`` (the daemon's ``<state_dir>/webhooks``), a delivery
waiting for a retry is written there as one JSON file (the masked payload, the target's
key -- never its URL or secret -- the attempt count and when it is due), and so is
everything still queued at shutdown; at the next start they are sent again, on schedule,
to the entry with the same key (its URL and signing). A file whose entry is gone from the
config is dropped with a ``webhook_pending_dropped`` line. ``WebHook`` action deliveries
are retried in memory only (their URL and secret live in the task file).

**Shutdown.** :meth:`WebhookDispatcher.serve` runs until ``stop`` is set, then delivers what
is queued for ``grace`` seconds and saves the rest. Events keep being queued until the
dispatcher is :meth:`closed <WebhookDispatcher.close>`, so events emitted while it drains
still go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from flowtaskd.daemon.config.load import WebhookConfig
from flowtaskd.engine.events import CATCH_ALL, EventBus, Payload
from flowtaskd.engine.hookpost import (
    DEFAULT_SCHEDULE,
    FinalError,
    RetryableError,
    Target,
    new_delivery_id,
    post,
    request_for,
    user_agent,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookDispatcher", "target_of", "user_agent"]

_log = structlog.get_logger("flowtaskd.webhooks")

_QUIET = ("httpx", "httpcore")

Sleep = Callable[[float], Awaitable[None]]


def target_of(cfg: WebhookConfig) -> Target:
    """The delivery target of one ``webhooks:`` entry."""
    secrets = cfg.secret if isinstance(cfg.secret, list) else [cfg.secret] if cfg.secret else []
    schedule = tuple(cfg.retry_schedule) if cfg.retry_schedule is not None else DEFAULT_SCHEDULE
    if cfg.retries is not None:  # a count: the schedule's first ones, its last one repeated
        last = schedule[-1] if schedule else 0.0
        schedule = tuple(schedule[i] if i < len(schedule) else last for i in range(cfg.retries))
    key = hashlib.sha256(f"{cfg.signing}\n{cfg.url}".encode()).hexdigest()[:16]
    return Target(
        url=cfg.url,
        secrets=tuple(secrets),
        signing=cfg.signing,
        timeout=cfg.timeout,
        schedule=schedule,
        key=key,
    )


@dataclass(frozen=True, slots=True)
class _Hook:
    target: Target
    events: frozenset[str] | None
    tasks: frozenset[str] | None

    def wants(self, payload: Payload) -> bool:
        if self.events is not None and payload.get("event") not in self.events:
            return False
        return self.tasks is None or payload.get("task") in self.tasks


@dataclass(slots=True, eq=False)
class _Delivery:
    target: Target
    payload: Payload
    msg_id: str = field(default_factory=new_delivery_id)
    attempt: int = 1  # the number of the next attempt
    saved: bool = False  # a pending file exists for it
    due: float = 0.0  # when the next attempt is due (wall clock), once one was scheduled


class WebhookDispatcher:
    """Delivers matching bus events to the configured webhooks (a daemon extension).

    Connects to ``bus`` at construction, so events emitted before :meth:`serve` starts wait
    in the queue. ``sleep`` is the retry wait and ``clock`` the wall clock (tests inject
    both); ``transport`` is handed to httpx (tests and benchmarks only).
    """

    def __init__(
        self,
        bus: EventBus,
        hooks: Sequence[WebhookConfig],
        *,
        queue_size: int = 10_000,
        workers: int = 4,
        grace: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        pending_dir: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError("queue_size and workers must be >= 1")
        self._hooks = tuple(
            _Hook(
                target_of(h),
                frozenset(h.events) if h.events is not None else None,
                frozenset(h.tasks) if h.tasks is not None else None,
            )
            for h in hooks
        )
        self._by_key = {h.target.key: h.target for h in self._hooks}
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue(maxsize=queue_size)
        self._workers = workers
        self.grace = grace
        self._sleep, self._clock = sleep, clock
        self.pending_dir = pending_dir
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._waiting: dict[_Delivery, asyncio.Task[None]] = {}  # retries not yet due
        self._inflight: set[_Delivery] = set()
        self._burst = 0
        self.delivered = 0
        """Deliveries the receiver accepted with a 2xx status."""
        self.failed = 0
        """Deliveries given up (after their retries, or at once for a 4xx)."""
        self.retried = 0
        """Retry attempts made (a delivery retried twice counts 2)."""
        self.dropped = 0
        """Deliveries not queued because the queue was full."""
        self._disconnect: Callable[[], None] | None = (
            bus.connect(CATCH_ALL, self._receive) if self._hooks else None
        )

    @property
    def pending(self) -> int:
        """Deliveries waiting in the queue or for a retry."""
        return self._queue.qsize() + len(self._waiting)

    def close(self) -> None:
        """Stop queueing new events (idempotent); what is queued stays queued."""
        if self._disconnect is not None:
            self._disconnect()
            self._disconnect = None

    # -- the producer side: sync, cheap, never blocks ------------------------------------

    def _receive(self, payload: Payload) -> None:
        for hook in self._hooks:
            if hook.wants(payload):
                self._put(_Delivery(hook.target, payload))

    def submit(self, target: Target, payload: Payload) -> bool:
        """Queue one delivery to ``target`` (the ``WebHook`` action); False if dropped."""
        return self._put(_Delivery(target, payload))

    def _put(self, delivery: _Delivery) -> bool:
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.dropped += 1
            self._burst += 1
            if self._burst == 1:
                _log.warning(
                    "webhook_queue_full",
                    queue_size=self._queue.maxsize,
                    signal=delivery.payload.get("event"),
                )
            return False
        if self._burst:
            _log.info("webhook_queue_recovered", dropped=self._burst)
            self._burst = 0
        return True

    # -- the delivery side ---------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then drain for :attr:`grace` seconds, save the rest."""
        for name in _QUIET:  # httpx logs each request at INFO with its URL (tokens and all)
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for delivery, delay in await asyncio.to_thread(self._load_pending):
                    self._later(delivery, delay)
                workers = [
                    tg.create_task(self._work(), name=f"webhook-worker-{i}")
                    for i in range(self._workers)
                ]
                await stop.wait()
                await self._drain()
                for worker in workers:
                    worker.cancel()
                for waiter in self._waiting.values():
                    waiter.cancel()
            await self._save_rest()
        finally:
            self._tg = None
            self.close()
            if self._client is not None:
                await self._client.aclose()
                self._client = None

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self.grace):
                await self._queue.join()
        except TimeoutError:
            _log.warning("webhook_drain_timeout", grace=self.grace, undelivered=self._queue.qsize())

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx  # noqa: PLC0415 - 3 MB, paid at the first delivery only

            self._client = httpx.AsyncClient(
                transport=self._transport,
                headers={"User-Agent": user_agent()},
                follow_redirects=False,
            )
        return self._client

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._inflight.add(delivery)
            try:
                await self._attempt(delivery)
            except Exception as exc:  # a bug here must not take the daemon down
                await self._give_up(delivery, f"{type(exc).__name__}: {exc}")
            finally:
                self._inflight.discard(delivery)
                self._queue.task_done()

    async def _attempt(self, d: _Delivery) -> None:
        now = self._clock()
        body, headers = request_for(d.target, d.payload, d.msg_id, now)
        try:
            await post(self._http(), d.target, body, headers, now)
        except RetryableError as exc:
            delay = d.target.delay(d.attempt)
            if delay is None:
                await self._give_up(d, str(exc))
                return
            if exc.retry_after is not None:
                delay = exc.retry_after
            self.retried += 1
            d.attempt += 1
            d.due = self._clock() + delay
            if d.target.key and self.pending_dir is not None:
                await asyncio.to_thread(self._save, d)
            self._later(d, delay)
        except FinalError as exc:
            await self._give_up(d, str(exc))
        else:
            self.delivered += 1
            await self._forget(d)

    def _later(self, d: _Delivery, delay: float) -> None:
        assert self._tg is not None

        async def wait_then_queue() -> None:
            await self._sleep(delay)
            del self._waiting[d]
            await self._queue.put(d)

        self._waiting[d] = self._tg.create_task(wait_then_queue(), name=f"webhook-retry-{d.msg_id}")

    async def _give_up(self, d: _Delivery, error: str) -> None:
        self.failed += 1
        payload = d.payload
        _log.warning(
            "webhook_failed",
            url=d.target.shown,
            signal=payload.get("event"),
            task=payload.get("task"),
            run_id=payload.get("run_id"),
            attempts=d.attempt,
            error=error,
        )
        await self._forget(d)

    # -- pending deliveries on disk --------------------------------------------------------

    def _path(self, d: _Delivery) -> Path:
        assert self.pending_dir is not None
        return self.pending_dir / f"{d.msg_id}.json"

    def _save(self, d: _Delivery) -> None:
        assert self.pending_dir is not None
        self.pending_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "id": d.msg_id,
            "target": d.target.key,
            "attempt": d.attempt,
            "due": d.due,
            "payload": d.payload,
        }
        path = self._path(d)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
        os.replace(tmp, path)
        d.saved = True

    async def _forget(self, d: _Delivery) -> None:
        if d.saved:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(self._path(d).unlink)
            d.saved = False

    def _load_pending(self) -> list[tuple[_Delivery, float]]:
        if self.pending_dir is None or not self.pending_dir.is_dir():
            return []
        now, out = self._clock(), []
        for path in sorted(self.pending_dir.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                target = self._by_key.get(str(doc["target"]))
                if target is None:
                    _log.warning("webhook_pending_dropped", file=path.name, reason="entry removed")
                    path.unlink()
                    continue
                d = _Delivery(target, dict(doc["payload"]), str(doc["id"]), int(doc["attempt"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("webhook_pending_dropped", file=path.name, reason=str(exc))
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            d.saved, d.due = True, float(doc.get("due", now))
            out.append((d, max(0.0, d.due - now)))
        if out:
            _log.info("webhook_pending_loaded", deliveries=len(out))
        return out

    async def _save_rest(self) -> None:
        """At shutdown: what is queued, in flight or waiting goes to disk (config hooks)."""
        rest = [*self._waiting, *self._inflight]
        self._waiting.clear()
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
            self._queue.task_done()
        keep = [d for d in rest if d.target.key]
        if not keep or self.pending_dir is None:
            return

        def save_all() -> None:
            for d in keep:
                self._save(d)

        await asyncio.to_thread(save_all)
        _log.info("webhook_pending_saved", deliveries=len(keep))

    def stats(self) -> dict[str, Any]:
        """The counters, for ``status`` and metrics."""
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "dropped": self.dropped,
            "pending": self.pending,
        }
