"""The daemon's runs: a queue, global and per-task concurrency limits, overlap policies.

Every trigger (inbox drop, schedule tick, control ``trigger``, catch-up) ends in
:meth:`RunManager.submit`, which applies the task's ``overlap`` policy and queues the run;
the dispatcher starts queued runs when the limits allow. Each run is owned by the
manager's task group and recorded in the history before it starts and when it ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from flowtaskd.clock import Clock
from flowtaskd.daemon.store import AttemptRecord, HistoryStore, RunRecord
from flowtaskd.errors import FlowtaskError
from flowtaskd.events import EventBus
from flowtaskd.execution.context import Executor
from flowtaskd.logs import GLOBAL_MASKER
from flowtaskd.stats import TaskMonitor
from flowtaskd.tasks.options import Overlap
from flowtaskd.tasks.pile import TaskPile
from flowtaskd.tasks.rules import TaskStatus
from flowtaskd.tasks.task import Task, new_run_id

__all__ = ["RunManager", "RunRequest"]

_log = structlog.get_logger("flowtaskd.runs")
OnDone = Callable[["RunRequest", TaskMonitor | None, str | None], Awaitable[None]]


@dataclass(slots=True)
class RunRequest:
    """One run to make: which definition (a snapshot), with what, and why."""

    pile: TaskPile
    trigger: str  # schedule | inbox | manual | catchup | exec
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    schedule_id: str | None = None
    overlap: Overlap | None = None  # overrides the task's (a schedule entry may)
    inbox_file: str | None = None
    fire_time: float | None = None
    on_done: OnDone | None = None
    run_id: str = field(default_factory=new_run_id)
    queued_at: float = 0.0

    @property
    def task(self) -> str:
        return self.pile.name


@dataclass(slots=True)
class _Active:
    request: RunRequest
    task: Task
    started_at: float


class RunManager:
    def __init__(
        self,
        *,
        store: HistoryStore,
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
        self.kill_grace, self.python_allow, self.resolve_task = kill_grace, python_allow, resolve_task
        self.queue: deque[RunRequest] = deque()
        self.active: dict[str, _Active] = {}
        self._wake = asyncio.Event()
        self._accepting = True
        self._tg: asyncio.TaskGroup | None = None
        self.completed = 0

    # -- intake -----------------------------------------------------------------------
    def submit(self, req: RunRequest) -> str | None:
        """Queue ``req`` under its overlap policy; the run id, or None if skipped."""
        if not self._accepting:
            self._skipped(req, "daemon is stopping")
            return None
        header = req.pile.definition.header
        policy = req.overlap or header.overlap
        running = [a for a in self.active.values() if a.request.task == req.task]
        queued = [r for r in self.queue if r.task == req.task]
        busy = len(running) + len(queued) >= header.max_active_runs
        if busy and policy is Overlap.SKIP and req.inbox_file is None:  # a dropped file is never lost
            self._skipped(req, f"{len(running)} run(s) of {req.task} still going (overlap: skip)")
            return None
        if busy and policy is Overlap.CANCEL:
            for a in running:
                _log.info("run_cancelled_by_overlap", task=req.task, run_id=a.request.run_id)
                a.task.cancel()
        if len(self.queue) >= self.max_queued:
            self._skipped(req, f"queue full ({self.max_queued} runs waiting)")
            return None
        req.queued_at = self.clock.time()
        self.queue.append(req)
        self.bus.emit("run_queued", {"task": req.task, "run_id": req.run_id, "trigger": req.trigger,
                                     "queued": len(self.queue)})
        self._wake.set()
        return req.run_id

    def _skipped(self, req: RunRequest, reason: str) -> None:
        _log.info("run_skipped", task=req.task, trigger=req.trigger, reason=reason)
        self.bus.emit("run_skipped", {"task": req.task, "trigger": req.trigger, "reason": reason,
                                      "schedule": req.schedule_id})

    def cancel(self, run_id: str) -> bool:
        """Cancel a running or queued run by id (or unique prefix)."""
        for rid, a in self.active.items():
            if rid.startswith(run_id):
                a.task.cancel()
                return True
        for r in list(self.queue):
            if r.run_id.startswith(run_id):
                self.queue.remove(r)
                self._skipped(r, "cancelled while queued")
                return True
        return False

    # -- dispatch ---------------------------------------------------------------------
    def _eligible(self) -> RunRequest | None:
        if len(self.active) >= self.max_runs:
            return None
        for req in self.queue:
            header = req.pile.definition.header
            policy = req.overlap or header.overlap
            running = sum(1 for a in self.active.values() if a.request.task == req.task)
            if policy is Overlap.ALLOW or running < header.max_active_runs:
                return req
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Start queued runs as limits allow, until ``stop`` is set and runs are drained."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            while not stop.is_set():
                req = self._eligible()
                while req is not None:
                    self.queue.remove(req)
                    await self._start(tg, req)
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

    async def _start(self, tg: asyncio.TaskGroup, req: RunRequest) -> None:
        task = Task(
            task=req.pile, params=dict(req.params), executor=self.executor, events=self.bus,
            clock=self.clock, trigger=req.trigger, run_id=req.run_id, log_dir=self.log_root,
            kill_grace=self.kill_grace, python_allow=self.python_allow,
            resolve_task=self.resolve_task,
        )
        self.active[req.run_id] = _Active(req, task, self.clock.time())
        tg.create_task(self._execute(req, task), name=f"run:{req.task}:{req.run_id}")

    async def _execute(self, req: RunRequest, task: Task) -> None:
        stats: TaskMonitor | None = None
        error: str | None = None
        now = self.clock.time()
        await self._record_start(req, now)
        try:
            async with task:
                stats = await task.run()
        except FlowtaskError as exc:
            error = GLOBAL_MASKER.mask(str(exc))
            _log.warning("exception", task=req.task, run_id=req.run_id, error=error)
        finally:
            self.active.pop(req.run_id, None)
            self.completed += 1
            self._wake.set()
            await asyncio.shield(self._record_end(req, stats, error))
            if req.on_done is not None:
                try:
                    await asyncio.shield(req.on_done(req, stats, error))
                except Exception as exc:  # archiving must not break the manager
                    _log.error("run_archive_failed", task=req.task, run_id=req.run_id, error=str(exc))

    # -- history ----------------------------------------------------------------------
    async def _record_start(self, req: RunRequest, now: float) -> None:
        try:
            await self.store.insert_run(RunRecord(
                run_id=req.run_id, task=req.task, trigger=req.trigger, status="running",
                source=req.source, params=GLOBAL_MASKER.mask_obj(dict(req.params)),
                queued_at=req.queued_at, started_at=now,
                log_dir=str(self.log_root / req.task / req.run_id),
                inbox_file=req.inbox_file, schedule_id=req.schedule_id,
            ))
        except FlowtaskError as exc:
            _log.error("history_write_failed", task=req.task, run_id=req.run_id, error=str(exc))

    async def _record_end(self, req: RunRequest, stats: TaskMonitor | None, error: str | None) -> None:
        try:
            if stats is None:
                await self.store.update_run(req.run_id, status=str(TaskStatus.FAILED),
                                            finished_at=self.clock.time(), error=error)
                return
            d = stats.to_dict()
            for sid, s in d["steps"].items():
                for t in s["tries"]:
                    step_key = sid if t["item"] is None else f"{sid}[{t['item']}]"
                    await self.store.record_attempt(AttemptRecord(
                        run_id=req.run_id, step_id=step_key, attempt=t["attempt"],
                        status=t["status"], started_at=t["started_at"],
                        finished_at=t["finished_at"], duration=t["duration"],
                        exit_code=t["exit_code"], cpu_user=t["cpu_user"],
                        cpu_system=t["cpu_system"], max_rss_kb=t["max_rss_kb"],
                        bytes_out=t["bytes_out"], error=t["error"], log_path=t["log_path"],
                    ))
            await self.store.update_run(
                req.run_id, status=d["status"], finished_at=d["finished_at"],
                duration=d["duration"], error=d["error"], stats=d,
            )
        except FlowtaskError as exc:
            _log.error("history_write_failed", task=req.task, run_id=req.run_id, error=str(exc))

    # -- shutdown ---------------------------------------------------------------------
    async def drain(self, grace: float) -> None:
        """Stop intake; let running runs finish for ``grace`` seconds, then cancel them."""
        self._accepting = False
        deadline = self.clock.monotonic() + grace
        while self.active and self.clock.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for a in list(self.active.values()):
            _log.warning("run_cancelled_at_shutdown", task=a.request.task, run_id=a.request.run_id)
            a.task.cancel()
        while self.active:
            await asyncio.sleep(0.02)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.time()
        return {
            "active": [
                {"task": a.request.task, "run_id": rid, "trigger": a.request.trigger,
                 "running_for": round(now - a.started_at, 3)}
                for rid, a in self.active.items()
            ],
            "queued": [{"task": r.task, "run_id": r.run_id, "trigger": r.trigger} for r in self.queue],
            "completed": self.completed,
        }
