"""The lifecycle event bus: named events, safe dispatch to sync and async receivers.

A run flows one way -- definition -> run -> step results -> events -- and everything that
reacts to a run (logs, the history store, the control stream, webhooks, metrics, plugins)
is a *receiver* on an :class:`EventBus`. Receivers never call back into the run, and a
receiver can never break, stall or slow down the run or another receiver:

* **Names are fixed** (:mod:`flowtaskd.core.events`). An unknown name is a programming
  error: :meth:`EventBus.connect` and :meth:`EventBus.emit` raise :class:`ValueError`.
* **Payloads are plain JSON-serialisable dicts.** ``emit`` stamps ``event`` (the name) and
  ``ts`` (float epoch seconds from the bus's injected clock) when missing, never mutates the
  caller's dict, and hands each receiver its own shallow copy (treat nested values as
  read-only; a receiver connected with ``copy=False`` promises not to change it).
* **Sync receivers** run inline inside ``emit``, each isolated: an exception is logged as
  ``receiver_failed`` and counted in :attr:`EventBus.receiver_errors`; the others still run.
* **Async receivers** (``async def`` functions, or objects with an ``async def __call__``)
  each get their own bounded queue drained by their own consumer task, so ``emit`` never
  awaits. Per-receiver order is preserved. When a receiver's queue is full the event is
  dropped *for that receiver only*, counted in :attr:`EventBus.dropped`, and logged once per
  burst (``receiver_queue_full``, then ``receiver_queue_recovered`` with the burst's count).
* **The bus owns the consumer tasks.** They run between ``await bus.start()`` and
  ``await bus.aclose(timeout)`` (or ``async with bus:``). Events emitted to async receivers
  before ``start`` (or after ``aclose``) wait in their queues and are delivered once the bus
  is started; nothing is created lazily, nothing is fire-and-forget. ``aclose`` drains the
  queues for up to ``timeout`` seconds, then cancels and awaits the consumers.
* **Threads.** While the bus is started, ``emit`` called from another thread is handed to
  the loop thread (``call_soon_threadsafe``): receivers always run on the loop thread.

Each bus has its own blinker ``Namespace`` (never blinker's global one), so buses do not
leak receivers into each other. Receivers are held strongly: a lambda stays connected until
its disconnect function is called.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import cast

import structlog
from blinker import ANY, NamedSignal, Namespace

from flowtaskd.core.events import (
    ALL_EVENTS,
    CATCH_ALL,
    DAEMON_EVENTS,
    STEP_EVENTS,
    TASK_EVENTS,
    UPSTREAM_EVENTS,
    Payload,
    Receiver,
)
from flowtaskd.core.events import unknown_event as _unknown

__all__ = [
    "ALL_EVENTS",
    "CATCH_ALL",
    "DAEMON_EVENTS",
    "STEP_EVENTS",
    "TASK_EVENTS",
    "UPSTREAM_EVENTS",
    "EventBus",
    "Payload",
    "Receiver",
]

_MAX_ROUTES = 4096  # (event, task) routes remembered before starting over
_DEFAULT_QUEUE_SIZE = 1000
_log = structlog.get_logger("flowtaskd.engine.events")


def _describe(receiver: object) -> str:
    name = getattr(receiver, "__qualname__", None) or type(receiver).__qualname__
    module = getattr(receiver, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _is_async(receiver: object) -> bool:
    if inspect.iscoroutinefunction(receiver):
        return True
    call = getattr(receiver, "__call__", None)  # noqa: B004 - we need the method itself
    return call is not None and inspect.iscoroutinefunction(call)


class _Subscription:
    """One ``connect`` call: the receiver, its filter and, if async, its queue and consumer."""

    def __init__(
        self,
        bus: EventBus,
        receiver: Receiver,
        names: tuple[str, ...],
        task: str | None,
        queue_size: int,
        copy: bool = True,
    ) -> None:
        self.bus = bus
        self.copy = copy
        self.receiver = receiver
        self.names = names
        self.task = task
        self.label = _describe(receiver)
        self.is_async = _is_async(receiver)
        self.queue: asyncio.Queue[Payload] | None = (
            asyncio.Queue(maxsize=queue_size) if self.is_async else None
        )
        self.consumer: asyncio.Task[None] | None = None
        self.burst_dropped = 0
        self.connected = True

    def __call__(self, sender: object, /, *, payload: Payload) -> None:
        """The blinker receiver: never raises (except BaseException), never awaits."""
        if not self.connected:  # disconnected after the event was routed
            return
        own = dict(payload) if self.copy else payload
        if self.queue is None:
            self.bus._call_sync(self, own)
        else:
            self.bus._enqueue(self, self.queue, own)


class EventBus:
    """Named lifecycle events dispatched to strongly held, isolated receivers.

    ``clock`` stamps ``ts`` on payloads; ``queue_size`` bounds each async receiver's queue.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        queue_size: int = _DEFAULT_QUEUE_SIZE,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._clock = clock
        self._queue_size = queue_size
        self._namespace = Namespace()
        self._signals: dict[str, NamedSignal] = {
            name: self._namespace.signal(name) for name in (*ALL_EVENTS, CATCH_ALL)
        }
        self._catch_all = self._signals[CATCH_ALL]
        # (event, task) -> the receivers blinker would call: worked out once, forgotten at
        # every connect and disconnect (the version tells a route computed meanwhile)
        self._routes: dict[tuple[str, str | None], tuple[_Subscription, ...]] = {}
        self._version = 0
        self._subs: list[_Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._receiver_errors = 0
        self._dropped = 0

    # -- counters -------------------------------------------------------------------------

    @property
    def receiver_errors(self) -> int:
        """Receiver calls that raised (sync and async), since the bus was created."""
        return self._receiver_errors

    @property
    def dropped(self) -> int:
        """Events not delivered to an async receiver because its queue was full."""
        return self._dropped

    @property
    def started(self) -> bool:
        return self._loop is not None

    # -- subscribing ----------------------------------------------------------------------

    def connect(
        self,
        event: str | Iterable[str],
        receiver: Receiver,
        *,
        task: str | None = None,
        queue_size: int | None = None,
        copy: bool = True,
    ) -> Callable[[], None]:
        """Call ``receiver(payload)`` for ``event`` (a name, several names, or ``"*"``).

        With ``task=`` only payloads whose ``task`` equals it are delivered. Each receiver
        gets its own copy of the payload, so one that changes it changes nothing for the
        others; ``copy=False`` is for a receiver that never changes it (saves a copy per
        event). Returns a function that disconnects the receiver (idempotent); an async
        receiver's pending events are discarded when it is disconnected.
        """
        names = (event,) if isinstance(event, str) else tuple(dict.fromkeys(event))
        if not names:
            raise ValueError("connect() needs at least one event name")
        for name in names:
            if name not in self._signals:
                raise _unknown(name)
        if not callable(receiver):
            raise TypeError(f"receiver must be callable, got {type(receiver).__name__}")
        size = self._queue_size if queue_size is None else queue_size
        if size < 1:
            raise ValueError(f"queue_size must be >= 1, got {size}")
        sub = _Subscription(self, receiver, names, task, size, copy)
        sender = ANY if task is None else task
        for name in names:
            self._signals[name].connect(sub, sender=sender, weak=False)
        self._subs.append(sub)
        self._forget_routes()
        if sub.is_async and self._loop is not None:
            if threading.get_ident() == self._loop_thread:
                self._spawn(sub)
            else:
                self._loop.call_soon_threadsafe(self._spawn, sub)
        return lambda: self._disconnect(sub)

    def has_receivers(self, event: str) -> bool:
        """Whether emitting ``event`` would reach anyone (to skip building costly payloads)."""
        if event not in self._signals:
            raise _unknown(event)
        return bool(self._signals[event].receivers or self._signals[CATCH_ALL].receivers)

    def _disconnect(self, sub: _Subscription) -> None:
        if not sub.connected:
            return
        sub.connected = False
        sender = ANY if sub.task is None else sub.task
        for name in sub.names:
            self._signals[name].disconnect(sub, sender=sender)
        self._subs.remove(sub)
        self._forget_routes()
        if sub.consumer is not None:
            # Still owned: it stays in self._tasks until done, and aclose() awaits it.
            if self._loop is not None and threading.get_ident() != self._loop_thread:
                self._loop.call_soon_threadsafe(sub.consumer.cancel)
            else:
                sub.consumer.cancel()

    # -- emitting -------------------------------------------------------------------------

    def emit(self, event: str, payload: Payload) -> None:
        """Deliver ``payload`` (stamped with ``event`` and ``ts``) to every receiver.

        Never raises because of a receiver and never waits for one. Raises ValueError for an
        unknown event name.
        """
        signal = self._signals.get(event)
        if signal is None or event == CATCH_ALL:
            raise _unknown(event)
        task = payload.get("task")
        sender = task if isinstance(task, str) else None
        route = self._route(event, signal, sender)
        if not route:
            return  # nobody listens: nothing to stamp or send
        stamped: Payload = {"event": event, **payload}
        if "ts" not in stamped:
            stamped["ts"] = self._clock()
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            try:
                loop.call_soon_threadsafe(self._dispatch, route, sender, stamped)
            except RuntimeError:  # the loop closed under us
                _log.warning("event_lost", signal=event, reason="event loop closed")
            return
        self._dispatch(route, sender, stamped)

    def _route(
        self, event: str, signal: NamedSignal, sender: str | None
    ) -> tuple[_Subscription, ...]:
        """The receivers of ``event`` from ``sender``, as blinker keeps them (by sender)."""
        key = (event, sender)
        route = self._routes.get(key)
        if route is None:
            version = self._version
            found = (*signal.receivers_for(sender), *self._catch_all.receivers_for(sender))
            route = cast(tuple[_Subscription, ...], found)  # only we connect to our signals
            if version == self._version:  # nobody connected or disconnected meanwhile
                if len(self._routes) >= _MAX_ROUTES:
                    self._routes.clear()
                self._routes[key] = route
        return route

    def _forget_routes(self) -> None:
        self._version += 1
        self._routes = {}

    @staticmethod
    def _dispatch(route: tuple[_Subscription, ...], sender: str | None, stamped: Payload) -> None:
        # we call the receivers ourselves: they are all our sync _Subscription objects, and
        # blinker's send() would ask inspect, per receiver and event, whether each is a
        # coroutine function
        for sub in route:
            sub(sender, payload=stamped)

    def _call_sync(self, sub: _Subscription, payload: Payload) -> None:
        try:
            result = sub.receiver(payload)
        except Exception as exc:
            self._failed(sub, payload, exc)
            return
        if result is not None and inspect.iscoroutine(result):  # a sync wrapper of an async one
            result.close()
            self._failed(sub, payload, TypeError("sync receiver returned a coroutine"))

    def _failed(self, sub: _Subscription, payload: Payload, exc: BaseException) -> None:
        self._receiver_errors += 1
        _log.error(
            "receiver_failed",
            receiver=sub.label,
            signal=payload.get("event"),
            task=payload.get("task"),
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )

    def _enqueue(self, sub: _Subscription, queue: asyncio.Queue[Payload], payload: Payload) -> None:
        try:
            queue.put_nowait(payload)
        except asyncio.QueueFull:
            self._dropped += 1
            sub.burst_dropped += 1
            if sub.burst_dropped == 1:
                _log.warning(
                    "receiver_queue_full",
                    receiver=sub.label,
                    queue_size=queue.maxsize,
                    signal=payload.get("event"),
                )
            return
        if sub.burst_dropped:
            _log.info("receiver_queue_recovered", receiver=sub.label, dropped=sub.burst_dropped)
            sub.burst_dropped = 0

    # -- async lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start one consumer task per async receiver on the running loop (idempotent)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            raise RuntimeError("EventBus is already started on another event loop")
        self._loop = loop
        self._loop_thread = threading.get_ident()
        for sub in self._subs:
            self._spawn(sub)

    def _spawn(self, sub: _Subscription) -> None:
        if self._loop is None or not sub.connected or not sub.is_async or sub.consumer:
            return
        task = self._loop.create_task(self._consume(sub), name=f"events:{sub.label}")
        sub.consumer = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, sub: _Subscription) -> None:
        queue = sub.queue
        assert queue is not None
        while True:
            payload = await queue.get()
            try:
                await cast(Awaitable[object], sub.receiver(payload))
            except Exception as exc:
                self._failed(sub, payload, exc)
            finally:
                queue.task_done()

    # The timeout bounds only the drain phase; cancelling always follows, which a caller's
    # asyncio.timeout() cannot express.
    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Deliver what is queued for up to ``timeout`` seconds, then cancel the consumers.

        Sync receivers keep working after ``aclose``; async deliveries queue again until the
        next ``start``.
        """
        if self._loop is None:
            return
        pending = [s.queue for s in self._subs if s.queue is not None and s.consumer]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(q.join() for q in pending))
        except TimeoutError:
            _log.warning(
                "events_drain_timeout",
                timeout=timeout,
                undelivered=sum(q.qsize() for q in pending),
            )
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sub in self._subs:
                sub.consumer = None
            self._loop = None
            self._loop_thread = None

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
