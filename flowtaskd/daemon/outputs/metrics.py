"""Prometheus metrics: run and step figures from the event bus, daemon state read on scrape.

Off by default; ``metrics.listen: 127.0.0.1:9464`` turns it on. :class:`DaemonMetrics` keeps
its own :class:`~prometheus_client.CollectorRegistry` (never the process-global one, so
several can live in one process) and serves it with prometheus-client's own threaded
HTTP server (``start_http_server``), started in :meth:`DaemonMetrics.serve` and shut down
when ``stop`` is set. Scrapes run in that server's thread; everything they read is either
a prometheus-client metric (thread-safe) or a snapshot the daemon swaps atomically.

Counted from events, by cheap synchronous receivers (a dict insert or pop per event):

* ``flowtaskd_runs_total{task,status}`` -- on ``completed`` (status done/failed/cancelled);
* ``flowtaskd_run_duration_seconds{task}`` -- ``start`` to ``completed``;
* ``flowtaskd_step_duration_seconds{task,step,status}`` -- one observation per attempt,
  ``step_start`` to ``step_done`` / ``step_error`` / ``step_retry`` (keyed by run, step and
  group item; an attempt that never ends -- a cancelled run -- is forgotten at
  ``completed``); ``status`` is the attempt's (done, failed, timeout, cancelled);
* ``flowtaskd_step_attempts_total{task,step}`` and ``flowtaskd_step_retries_total{task,step}``;
* ``flowtaskd_runs_skipped_total{task,reason}`` -- ``run_skipped``, reason one of
  ``overlap``, ``queue_full``, ``paused``, ``stopping``, ``cancelled``, ``other``;
* ``flowtaskd_schedule_missed_total{task}`` -- fires dropped at start (``schedule_missed``);
* ``flowtaskd_last_success_timestamp_seconds{task}`` and ``flowtaskd_last_run_status{task,
  status}`` (1 for the last run's status, 0 for the others) -- for "has it run lately" alerts;

**Bounded labels** (:mod:`~flowtaskd.daemon.outputs.metric_labels`): ``task`` is the name of
a loaded task; a run of anything else -- a file dropped in an inbox, whose name may be made
up per file -- is labelled ``inbox:<inbox name>`` (or ``other``), and ``step`` is a step of
the loaded task or ``other``. So the series count follows the task folder, never the
traffic. ``flowtaskd_build_info{version,python}`` is 1; prometheus-client's standard
``process_*`` and ``python_*`` collectors are registered too.
* ``flowtaskd_queue_wait_seconds`` -- ``run_queued`` to ``start`` of the same ``run_id``;
* ``flowtaskd_schedule_lag_seconds`` -- fire time to ``start`` of runs with trigger
  ``schedule``. No event carries the fire time, so it is read from the run manager's active
  run (``runs.active[run_id].request.fire_time``) when the ``start`` event arrives; without
  a run manager nothing is observed. Catch-up runs are left out (their lag is the downtime).

Read on each scrape: ``flowtaskd_active_runs`` (runs between ``start`` and ``completed``),
``flowtaskd_queued_runs``, ``flowtaskd_tasks_loaded`` and ``flowtaskd_tasks_invalid``
(files with problems) from the daemon's run manager and library;
``flowtaskd_webhook_deliveries_total{result}`` (delivered, failed, retried, dropped) from
the webhook dispatcher; ``flowtaskd_events_dropped_total`` and
``flowtaskd_event_receiver_errors_total`` from the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Protocol

import structlog
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from flowtaskd.daemon.outputs.metric_labels import LabelBounds, build_info, skip_reason
from flowtaskd.engine.events import EventBus, Payload

__all__ = ["DaemonMetrics", "LibraryView", "RunsView", "WebhookStats"]

_log = structlog.get_logger("flowtaskd.metrics")

_PENDING_MAX = 100_000  # open start times kept per kind; the oldest go first beyond it
_RUN_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)
_RUN_STATUSES = ("done", "failed", "cancelled")


class LibraryView(Protocol):
    """What metrics read from the task library (``daemon.library``)."""

    @property
    def tasks(self) -> Mapping[str, object]: ...

    @property
    def invalid(self) -> Mapping[Any, object]: ...


class RunsView(Protocol):
    """What metrics read from the run manager (``daemon.runs``)."""

    @property
    def active(self) -> Mapping[str, Any]: ...

    @property
    def queue(self) -> Collection[Any]: ...


class WebhookStats(Protocol):
    """The webhook dispatcher's counters."""

    def stats(self) -> Mapping[str, int]: ...


class _Pending:
    """Start timestamps by key, bounded: a start whose end never comes cannot pile up."""

    def __init__(self) -> None:
        self._data: dict[Any, float] = {}

    def __len__(self) -> int:
        return len(self._data)

    def put(self, key: Any, ts: float) -> None:
        self._data[key] = ts
        if len(self._data) > _PENDING_MAX:
            del self._data[next(iter(self._data))]

    def pop(self, key: Any) -> float | None:
        return self._data.pop(key, None)

    def drop_run(self, run_id: object) -> None:
        for key in [k for k in self._data if k[0] == run_id]:
            del self._data[key]


class _StateCollector:
    """Gauges and counters computed from the daemon's state at scrape time."""

    def __init__(self, owner: DaemonMetrics) -> None:
        self.m = owner

    def describe(self) -> list[Metric]:
        return []  # names are dynamic enough; the registry need not check them up front

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield GaugeMetricFamily(
            "flowtaskd_active_runs", "Runs started and not yet completed.", value=len(m._running)
        )
        if m.runs is not None:
            yield GaugeMetricFamily(
                "flowtaskd_queued_runs", "Runs waiting to start.", value=len(m.runs.queue)
            )
        if m.library is not None:
            yield GaugeMetricFamily(
                "flowtaskd_tasks_loaded", "Tasks loaded.", value=len(m.library.tasks)
            )
            yield GaugeMetricFamily(
                "flowtaskd_tasks_invalid",
                "Task files with problems.",
                value=len(m.library.invalid),
            )
        if m.webhooks is not None:
            family = CounterMetricFamily(
                "flowtaskd_webhook_deliveries",
                "Webhook deliveries by result (retried counts retry attempts).",
                labels=["result"],
            )
            stats = m.webhooks.stats()
            for result in ("delivered", "failed", "retried", "dropped"):
                family.add_metric([result], stats.get(result, 0))
            yield family
        yield CounterMetricFamily(
            "flowtaskd_events_dropped",
            "Events not delivered to an async receiver whose queue was full.",
            value=m.bus.dropped,
        )
        yield CounterMetricFamily(
            "flowtaskd_event_receiver_errors",
            "Event receiver calls that raised.",
            value=m.bus.receiver_errors,
        )


class DaemonMetrics:
    """Prometheus metrics for one daemon; an extension when ``listen`` is set.

    Connects its receivers to ``bus`` at construction. ``library``, ``runs`` and
    ``webhooks`` are optional views of the daemon's parts; the gauges they feed are left
    out without them.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        listen: tuple[str, int] | None = None,
        library: LibraryView | None = None,
        runs: RunsView | None = None,
        webhooks: WebhookStats | None = None,
    ) -> None:
        self.bus, self.listen = bus, listen
        self.library, self.runs, self.webhooks = library, runs, webhooks
        self.registry = CollectorRegistry()
        self.port: int | None = None
        """The port actually bound (``listen`` may ask for 0), once serving."""
        r = self.registry
        self.runs_total = Counter(
            "flowtaskd_runs", "Runs completed, by task and status.", ["task", "status"], registry=r
        )
        self.run_duration = Histogram(
            "flowtaskd_run_duration_seconds",
            "Run duration, start to completed.",
            ["task"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "flowtaskd_step_duration_seconds",
            "Step attempt duration, by the attempt's status.",
            ["task", "step", "status"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.step_attempts = Counter(
            "flowtaskd_step_attempts", "Step attempts started.", ["task", "step"], registry=r
        )
        self.step_retries = Counter(
            "flowtaskd_step_retries", "Step attempts retried.", ["task", "step"], registry=r
        )
        self.runs_skipped = Counter(
            "flowtaskd_runs_skipped",
            "Runs not made, by reason.",
            ["task", "reason"],
            registry=r,
        )
        self.schedule_missed = Counter(
            "flowtaskd_schedule_missed",
            "Schedule fires missed while the daemon was down and not caught up.",
            ["task"],
            registry=r,
        )
        self.last_success = Gauge(
            "flowtaskd_last_success_timestamp_seconds",
            "When the task's last successful run ended (Unix time).",
            ["task"],
            registry=r,
        )
        self.last_status = Gauge(
            "flowtaskd_last_run_status",
            "1 for the status of the task's last run, 0 for the others.",
            ["task", "status"],
            registry=r,
        )
        info = build_info()
        Gauge(
            "flowtaskd_build_info",
            "flowtaskd's version and Python's; always 1.",
            list(info),
            registry=r,
        ).labels(**info).set(1)
        ProcessCollector(registry=r)
        r.register(PLATFORM_COLLECTOR)
        r.register(GC_COLLECTOR)
        self.labels = LabelBounds(library)
        self.queue_wait = Histogram(
            "flowtaskd_queue_wait_seconds",
            "Time runs waited in the queue.",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.schedule_lag = Histogram(
            "flowtaskd_schedule_lag_seconds",
            "Scheduled fire time to run start.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(self))
        self._running: dict[str, float] = {}  # run_id -> start ts
        self._queued = _Pending()  # (run_id,) -> run_queued ts
        self._run_labels: dict[str, str] = {}  # run_id -> its task label, start to completed
        self._steps = _Pending()  # (run_id, step, item) -> step_start ts
        receivers: dict[str, Callable[[Payload], None]] = {
            "run_queued": self._on_queued,
            "start": self._on_start,
            "completed": self._on_completed,
            "step_start": self._on_step_start,
            "step_done": self._on_step_end,
            "step_error": self._on_step_end,
            "step_retry": self._on_step_end,
            "run_skipped": self._on_skipped,
            "schedule_missed": self._on_missed,
        }
        self._disconnects = [bus.connect(name, fn) for name, fn in receivers.items()]

    def close(self) -> None:
        """Disconnect from the bus (idempotent)."""
        for disconnect in self._disconnects:
            disconnect()
        self._disconnects = []

    # -- receivers: sync and cheap --------------------------------------------------------

    def _on_queued(self, p: Payload) -> None:
        if isinstance(run_id := p.get("run_id"), str):
            self._queued.put((run_id,), float(p["ts"]))
            self.labels.note_inbox(run_id, p.get("inbox"))

    def _task(self, p: Payload) -> str:
        run_id = p.get("run_id")
        label = self._run_labels.get(run_id) if isinstance(run_id, str) else None
        return label if label is not None else self.labels.task(p.get("task"), run_id)

    def _on_start(self, p: Payload) -> None:
        run_id, ts = p.get("run_id"), float(p["ts"])
        if not isinstance(run_id, str):
            return
        self._running[run_id] = ts
        self._run_labels[run_id] = self.labels.task(p.get("task"), run_id)
        if len(self._run_labels) > _PENDING_MAX:
            del self._run_labels[next(iter(self._run_labels))]
        queued = self._queued.pop((run_id,))
        if queued is not None:
            self.queue_wait.observe(max(0.0, ts - queued))
        if p.get("trigger") == "schedule" and self.runs is not None:
            active = self.runs.active.get(run_id)
            fire_time = getattr(getattr(active, "request", None), "fire_time", None)
            if isinstance(fire_time, int | float):
                self.schedule_lag.observe(max(0.0, ts - fire_time))

    def _on_completed(self, p: Payload) -> None:
        run_id, task, status = p.get("run_id"), self._task(p), str(p.get("status"))
        self.runs_total.labels(task, status).inc()
        started = self._running.pop(run_id, None) if isinstance(run_id, str) else None
        if started is not None:
            self.run_duration.labels(task).observe(max(0.0, float(p["ts"]) - started))
        for known in _RUN_STATUSES:
            self.last_status.labels(task, known).set(1 if known == status else 0)
        if status == "done":
            self.last_success.labels(task).set(float(p["ts"]))
        self._steps.drop_run(run_id)
        if isinstance(run_id, str):
            self._run_labels.pop(run_id, None)
            self.labels.forget(run_id)

    def _on_step_start(self, p: Payload) -> None:
        self._steps.put((p.get("run_id"), p.get("step"), p.get("item")), float(p["ts"]))
        task = self._task(p)
        self.step_attempts.labels(task, self.labels.step(task, p.get("step"))).inc()

    def _on_step_end(self, p: Payload) -> None:
        started = self._steps.pop((p.get("run_id"), p.get("step"), p.get("item")))
        task = self._task(p)
        step = self.labels.step(task, p.get("step"))
        if p.get("event") == "step_retry":
            self.step_retries.labels(task, step).inc()
        if started is not None:
            status = str(p.get("status") or ("done" if p.get("event") == "step_done" else "failed"))
            self.step_duration.labels(task, step, status).observe(
                max(0.0, float(p["ts"]) - started)
            )

    def _on_skipped(self, p: Payload) -> None:
        run_id = p.get("run_id")
        self.runs_skipped.labels(self._task(p), skip_reason(p)).inc()
        if isinstance(run_id, str):
            self.labels.forget(run_id)
            self._queued.pop((run_id,))

    def _on_missed(self, p: Payload) -> None:
        missed = p.get("missed")
        if isinstance(missed, int) and missed > 0:
            self.schedule_missed.labels(self.labels.task(p.get("task"), None)).inc(missed)

    # -- the endpoint ---------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve ``/metrics`` on :attr:`listen` until ``stop`` is set (no-op without it)."""
        if self.listen is None:
            return
        host, port = self.listen
        try:
            server, thread = await asyncio.to_thread(
                start_http_server, port, host, registry=self.registry
            )
        except OSError as exc:
            _log.error("metrics_failed", listen=f"{host}:{port}", error=exc.strerror or str(exc))
            return
        self.port = int(server.server_port)
        _log.info("metrics_listening", host=host, port=self.port)
        try:
            await stop.wait()
        finally:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
            await asyncio.to_thread(thread.join, 5.0)
            self.port = None
