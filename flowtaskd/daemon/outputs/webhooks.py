"""Webhooks: lifecycle events POSTed as JSON to configured URLs, off the run's path.

Each ``webhooks:`` entry (:class:`~flowtaskd.daemon.config.load.WebhookConfig`) names a ``url``
and optionally the ``events`` and ``tasks`` it wants (``None``: all; an event without a
``task`` field -- ``daemon_ready`` -- never matches a ``tasks`` filter). A matching event is
POSTed with its payload as the JSON body (the same encoding as the task-file ``WebHook``
action) and these headers:

* ``X-Flowtaskd-Event: <name>`` and ``X-Flowtaskd-Delivery: <id>`` (the same id on every
  retry of one delivery, so a receiver can deduplicate);
* ``X-Flowtaskd-Signature: sha256=<hex HMAC-SHA256 of the exact body>`` when ``secret`` is
  set (:func:`~flowtaskd.engine.actions.sign_body`);
* ``User-Agent: flowtaskd/<version>`` and ``Content-Type: application/json``.

**A run never waits for a webhook.** The bus receiver is synchronous and only appends to a
bounded queue; when the queue is full the delivery is dropped, counted in :attr:`dropped`
and logged once per burst (``webhook_queue_full``, then ``webhook_queue_recovered``). A few
worker coroutines share one :class:`httpx.AsyncClient`. Connection errors, timeouts
(``timeout`` bounds the whole request), 5xx and 429 are retried ``retries`` times with
exponential backoff (0.5 s, 1 s, 2 s, ... capped at 30 s); any other status below 200 or
from 300 up is a failure at once. A delivery given up is logged as one ``webhook_failed``
line (the URL without its userinfo and query, never the secret) and counted in
:attr:`failed`. Workers run concurrently, so deliveries may arrive out of order: use the
payload's ``ts``.

**Shutdown.** :meth:`WebhookDispatcher.serve` runs until ``stop`` is set, then delivers what
is queued for ``grace`` seconds and cancels the rest. Events keep being queued until the
dispatcher is :meth:`closed <WebhookDispatcher.close>`, so events emitted while it drains
still go out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from flowtaskd.daemon.config.load import WebhookConfig
from flowtaskd.engine.actions import sign_body
from flowtaskd.engine.events import CATCH_ALL, EventBus, Payload

__all__ = ["WebhookDispatcher", "backoff", "user_agent"]

_log = structlog.get_logger("flowtaskd.webhooks")

_BACKOFF_BASE = 0.5
_BACKOFF_FACTOR = 2.0
_BACKOFF_CAP = 30.0
_QUIET = ("httpx", "httpcore")

Sleep = Callable[[float], Awaitable[None]]


def user_agent() -> str:
    """``flowtaskd/<installed version>``."""
    try:
        version = metadata.version("flowtaskd")
    except metadata.PackageNotFoundError:  # running from a plain checkout
        version = "0"
    return f"flowtaskd/{version}"


def _display_url(url: str) -> str:
    """The URL for a log line: userinfo and query (tokens live there) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else ""))


def backoff(retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): 0.5, 1, 2, ... <= 30."""
    return min(_BACKOFF_BASE * _BACKOFF_FACTOR ** (retry - 1), _BACKOFF_CAP)


@dataclass(frozen=True, slots=True)
class _Hook:
    config: WebhookConfig
    events: frozenset[str] | None
    tasks: frozenset[str] | None
    shown: str  # the URL as logs show it

    def wants(self, payload: Payload) -> bool:
        if self.events is not None and payload.get("event") not in self.events:
            return False
        return self.tasks is None or payload.get("task") in self.tasks


@dataclass(frozen=True, slots=True)
class _Delivery:
    hook: _Hook
    payload: Payload


class _Retry(Exception):
    """A failed attempt that may be retried (connection error, timeout, 5xx, 429)."""


class _GiveUp(Exception):
    """A failed attempt that is not retried (a 4xx other than 429, a redirect)."""


class WebhookDispatcher:
    """Delivers matching bus events to the configured webhooks (a daemon extension).

    Connects to ``bus`` at construction, so events emitted before :meth:`serve` starts wait
    in the queue. ``sleep`` is the backoff wait (tests inject one that returns at once);
    ``transport`` is handed to httpx (tests and benchmarks only).
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError("queue_size and workers must be >= 1")
        self._hooks = tuple(
            _Hook(
                h,
                frozenset(h.events) if h.events is not None else None,
                frozenset(h.tasks) if h.tasks is not None else None,
                _display_url(h.url),
            )
            for h in hooks
        )
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue(maxsize=queue_size)
        self._workers = workers
        self.grace = grace
        self._sleep = sleep
        self._transport = transport
        self._user_agent = user_agent()
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
        """Deliveries waiting in the queue."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stop queueing new events (idempotent); what is queued stays queued."""
        if self._disconnect is not None:
            self._disconnect()
            self._disconnect = None

    # -- the bus side: sync, cheap, never blocks ------------------------------------------

    def _receive(self, payload: Payload) -> None:
        for hook in self._hooks:
            if not hook.wants(payload):
                continue
            try:
                self._queue.put_nowait(_Delivery(hook, payload))
            except asyncio.QueueFull:
                self.dropped += 1
                self._burst += 1
                if self._burst == 1:
                    _log.warning(
                        "webhook_queue_full",
                        queue_size=self._queue.maxsize,
                        signal=payload.get("event"),
                    )
                continue
            if self._burst:
                _log.info("webhook_queue_recovered", dropped=self._burst)
                self._burst = 0

    # -- the delivery side ---------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then drain for :attr:`grace` seconds and return."""
        for name in _QUIET:  # httpx logs each request at INFO with its URL (tokens and all)
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            async with (
                httpx.AsyncClient(
                    transport=self._transport,
                    headers={"User-Agent": self._user_agent},
                    follow_redirects=False,
                ) as client,
                asyncio.TaskGroup() as tg,
            ):
                workers = [
                    tg.create_task(self._work(client), name=f"webhook-worker-{i}")
                    for i in range(self._workers)
                ]
                await stop.wait()
                await self._drain()
                for worker in workers:
                    worker.cancel()
        finally:
            self.close()

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self.grace):
                await self._queue.join()
        except TimeoutError:
            _log.warning("webhook_drain_timeout", grace=self.grace, undelivered=self._queue.qsize())

    async def _work(self, client: httpx.AsyncClient) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(client, delivery)
            except Exception as exc:  # a bug here must not take the daemon down
                self._give_up(delivery.hook, delivery.payload, 0, f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, delivery: _Delivery) -> None:
        hook, payload = delivery.hook, delivery.payload
        cfg = hook.config
        body = json.dumps(payload, default=str, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Flowtaskd-Event": str(payload.get("event")),
            "X-Flowtaskd-Delivery": uuid.uuid4().hex,
        }
        if cfg.secret:
            headers["X-Flowtaskd-Signature"] = sign_body(cfg.secret, body)
        attempt = 1
        while True:
            try:
                await self._attempt(client, cfg, body, headers)
            except _Retry as exc:
                if attempt > cfg.retries:
                    self._give_up(hook, payload, attempt, str(exc))
                    return
                self.retried += 1
                await self._sleep(backoff(attempt))
                attempt += 1
            except _GiveUp as exc:
                self._give_up(hook, payload, attempt, str(exc))
                return
            else:
                self.delivered += 1
                return

    async def _attempt(
        self, client: httpx.AsyncClient, cfg: WebhookConfig, body: bytes, headers: dict[str, str]
    ) -> None:
        try:
            async with asyncio.timeout(cfg.timeout):
                response = await client.post(
                    cfg.url, content=body, headers=headers, timeout=cfg.timeout
                )
        except (TimeoutError, httpx.TimeoutException):
            raise _Retry(f"no answer within {cfg.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {_safe(str(exc), cfg.url)}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status >= 500 or status == 429:
            raise _Retry(f"HTTP {status}")
        raise _GiveUp(f"HTTP {status}")

    def _give_up(self, hook: _Hook, payload: Payload, attempts: int, error: str) -> None:
        self.failed += 1
        _log.warning(
            "webhook_failed",
            url=hook.shown,
            signal=payload.get("event"),
            task=payload.get("task"),
            run_id=payload.get("run_id"),
            attempts=attempts,
            error=error,
        )

    def stats(self) -> dict[str, Any]:
        """The counters, for ``status`` and metrics."""
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "dropped": self.dropped,
            "pending": self.pending,
        }


def _safe(text: str, url: str) -> str:
    """An error text with the raw URL (userinfo, query) replaced by its display form."""
    return text.replace(url, _display_url(url)) if url else text
