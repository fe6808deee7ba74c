"""The daemon's runs: a queue, global and per-task concurrency limits, overlap policies.

Every trigger (inbox drop, schedule tick, control ``trigger``, catch-up) ends in
:meth:`RunManager.submit`, which applies the task's ``overlap`` policy and queues the run;
the dispatcher (:meth:`RunManager.run`) starts queued runs, oldest first, as the limits
allow: at most ``max_runs`` at once overall, and per task at most the task's
``max_active_runs`` (a queued run of a task at its limit lets younger runs of other tasks
pass). Each run is owned by the manager's task group and recorded in the history when it
starts (``running``) and when it ends, with every step attempt.

Overlap, when a task already has ``max_active_runs`` runs going or waiting:

* ``skip`` (default): the new run is dropped and ``run_skipped`` fires;
* ``queue``: it waits for a free slot;
* ``cancel``: the oldest running runs are cancelled to make room, and it waits for them;
* ``allow``: no per-task limit at all.

Two kinds of run are never skipped for overlap: an inbox drop (a dropped file is never
lost; it waits its turn) and a catch-up fire (``catchup: all`` means all). ``max_queued``
refuses runs beyond it, except inbox drops, which are on disk anyway.

:meth:`RunManager.drain` is the shutdown: no run starts any more (the queue is dropped,
``run_skipped``), running runs get ``grace`` seconds (measured on the injected clock),
then the rest are cancelled with :data:`SHUTDOWN` as their ``cancel_reason``. The
``on_done`` callback sees that reason, so an inbox file whose run was cut short stays in
the spool and runs again at the next start.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from flowtaskd.clock import Clock
from flowtaskd.components.context import Executor
from flowtaskd.core.options import Overlap
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.rules import TaskStatus
from flowtaskd.daemon.runs.recorder import record_end, record_start
from flowtaskd.daemon.runs.records import RunStore
from flowtaskd.daemon.runs.request import SHUTDOWN, RunRequest
from flowtaskd.engine.events import EventBus
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER
from flowtaskd.tasks.task import Task

__all__ = ["RunManager"]

_log = structlog.get_logger("flowtaskd.runs")
_CANCELLED = str(TaskStatus.CANCELLED)


@dataclass(slots=True)
class _Active:
    request: RunRequest
    task: Task
    started_at: float


class RunManager:
    """Queues, limits and runs task runs; see the module docstring."""

    def __init__(
        self,
        *,
        store: RunStore,
        bus: EventBus,
        executor: Executor,
        clock: Clock,
        log_root: Path,
        max_runs: int = 8,
        max_queued: int = 10_000,
        kill_grace: float = 5.0,
        python_allow: tuple[str, ...] | None = None,
        resolve_task: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.store, self.bus, self.executor, self.clock = store, bus, executor, clock
        self.log_root = log_root
        self.max_runs, self.max_queued = max_runs, max_queued
        self.kill_grace, self.python_allow = kill_grace, python_allow
        self.resolve_task = resolve_task
        self.webhooks: Any = None  # the daemon's WebhookDispatcher, for WebHook actions
        self.queue: deque[RunRequest] = deque()
        self.active: dict[str, _Active] = {}
        self.completed = 0
        self._finishing: dict[str, asyncio.Event] = {}  # started, not yet recorded and handed back
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._accepting = True
        self._tg: asyncio.TaskGroup | None = None

    @property
    def accepting(self) -> bool:
        return self._accepting

    # -- intake -----------------------------------------------------------------------
    def submit(self, req: RunRequest) -> str | None:
        """Queue ``req`` under its overlap policy; the run id, or None if skipped."""
        if not self._accepting:
            self._skipped(req, "daemon is stopping")
            return None
        header = req.pile.definition.header
        policy = req.overlap or header.overlap
        never_dropped = req.inbox_file is not None or req.trigger == "catchup"
        if never_dropped and policy in (Overlap.SKIP, Overlap.CANCEL):
            policy = Overlap.QUEUE  # waits its turn; never cuts another run short
        running = [a for a in self.active.values() if a.request.task == req.task]
        queued = sum(1 for r in self.queue if r.task == req.task)
        excess = len(running) + queued - header.max_active_runs + 1
        if excess > 0 and policy is Overlap.SKIP:
            self._skipped(
                req, f"{len(running) + queued} run(s) of {req.task} going or queued (overlap: skip)"
            )
            return None
        if len(self.queue) >= self.max_queued and req.inbox_file is None:
            self._skipped(req, f"queue full ({self.max_queued} runs waiting)")
            return None
        if excess > 0 and policy is Overlap.CANCEL:
            for a in sorted(running, key=lambda a: a.started_at)[:excess]:
                _log.info("run_cancelled_by_overlap", task=req.task, run_id=a.request.run_id)
                self._cancel_active(a, f"cancelled by the newer run {req.run_id} (overlap: cancel)")
        req.queued_at = self.clock.time()
        self.queue.append(req)
        self.bus.emit(
            "run_queued",
            {
                "task": req.task,
                "run_id": req.run_id,
                "trigger": req.trigger,
                "queued": len(self.queue),
                "inbox": req.inbox,
            },
        )
        self._wake.set()
        return req.run_id

    def _skipped(self, req: RunRequest, reason: str) -> None:
        _log.info("run_skipped", task=req.task, trigger=req.trigger, reason=reason)
        self.bus.emit(
            "run_skipped",
            {
                "task": req.task,
                "run_id": req.run_id,
                "trigger": req.trigger,
                "reason": reason,
                "schedule": req.schedule_id,
            },
        )

    def cancel(self, run_id: str) -> bool:
        """Cancel a running or queued run by id (or unique prefix); False if none matches
        or the prefix is ambiguous (:meth:`cancel_one` says which)."""
        try:
            self.cancel_one(run_id)
        except FlowtaskError:
            return False
        return True

    def cancel_one(self, prefix: str) -> tuple[str, str]:
        """Cancel the one running or queued run whose id starts with ``prefix``; return its
        id and what it was (``running`` or ``queued``). Raises :class:`FlowtaskError` when
        no run matches or the prefix is ambiguous.

        A queued run never starts: it is recorded ``cancelled`` and handed to its
        ``on_done`` (an inbox file is archived as cancelled).
        """
        active = [a for rid, a in self.active.items() if rid.startswith(prefix)]
        queued = [r for r in self.queue if r.run_id.startswith(prefix)]
        matches = [a.request.run_id for a in active] + [r.run_id for r in queued]
        if not matches:
            raise FlowtaskError(f"no such running or queued run: {prefix}")
        if len(matches) > 1:
            raise FlowtaskError(
                f"run id prefix {prefix!r} is ambiguous ({', '.join(matches[:5])}): give more of it"
            )
        if active:
            self._cancel_active(active[0], "cancelled by request")
            return matches[0], "running"
        req = queued[0]
        self.queue.remove(req)
        req.cancel_reason = "cancelled while queued"
        self._skipped(req, req.cancel_reason)
        if self._tg is not None:
            self._tg.create_task(self._finish_unstarted(req), name=f"cancel:{req.run_id}")
        return req.run_id, "queued"

    def _cancel_active(self, a: _Active, reason: str) -> None:
        if a.request.cancel_reason is None:
            a.request.cancel_reason = reason
        a.task.cancel()  # a no-op before the run began; _execute checks cancel_reason

    # -- dispatch ---------------------------------------------------------------------
    def _eligible(self) -> RunRequest | None:
        if not self._accepting or len(self.active) >= self.max_runs:
            return None
        counts: dict[str, int] = {}
        for a in self.active.values():
            counts[a.request.task] = counts.get(a.request.task, 0) + 1
        for req in self.queue:
            header = req.pile.definition.header
            policy = req.overlap or header.overlap
            if policy is Overlap.ALLOW or counts.get(req.task, 0) < header.max_active_runs:
                return req
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Start queued runs as limits allow until ``stop`` is set; then wait for the runs
        still going (:meth:`drain` first to bound that)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            while not stop.is_set():
                req = self._eligible()
                while req is not None:
                    self.queue.remove(req)
                    self._start(tg, req)
                    req = self._eligible()
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
                    await asyncio.gather(waiter, stopper, return_exceptions=True)
            self._accepting = False
        self._tg = None

    def _start(self, tg: asyncio.TaskGroup, req: RunRequest) -> None:
        task = Task(
            task=req.pile,
            params=dict(req.params),
            executor=self.executor,
            events=self.bus,
            clock=self.clock,
            trigger=req.trigger,
            run_id=req.run_id,
            log_dir=self.log_root,
            kill_grace=self.kill_grace,
            python_allow=self.python_allow,
            resolve_task=self.resolve_task,
            logical_time=_aware(req.logical, req.pile),
            kept=req.kept,
            webhooks=self.webhooks,
        )
        self.active[req.run_id] = _Active(req, task, self.clock.time())
        self._finishing[req.run_id] = asyncio.Event()
        self._idle.clear()
        tg.create_task(self._execute(req, task), name=f"run:{req.task}:{req.run_id}")

    async def _execute(self, req: RunRequest, task: Task) -> None:
        stats: TaskMonitor | None = None
        error: str | None = None
        try:
            await self._insert(
                req,
                str(TaskStatus.RUNNING),
                started_at=self.clock.time(),
                log_dir=str(self.log_root / req.task / req.run_id),
            )
            if req.cancel_reason is not None:  # cancelled before it began: no run events
                error = req.cancel_reason
                self._skipped(req, req.cancel_reason)
            else:
                async with task:
                    stats = await task.run()
        except FlowtaskError as exc:
            error = GLOBAL_MASKER.mask(str(exc))
            _log.warning("exception", task=req.task, run_id=req.run_id, error=error)
        except Exception as exc:  # one broken run must not take the daemon down
            error = GLOBAL_MASKER.mask(f"internal error: {exc!r}")
            _log.exception("exception", task=req.task, run_id=req.run_id, error=error)
        finally:
            self.active.pop(req.run_id, None)
            self.completed += 1
            self._wake.set()
            try:
                await asyncio.shield(self._wrap_up(req, stats, error))
            finally:
                self._finishing.pop(req.run_id).set()
                if not self._finishing:
                    self._idle.set()

    async def recorded(self, run_id: str) -> None:
        """Return once the run's end is in the history (at once for a run not started
        here or long recorded): what a waiter reads next must show the run ended."""
        settled = self._finishing.get(run_id)
        if settled is not None:
            await settled.wait()

    async def _wrap_up(self, req: RunRequest, stats: TaskMonitor | None, error: str | None) -> None:
        await self._record_end(req, stats, error)
        await self._hand_back(req, stats, error)

    async def _hand_back(
        self, req: RunRequest, stats: TaskMonitor | None, error: str | None
    ) -> None:
        if req.on_done is not None:
            try:
                await req.on_done(req, stats, error)
            except Exception as exc:  # archiving must not break the manager
                _log.error("run_archive_failed", task=req.task, run_id=req.run_id, error=str(exc))

    async def _finish_unstarted(self, req: RunRequest) -> None:
        await self._insert(req, _CANCELLED, finished_at=self.clock.time(), error=req.cancel_reason)
        await self._hand_back(req, None, req.cancel_reason)

    # -- history ----------------------------------------------------------------------
    async def _insert(self, req: RunRequest, status: str, **fields: Any) -> None:
        await record_start(self.store, req, status, **fields)

    async def _record_end(
        self, req: RunRequest, stats: TaskMonitor | None, error: str | None
    ) -> None:
        await record_end(self.store, req, stats, error, self.clock.time())

    # -- shutdown ---------------------------------------------------------------------
    async def drain(self, grace: float) -> None:
        """Start nothing more; give running runs ``grace`` seconds, cancel the rest, and
        return once every run is recorded and handed back."""
        self._accepting = False
        while self.queue:
            req = self.queue.popleft()
            kept = "; the file stays in the spool" if req.inbox_file is not None else ""
            self._skipped(req, f"daemon is stopping{kept}")
        if self.active and grace > 0:
            idle = asyncio.ensure_future(self._idle.wait())
            timer = asyncio.ensure_future(self.clock.sleep(grace))
            try:
                await asyncio.wait({idle, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                idle.cancel()
                timer.cancel()
                await asyncio.gather(idle, timer, return_exceptions=True)
        for a in list(self.active.values()):
            _log.warning("run_cancelled_at_shutdown", task=a.request.task, run_id=a.request.run_id)
            self._cancel_active(a, SHUTDOWN)
        await self._idle.wait()

    def snapshot(self, queued_shown: int = 20) -> dict[str, Any]:
        """Counts, every running run, and the first ``queued_shown`` queued runs
        (``queued_truncated`` says more wait: page through them with :meth:`queued_page`)."""
        now = self.clock.time()
        return {
            "active": [
                {
                    "task": a.request.task,
                    "run_id": rid,
                    "trigger": a.request.trigger,
                    "running_for": round(now - a.started_at, 3),
                }
                for rid, a in self.active.items()
            ],
            "active_count": len(self.active),
            "queued": self.queued_page(0, queued_shown),
            "queued_count": len(self.queue),
            "queued_truncated": len(self.queue) > queued_shown,
            "completed": self.completed,
        }

    def queued_page(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Queued runs ``offset`` to ``offset + limit``, oldest first."""
        page = itertools.islice(self.queue, offset, offset + limit)
        return [{"task": r.task, "run_id": r.run_id, "trigger": r.trigger} for r in page]


def _aware(ts: float | None, pile: TaskPile) -> datetime | None:
    """A logical time as a datetime in the task's time zone (UTC without one)."""
    if ts is None:
        return None
    zone = pile.definition.header.timezone
    try:
        return datetime.fromtimestamp(ts, ZoneInfo(zone) if zone else UTC)
    except (ValueError, KeyError):  # validated at load; a bad zone falls back to UTC
        return datetime.fromtimestamp(ts, UTC)
