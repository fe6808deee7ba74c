"""Where work enters the daemon: dropped files, schedule fires and manual triggers.

Each becomes a :class:`~flowtaskd.daemon.runs.manager.RunRequest`. A dropped file is claimed into
the spool, checked (trust, validity) and run; then it is archived under ``done/`` or
``failed/`` with a ``<file>.result.json`` sidecar. An invalid or untrusted file goes to
``failed/`` with its errors in the sidecar. Files found in the spool at start (a crash)
run again.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from flowtaskd.components.registry import registry
from flowtaskd.core.pile import TaskPile
from flowtaskd.daemon.intake.inbox import ClaimedFile, InboxWatcher, Spool
from flowtaskd.daemon.intake.trust import untrusted_reason
from flowtaskd.daemon.runs.request import SHUTDOWN, OnDone, RunRequest
from flowtaskd.daemon.schedule.scheduler import ScheduleEntry
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.errors import FlowtaskError, Problem, TaskParseError
from flowtaskd.tasks import load_pile

if TYPE_CHECKING:
    from flowtaskd.daemon.config.load import DaemonConfig
    from flowtaskd.daemon.faults import Faults
    from flowtaskd.daemon.intake.library import LoadedTask
    from flowtaskd.engine.events import EventBus

__all__ = ["Intake", "IntakeHost", "RunSink", "TaskLookup"]

_log = structlog.get_logger("flowtaskd.intake")


class RunSink(Protocol):
    def submit(self, req: RunRequest) -> str | None:
        """Queue a run; its id, or None when the overlap policy skipped it."""
        ...


class TaskLookup(Protocol):
    def get(self, name: str) -> LoadedTask | None: ...


class IntakeHost(Protocol):
    """What the intake needs of the daemon: its config, bus, runs, library and faults."""

    @property
    def config(self) -> DaemonConfig: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def runs(self) -> RunSink: ...

    @property
    def library(self) -> TaskLookup: ...

    @property
    def faults(self) -> Faults: ...


class Intake:
    """Turns inbox drops, schedule fires and manual triggers into run requests."""

    def __init__(self, daemon: IntakeHost) -> None:
        self.d = daemon
        cfg = daemon.config
        self.spool = Spool(cfg.state_dir / "spool")
        self.inboxes = {ib.name or ib.path.name: ib for ib in cfg.inboxes}
        self.task_group: asyncio.TaskGroup | None = None
        self._commands: dict[str, TaskPile] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the daemon's task group (owned, awaited at shutdown)."""
        if self.task_group is None:
            coro.close()
            return
        self.task_group.create_task(coro)

    # -- inboxes ----------------------------------------------------------------------
    async def recover(self) -> None:
        """Run again every file a crash left in the spool."""
        folders = {name: ib.path for name, ib in self.inboxes.items()}
        for name, folder in folders.items():
            try:
                restored = await asyncio.to_thread(self.spool.restore_claims, folder)
            except OSError as exc:
                _log.error("inbox_restore_failed", inbox=name, error=str(exc))
                continue
            for path in restored:  # the watcher's first scan claims them again
                _log.warning("inbox_claim_restored", inbox=name, file=path.name)
        for claimed in await asyncio.to_thread(self.spool.pending, folders):
            _log.warning("inbox_recovered", file=claimed.original.name, inbox=claimed.inbox)
            self.spawn(self._handle(claimed))

    async def watch(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Claim dropped files until ``stop``; ``ready`` is set once the inboxes are watched."""
        if not self.inboxes:  # nothing to watch: a daemon of schedules and library tasks only
            if ready is not None:
                ready.set()
            return
        for ib in self.inboxes.values():
            ib.path.mkdir(parents=True, exist_ok=True)
        watcher = InboxWatcher(
            [(name, ib.path) for name, ib in self.inboxes.items()],
            self.spool,
            lambda claimed: self.spawn(self._handle(claimed)),
            faults=self.d.faults,
            on_ignored=lambda path, inbox, reason: self.d.bus.emit(
                "inbox_ignored", {"inbox": inbox, "file": path.name, "reason": reason}
            ),
        )
        await watcher.run(stop, ready)

    async def _handle(self, claimed: ClaimedFile) -> None:
        try:
            await self._check_and_submit(claimed)
        except Exception as exc:  # one bad file must not take the daemon down
            # The file stays in the spool: the next start tries it again.
            _log.exception("inbox_error", file=claimed.original.name, error=str(exc))

    async def _check_and_submit(self, claimed: ClaimedFile) -> None:
        inbox = self.inboxes.get(claimed.inbox)
        file = claimed.original.name
        if not self.d.config.security.trust_all_files:
            reason = await asyncio.to_thread(
                untrusted_reason, claimed.spooled, folder=claimed.original.parent
            )
            if reason is not None:
                problem = Problem(f"refused: {reason}", file=file)
                self.d.bus.emit(
                    "task_rejected",
                    {
                        "task": None,
                        "file": file,
                        "inbox": claimed.inbox,
                        "problems": [problem.to_dict()],
                    },
                )
                _log.warning("task_rejected", file=file, reason=reason)
                result = {"status": "rejected", "file": file, "errors": [str(problem)]}
                await self._archive(claimed, ok=False, result=result)
                return
        try:
            pile = await asyncio.to_thread(load_pile, claimed.spooled)
        except TaskParseError as exc:
            problems = [_renamed(p, file) for p in exc.problems]
            self.d.bus.emit(
                "task_invalid",
                {
                    "task": None,
                    "file": file,
                    "inbox": claimed.inbox,
                    "problems": [p.to_dict() for p in problems],
                },
            )
            for p in problems:
                _log.warning("task_invalid", file=file, problem=str(p))
            result = {"status": "invalid", "file": file, "errors": [str(p) for p in problems]}
            await self._archive(claimed, ok=False, result=result)
            return
        except FlowtaskError as exc:
            _log.warning("task_invalid", file=file, problem=str(exc))
            result = {"status": "invalid", "file": file, "errors": [str(exc)]}
            await self._archive(claimed, ok=False, result=result)
            return
        params = dict(inbox.params) if inbox is not None else {}
        req = RunRequest(
            pile=pile,
            trigger="inbox",
            params=params,
            source=str(claimed.original),
            inbox_file=str(claimed.spooled),
            inbox=claimed.inbox,
            on_done=self._done_callback(claimed),
        )
        self.d.runs.submit(req)

    def _done_callback(self, claimed: ClaimedFile) -> OnDone:
        async def done(req: RunRequest, stats: TaskMonitor | None, error: str | None) -> None:
            if req.cancel_reason == SHUTDOWN:
                # Not finished: it stays in the spool and runs again at the next start.
                _log.warning("inbox_kept", file=claimed.original.name, run_id=req.run_id)
                return
            result: dict[str, Any] = {
                "run_id": req.run_id,
                "task": req.task,
                "file": claimed.original.name,
            }
            if stats is None:
                status = "cancelled" if req.cancel_reason is not None else "failed"
                result.update(status=status, errors=[error or f"run {status}"], steps={})
                ok = False
            else:
                d = stats.to_dict()
                ok = d["status"] == "done"
                errors = [req.cancel_reason or d["error"]] if d["error"] else []
                result.update(
                    status=d["status"],
                    errors=errors,
                    started_at=d["started_at"],
                    finished_at=d["finished_at"],
                    duration=d["duration"],
                    steps={sid: _step_summary(s) for sid, s in d["steps"].items()},
                )
            await self._archive(claimed, ok=ok, result=result)

        return done

    async def _archive(self, claimed: ClaimedFile, *, ok: bool, result: Mapping[str, Any]) -> None:
        inbox = self.inboxes.get(claimed.inbox)
        archive = (
            inbox.archive
            if inbox is not None and inbox.archive
            else self.d.config.state_dir / "archive" / claimed.inbox
        )
        path = await asyncio.to_thread(self.spool.archive, claimed, archive, ok=ok, result=result)
        _log.info("inbox_archived", file=claimed.original.name, to=str(path), ok=ok)

    # -- schedules and manual triggers -------------------------------------------------
    def fire_schedule(self, entry: ScheduleEntry, fire_time: float, trigger: str) -> None:
        if entry.task is not None:
            loaded = self.d.library.get(entry.task)
            if loaded is None:
                self.d.bus.emit(
                    "run_skipped",
                    {
                        "task": entry.task,
                        "schedule": entry.id,
                        "reason": f"no task named {entry.task!r} is loaded",
                    },
                )
                _log.warning(
                    "run_skipped", task=entry.task, schedule=entry.id, reason="task not loaded"
                )
                return
            pile = loaded.pile
            source = str(loaded.path)
        else:
            pile = self._command_pile(entry)
            source = None
        self.d.runs.submit(
            RunRequest(
                pile=pile,
                trigger=trigger,
                params=dict(entry.params),
                source=source,
                schedule_id=entry.id,
                overlap=entry.overlap,
                fire_time=fire_time,
            )
        )

    def _command_pile(self, entry: ScheduleEntry) -> TaskPile:
        pile = self._commands.get(entry.id)
        if pile is None:
            step: dict[str, Any] = {"name": "command", "command": list(entry.command or ())}
            if entry.env:
                step["env"] = dict(entry.env)
            if entry.cwd:
                step["cwd"] = entry.cwd
            if entry.timeout:
                step["timeout"] = entry.timeout
            task = {"name": entry.id.replace(":", "-"), "steps": [{"Command": step}]}
            pile = TaskPile(task, catalog=registry())
            self._commands[entry.id] = pile
        return pile

    def trigger(self, name: str, params: Mapping[str, Any]) -> str | None:
        """Run a library task now (the control socket's ``trigger``)."""
        loaded = self.d.library.get(name)
        if loaded is None:
            raise FlowtaskError(_not_loaded(name, self.d.library))
        return self.d.runs.submit(
            RunRequest(
                pile=loaded.pile, trigger="manual", params=dict(params), source=str(loaded.path)
            )
        )


def _not_loaded(name: str, library: Any) -> str:
    """Why ``trigger NAME`` found nothing: a file of that name is invalid, or a near name."""
    text = f"no task named {name!r} is loaded"
    bad = [p for p in library.invalid if Path(p).stem == name]
    if bad:
        return f"{text}: its file {bad[0]} is invalid (flowtaskd tasks shows why)"
    close = difflib.get_close_matches(name, list(library.tasks), n=3, cutoff=0.6)
    if close:
        return f"{text}; did you mean {' or '.join(repr(c) for c in close)}?"
    return text


def _step_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "status": s["status"],
        "attempts": s["attempts"],
        "exit_code": s["exit_code"],
        "duration": s["duration"],
        "error": s["error"] or s["reason"],
    }


def _renamed(p: Problem, file: str) -> Problem:
    """Problems name the file as the user dropped it, not its spool name."""
    return Problem(p.message, file=file, line=p.line, path=p.path, hint=p.hint)
