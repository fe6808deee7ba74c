"""The composition root: the one place that knows every part of the daemon.

Start: lock the state dir, open the history (mark crashed runs ``interrupted``), load the
library, start schedules (with catch-up), re-run what the spool kept from a crash, then
watch folders and serve the control socket. Stop, in order: intake (watchers, scheduler)
-> running steps drain for a grace period -> the rest are cancelled (process groups get
SIGTERM, then SIGKILL) -> the history is flushed -> exit. A second signal forces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from flowtaskd.daemon.outputs.metrics import DaemonMetrics
    from flowtaskd.daemon.outputs.webhooks import WebhookDispatcher
    from flowtaskd.daemon.web.server import WebServer

from flowtaskd.clock import Clock, SystemClock
from flowtaskd.components.context import Executor
from flowtaskd.daemon.config.load import DaemonConfig, load_config
from flowtaskd.daemon.control.server import ControlServer
from flowtaskd.daemon.faults import Faults, supervise
from flowtaskd.daemon.intake.dispatch import Intake
from flowtaskd.daemon.intake.library import Library, LibraryChange
from flowtaskd.daemon.ops.backfill import Backfills
from flowtaskd.daemon.outputs.subscribers import load_subscribers
from flowtaskd.daemon.runs.manager import RunManager
from flowtaskd.daemon.runs.records import RunStore
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.daemon.schedule.scheduler import ScheduleEntry, Scheduler
from flowtaskd.daemon.statelock import StateLock
from flowtaskd.daemon.systemd import SYSTEMD_ENV_VARS, Notifier, supervise_watchdog
from flowtaskd.engine.events import EventBus
from flowtaskd.errors import DaemonError, FlowtaskError
from flowtaskd.execution.local import LocalExecutor
from flowtaskd.logs import GLOBAL_MASKER, configure_logging

__all__ = ["Daemon"]

_log = structlog.get_logger("flowtaskd.daemon")


class Daemon:
    def __init__(
        self, config: DaemonConfig, *, config_path: Path | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock: Clock = clock or SystemClock()
        self.bus = EventBus(clock=self.clock.time)
        self.faults = Faults(self.bus.emit)
        state = config.state_dir
        self.store: RunStore = HistoryStore(config.history.path or state / "history.db")
        self.executor: Executor = _executor(config)
        self.library = Library(config.tasks, trust_all=config.security.trust_all_files)
        self.runs = RunManager(
            store=self.store,
            bus=self.bus,
            executor=self.executor,
            clock=self.clock,
            log_root=state / "logs",
            max_runs=config.concurrency.max_runs,
            max_queued=config.concurrency.max_queued,
            kill_grace=config.kill_grace,
            python_allow=tuple(config.security.python_allow)
            if config.security.python_allow is not None
            else None,
            resolve_task=self.library.resolve,
        )
        self.scheduler = Scheduler(
            store=self.store, clock=self.clock, bus=self.bus, fire=self._fire
        )
        self.intake = Intake(self)
        self.backfills = Backfills(self.runs.submit, self.runs.cancel, self.intake.spawn)
        self.notifier = Notifier.from_env()
        self.started_at = self.clock.time()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._intake_stop = asyncio.Event()
        self._state_lock = StateLock(config.state_dir)
        self._signals = 0
        self.extensions: list[Any] = []  # control socket, webhooks, metrics (see events issue)
        control = ControlServer(self)
        self.extensions.append(control)
        self.subscriber_errors: list[str] = []  # plugin subscribers: loaded at the top of _run
        # webhooks and metrics import httpx / prometheus_client: only when configured
        self.webhooks: WebhookDispatcher | None = None
        # webhook secrets are secrets: masked in every log line and event like task secrets
        for h in config.webhooks:
            GLOBAL_MASKER.update(h.secret if isinstance(h.secret, list) else [h.secret or ""])
        # always made (cheap: httpx is imported at the first delivery): the task files'
        # WebHook actions go through it too
        from flowtaskd.daemon.outputs.webhooks import WebhookDispatcher  # noqa: PLC0415

        self.webhooks = WebhookDispatcher(self.bus, config.webhooks, pending_dir=state / "webhooks")
        self.runs.webhooks = self.webhooks
        self.extensions.append(self.webhooks)
        self.metrics: DaemonMetrics | None = None
        if config.metrics.address is not None:
            from flowtaskd.daemon.outputs.metrics import DaemonMetrics  # noqa: PLC0415

            self.metrics = DaemonMetrics(
                self.bus,
                listen=config.metrics.address,
                library=self.library,
                runs=self.runs,
                webhooks=self.webhooks,
            )
            self.extensions.append(self.metrics)
        # the HTTP API and dashboard import aiohttp and jinja2: only when enabled
        self.web: WebServer | None = None
        if config.web.enabled:
            from flowtaskd.daemon.web.server import WebServer  # noqa: PLC0415

            self.web = WebServer(self, control.requests)
            self.extensions.append(self.web)

    # -- process life -----------------------------------------------------------------
    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            _log.warning("daemon_forced_stop")
            self._force.set()
        self._stop.set()

    async def run(self) -> int:
        configure_logging(self.config.log.format, self.config.log.level)
        # apscheduler logs every job run at INFO; our own run events say more
        # httpx logs every request with its full URL (tokens included); distributed is chatty
        for name in ("apscheduler", "httpx", "httpcore", "distributed"):
            logging.getLogger(name).setLevel(logging.WARNING)
        raise_fd_limit()
        self._state_lock.acquire()
        try:
            await self._run()
        finally:
            self._state_lock.release()
        return 0

    async def _run(self) -> None:
        # plugin subscribers: after logging is configured, before the first event is emitted
        self.subscriber_errors = load_subscribers(self.config.subscribers, self.bus)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        await self.store.open()
        try:
            start = getattr(self.executor, "start", None)
            if start is not None:
                await start()
            async with self.bus:
                await self._serve()
        finally:
            await self.executor.aclose()
            await self.store.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _serve(self) -> None:
        cfg = self.config
        interrupted = await self.store.mark_interrupted(self.clock.time())
        for run in interrupted:
            _log.warning(
                "run_interrupted", task=run.task, run_id=run.run_id, inbox_file=run.inbox_file
            )
        # Loading allocates what it keeps (a large library is millions of objects): cyclic
        # collections during it would walk them again and again and free next to nothing.
        gc.disable()
        try:
            self._apply_library(await asyncio.to_thread(self.library.scan), startup=True)
            self._set_config_schedules()
            self.scheduler.start()
        finally:
            gc.enable()
        await self.scheduler.record_catchups()
        runs_stop = asyncio.Event()
        ext_stop = asyncio.Event()  # extensions outlive the drain: they report its last events
        inboxes_ready = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                self.intake.task_group = tg
                tg.create_task(self.runs.run(runs_stop), name="runs")
                await self.intake.recover()
                stop = self._intake_stop
                tg.create_task(
                    supervise(
                        "library_watch",
                        lambda: self.library.watch(stop, self._apply_library),
                        stop,
                        self.faults,
                    ),
                    name="library",
                )
                tg.create_task(
                    supervise(
                        "inbox_watch",
                        lambda: self.intake.watch(stop, inboxes_ready),
                        stop,
                        self.faults,
                    ),
                    name="inboxes",
                )
                tg.create_task(
                    supervise("housekeeping", lambda: self._housekeeping(stop), stop, self.faults),
                    name="housekeeping",
                )
                if self.notifier.watchdog_interval:
                    tg.create_task(
                        supervise_watchdog(self.notifier, self._intake_stop), name="watchdog"
                    )
                for ext in self.extensions:
                    tg.create_task(ext.serve(ext_stop), name=type(ext).__name__)
                with contextlib.suppress(TimeoutError):  # ready = files dropped now are seen
                    async with asyncio.timeout(10):
                        await inboxes_ready.wait()
                self.notifier.ready(self._status_text())
                self.bus.emit(
                    "daemon_ready",
                    {
                        "tasks": len(self.library.tasks),
                        "pid": os.getpid(),
                        "state_dir": str(cfg.state_dir),
                    },
                )
                _log.info(
                    "daemon_ready", tasks=len(self.library.tasks), state_dir=str(cfg.state_dir)
                )
                await self._stop.wait()
                await self._shutdown(runs_stop)
                ext_stop.set()
        except* Exception as group:
            errors = list(_leaves(group))
            for exc in errors:
                if isinstance(exc, FlowtaskError):
                    _log.error("daemon_failed", error=str(exc))
                else:  # a bug, not a user mistake: keep the traceback in the log
                    _log.error("daemon_failed", error=repr(exc), exc_info=exc)
            raise DaemonError("; ".join(str(e) or repr(e) for e in errors)) from None

    async def _shutdown(self, runs_stop: asyncio.Event) -> None:
        self.notifier.stopping()
        self.bus.emit(
            "daemon_stopping", {"active": len(self.runs.active), "queued": len(self.runs.queue)}
        )
        _log.info("daemon_stopping", active=len(self.runs.active), grace=self.config.shutdown_grace)
        self._intake_stop.set()
        self.scheduler.shutdown()
        grace = 0.0 if self._force.is_set() else self.config.shutdown_grace
        drain = asyncio.ensure_future(self.runs.drain(grace))
        force = asyncio.ensure_future(self._force.wait())
        await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            await self.runs.drain(0.0)
        force.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await force
        runs_stop.set()

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        hist = self.config.history
        while not stop.is_set():
            with contextlib.suppress(FlowtaskError):
                await self.store.prune(
                    self.clock.time(), hist.retention_days, hist.max_runs_per_task
                )
            self.notifier.status(self._status_text())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(300):
                    await stop.wait()

    def _status_text(self) -> str:
        return (
            f"{len(self.library.tasks)} tasks, {len(self.runs.active)} running, "
            f"{len(self.runs.queue)} queued, {self.runs.completed} finished"
        )

    # -- reload -----------------------------------------------------------------------
    def request_reload(self) -> None:
        asyncio.get_running_loop().call_soon(lambda: self.intake.spawn(self.reload()))

    async def reload(self) -> dict[str, Any]:
        """SIGHUP: re-read the config file and rescan the task folders."""
        self.notifier.reloading()
        changed: list[str] = []
        if self.config_path is not None:
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
            except FlowtaskError as exc:
                _log.error("config_invalid", error=str(exc))
                self.notifier.ready(self._status_text())
                return {"ok": False, "error": str(exc)}
            restart_keys = (
                "state_dir",
                "tasks",
                "inboxes",
                "executor",
                "control",
                "metrics",
                "webhooks",
                "subscribers",
                "web",
            )
            for key in restart_keys:
                if getattr(new, key) != getattr(self.config, key):
                    changed.append(key)
            self.config = new
            configure_logging(new.log.format, new.log.level)
            self.runs.max_runs = new.concurrency.max_runs
            self._set_config_schedules()
            if changed:
                _log.warning("restart_needed", changed=changed)
        self._apply_library(await asyncio.to_thread(self.library.scan))
        self.notifier.ready(self._status_text())
        self.bus.emit(
            "daemon_reloaded", {"tasks": len(self.library.tasks), "restart_needed": changed}
        )
        _log.info("daemon_reloaded", tasks=len(self.library.tasks), restart_needed=changed)
        return {
            "ok": True,
            "tasks": len(self.library.tasks),
            "invalid": len(self.library.invalid),
            "restart_needed": changed,
        }

    # -- library and schedules --------------------------------------------------------
    def _apply_library(self, changes: list[LibraryChange], startup: bool = False) -> None:
        # at start one line sums the library up: 10,000 info lines would cost a second and
        # flood the journal; each task's line is there at debug level
        log_loaded = _log.debug if startup else _log.info
        for ch in changes:
            payload: dict[str, Any] = {"task": ch.name, "file": str(ch.path)}
            if ch.kind in ("loaded", "reloaded") and ch.task is not None:
                self.bus.emit("task_loaded", {**payload, "reloaded": ch.kind == "reloaded"})
                log_loaded(
                    "task_loaded", task=ch.name, file=str(ch.path), reloaded=ch.kind == "reloaded"
                )
                self._set_task_schedules(ch.task.name)
            elif ch.kind == "removed":
                self.bus.emit("task_removed", payload)
                _log.info("task_removed", task=ch.name, file=str(ch.path))
            elif ch.kind in ("invalid", "duplicate", "rejected"):
                problems = [p.to_dict() for p in ch.problems]
                event = "task_rejected" if ch.kind == "rejected" else "task_invalid"
                self.bus.emit(
                    event, {**payload, "problems": problems, "kept_last_good": ch.kept_last_good}
                )
                for p in ch.problems:
                    _log.warning(
                        event, file=str(ch.path), problem=str(p), kept_last_good=ch.kept_last_good
                    )
        # schedules of tasks no longer loaded (removed, renamed, rejected) go with them; only
        # a change names such a task, so a batch costs its changes, not the whole library
        gone = {ch.previous.name for ch in changes if ch.previous is not None}
        gone.update(ch.name for ch in changes if ch.kind == "removed" and ch.name)
        for name in sorted(gone):
            if self.library.get(name) is None:
                self.scheduler.replace(f"task:{name}", [])
        if startup:
            _log.info(
                "library_loaded", tasks=len(self.library.tasks), invalid=len(self.library.invalid)
            )

    def _set_task_schedules(self, name: str) -> None:
        loaded = self.library.get(name)
        if loaded is None:
            return
        header = loaded.pile.definition.header
        exprs = loaded.pile.definition.schedules
        entries = [
            ScheduleEntry(
                id=f"task:{name}:{i}",
                owner=f"task:{name}",
                task=name,
                cron=expr,
                timezone=header.timezone or "UTC",
            )
            for i, expr in enumerate(exprs)
        ]
        self.scheduler.replace(f"task:{name}", entries)

    def _set_config_schedules(self) -> None:
        entries = []
        for i, s in enumerate(self.config.schedules):
            command = (
                tuple(s.command)
                if isinstance(s.command, list)
                else (tuple(s.command.split()) if s.command else None)
            )
            entries.append(
                ScheduleEntry(
                    id=s.id or f"config:{i}",
                    owner="config",
                    task=s.task,
                    command=command,
                    cron=s.cron,
                    every=s.every,
                    timezone=s.timezone,
                    jitter=s.jitter,
                    params=dict(s.params),
                    catchup=s.catchup,
                    misfire_grace=s.misfire_grace,
                    overlap=s.overlap,
                    env=s.env,
                    cwd=str(s.cwd) if s.cwd else None,
                    timeout=s.timeout,
                )
            )
        self.scheduler.replace("config", entries)

    def _fire(self, entry: ScheduleEntry, fire_time: float, trigger: str) -> None:
        self.intake.fire_schedule(entry, fire_time, trigger)

    def trigger(self, name: str, params: Mapping[str, Any]) -> str | None:
        """Start a run of a loaded task now (the control socket's ``trigger``)."""
        return self.intake.trigger(name, params)


def raise_fd_limit() -> None:
    """Raise the soft limit on open descriptors to the hard one: every control connection,
    step pipe and watched folder holds one, and running out must be rare."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            _log.warning("fd_limit_unchanged", soft=soft, hard=hard, error=str(exc))


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    out: list[Exception] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


def _executor(config: DaemonConfig) -> Executor:
    ex = config.executor
    if ex.kind != "dask":
        return LocalExecutor()
    from flowtaskd.execution.dask import DaskExecutor  # noqa: PLC0415 - the optional extra

    local = ex.local.model_dump() if ex.local is not None else None
    return DaskExecutor(ex.address, local=local, on_unreachable=ex.on_unreachable)


def main_run(config_path: Path | None) -> int:
    """``flowtaskd run``: load the config and run the daemon until stopped."""
    config = load_config(config_path)
    daemon = Daemon(config, config_path=config_path)
    # Like sd_notify(unset_environment=1): the notifier has read them; steps inherit our
    # environment and must not talk to systemd as the daemon.
    for var in SYSTEMD_ENV_VARS:
        os.environ.pop(var, None)
    return asyncio.run(daemon.run())
