"""``Task``: runs a task definition (a file path, a library name or a dict) as a DAG."""

from __future__ import annotations

import os
import secrets as _secrets
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Unpack

import structlog

from flowtaskd.clock import Clock, SystemClock
from flowtaskd.components.context import Executor, StepOutcome
from flowtaskd.components.registry import registry
from flowtaskd.core.loader import TASK_SUFFIXES, load_document
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.core.schema import TaskDefinition, validate_definition
from flowtaskd.engine.actions import ActionRunner
from flowtaskd.engine.attempts import RunSettings
from flowtaskd.engine.chain import fire_continuations
from flowtaskd.engine.runner import DagRun
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.errors import TaskNotFound
from flowtaskd.execution.local import LocalExecutor
from flowtaskd.logs import GLOBAL_MASKER, SecretMasker
from flowtaskd.tasks.abstract import AbstractTask
from flowtaskd.tasks.options import TaskOptions, inherited

__all__ = ["Task", "new_run_id"]

_MAX_DEPTH = 8
_DAEMON_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
_log = structlog.get_logger("flowtaskd.task")


class _IdClock:
    lock = threading.Lock()
    last_ms = 0
    seq = 0


_PROCESS_TAG = _secrets.token_hex(2)  # tells apart ids made by two processes in one ms


def new_run_id() -> str:
    """Unique by construction and sortable by creation: 12 hex digits of milliseconds since
    the epoch (never going back, even when the clock does), 6 of a sequence within that
    millisecond, and 4 that tag this process. Within a process no two ids are equal; two
    processes collide only if they share the millisecond, the sequence and the 16-bit tag.
    """
    c = _IdClock
    with c.lock:
        now = int(time.time() * 1000)
        if now > c.last_ms:
            c.last_ms, c.seq = now, 0
        else:  # the same millisecond, or the clock stepped back: count on from the last
            c.seq += 1
            if c.seq > 0xFFFFFF:
                c.last_ms, c.seq = c.last_ms + 1, 0
        return f"{c.last_ms:012x}{c.seq:06x}{_PROCESS_TAG}"


class Task(AbstractTask):
    """Runs a task definition as a DAG.

    The positional arguments are flowtask's; the keyword options beyond them are a
    :class:`~flowtaskd.tasks.options.TaskOptions` (typed: mypy checks every caller); with
    ``program``, ``tasks_dir`` is the root of upstream's ``<program>/tasks/<task>`` tree.
    """

    def __init__(
        self,
        task_id: str | None = None,
        task: Any = None,
        program: str | None = None,
        loop: Any = None,
        parser: Any = None,
        worker: Executor | None = None,
        **kwargs: Unpack[TaskOptions],
    ) -> None:
        super().__init__(task_id, task, program, loop, parser, **kwargs)
        self.options: TaskOptions = kwargs
        self.worker: Executor = worker or kwargs.get("executor") or LocalExecutor()
        self._owns_executor = worker is None and kwargs.get("executor") is None
        self.clock: Clock = kwargs.get("clock") or SystemClock()
        self.params: dict[str, Any] = dict(kwargs.get("params") or {})
        self.run_id: str = kwargs.get("run_id") or new_run_id()
        self.trigger: str = kwargs.get("trigger", "manual")
        self.pile: TaskPile | None = None
        self.file: Path | None = None
        self._run: DagRun | None = None
        self._actions: ActionRunner | None = None
        self._depth: int = kwargs.get("depth", 0)
        self._cancel_requested = False

    # -- definition -------------------------------------------------------------------
    def _definition(self) -> TaskDefinition:
        task = self.task if self.task is not None else self.task_id
        if isinstance(task, TaskPile):
            task = task.definition
        if isinstance(task, TaskDefinition):
            self.file = Path(task.file) if task.file else None
            return task
        if isinstance(task, Mapping):
            return validate_definition(dict(task), catalog=registry())
        if isinstance(task, str | os.PathLike):
            path = self._find(str(task))
            self.file = path
            doc = load_document(path)
            return validate_definition(doc.data, doc, catalog=registry())
        raise TaskNotFound(f"cannot run {task!r}: give a task file, a library name or a dict")

    def _find(self, ref: str) -> Path:
        if self.program:
            caller = self.options.get("caller_file")
            found = self._in_program(ref, self.program, Path(caller) if caller else None)
            if found is not None:
                return found
        path = Path(ref)
        if path.suffix in TASK_SUFFIXES or os.sep in ref:
            if not path.exists():
                raise TaskNotFound(f"no such task file: {ref}")
            return path
        resolver = self.options.get("resolve_task")
        if resolver is not None:
            found = resolver(ref)
            if found is not None:
                return Path(found)
        folder = Path(self.options.get("tasks_dir") or self.program or "config/tasks")
        if self.program:
            root = Path(self.options.get("tasks_dir") or "config/tasks")
            raise TaskNotFound(
                f"no task {ref!r} in program {self.program!r} (looked in "
                f"{root / self.program / 'tasks'} for {ref}.json, .yaml, .toml)"
            )
        for suffix in sorted(TASK_SUFFIXES):
            candidate = folder / f"{ref}{suffix}"
            if candidate.exists():
                return candidate
        raise TaskNotFound(f"no task named {ref!r} (looked in {folder})")

    def _in_program(self, ref: str, program: str, near: Path | None) -> Path | None:
        """Upstream's layout: ``<tasks root>/<program>/tasks/<task>.(json|yaml|toml)``; the
        root is ``tasks_dir``, else the root of the calling task's own file, if it lies in
        such a tree, else ``config/tasks``. The first suffix that exists wins (upstream's
        order: json, yaml, toml; then yml)."""
        if Path(ref).suffix in TASK_SUFFIXES or os.sep in ref:
            return None
        roots = [Path(r) for r in (self.options.get("tasks_dir"),) if r]
        if near is not None and near.parent.name == "tasks":
            roots.append(near.parent.parent.parent)
        roots.append(Path("config/tasks"))
        for root in roots:
            for suffix in (".json", ".yaml", ".toml", ".yml"):
                candidate = root / program / "tasks" / f"{ref}{suffix}"
                if candidate.is_file():
                    return candidate
        return None

    # -- life -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        definition = self._definition()
        given = self.task if self.task is not None else self.task_id
        self.pile = (
            given if isinstance(given, TaskPile) else TaskPile(definition, program=self.program)
        )
        self.task_id = self.task_id if self.task_id and self.task is not None else definition.name
        bus = self.task_events()
        if self._owns_bus:
            await bus.start()
        self._actions = (
            ActionRunner(
                definition,
                self._subrun,
                clock=self.clock,
                webhooks=self.options.get("webhooks"),
            )
            if definition.events
            else None
        )
        self._stats = TaskMonitor(definition.name, self.run_id, trigger=self.trigger)
        self._started = True

    def _secret_values(self, params: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
        assert self.pile is not None
        names = self.pile.definition.header.secrets
        values: list[str] = []
        for name in names:
            for source in (params, env):
                value = source.get(name)
                if value not in (None, ""):
                    values.append(str(value))
        return tuple(values)

    async def run(self) -> TaskMonitor:
        if not self._started:
            await self.start()
        assert self.pile is not None
        d = self.pile.definition
        params = {**d.header.params, **self.params}
        base_env = dict(self.options.get("base_env") or os.environ)
        # local steps without env of their own inherit ours as it is (cheaper to spawn),
        # unless it holds what only the daemon may use
        inherit_env = not self.options.get("base_env") and not any(
            var in base_env for var in _DAEMON_ONLY_ENV
        )
        for var in _DAEMON_ONLY_ENV:  # steps must not talk to systemd as the daemon
            base_env.pop(var, None)
        secrets = self._secret_values(params, {**base_env, **d.header.env})
        masker = SecretMasker(secrets)
        GLOBAL_MASKER.update(secrets)
        bus = self.task_events()
        log = _log.bind(task=d.name, run_id=self.run_id)
        log_dir = Path(
            self.options.get("log_dir") or Path(tempfile.gettempdir()) / "flowtaskd-logs"
        )
        log_dir = log_dir / d.name / self.run_id  # made when a step first prints
        name, run_id = d.name, self.run_id
        # one line per fact: a run's end is logged as done / on_error / cancelled, not again
        # as completed
        quiet = {"step_start", "step_done", "running", "completed"}
        actions = self._actions

        def emit(event: str, payload: dict[str, Any]) -> None:
            body = masker.mask_obj({"task": name, "run_id": run_id, **payload})
            if event not in quiet:
                fields = {
                    k: v for k, v in body.items() if k not in ("stats", "task", "run_id", "params")
                }
                level = "warning" if event in ("step_error", "on_error", "step_retry") else "info"
                getattr(log, level)(event, **fields)
            bus.emit(event, body)
            if actions is not None:
                actions(event, body)

        settings = RunSettings(
            run_id=run_id,
            executor=self.worker,
            emit=emit,
            log=log,
            log_dir=log_dir,
            masker=masker,
            params=params,
            trigger=self.trigger,
            clock=self.clock,
            base_env=base_env,
            inherit_env=inherit_env,
            secrets=secrets,
            kill_grace=float(self.options.get("kill_grace", 5.0)),
            base_dir=str(self.file.parent) if self.file else None,
            subrun=self._subrun if self._depth < _MAX_DEPTH else None,
            python_allow=self.options.get("python_allow"),
            logical_time=self.options.get("logical_time"),
        )
        self._run = DagRun(self.pile, settings, kept=self.options.get("kept"))
        if self._cancel_requested:
            self._run.cancel()
        self._stats = self._run.monitor
        stats = await self._run.run()
        if d.continuations and self._depth == 0:  # upstream ignores NextTask in a sub-task
            await fire_continuations(d.continuations, stats, self._subrun, log)
        return stats

    def cancel(self) -> None:
        """Cancel the run (its steps' process groups are stopped); before it starts, it
        ends ``cancelled`` without running a step."""
        self._cancel_requested = True
        if self._run is not None:
            self._run.cancel()

    async def _subrun(
        self, ref: str, params: Mapping[str, Any], program: str | None = None
    ) -> StepOutcome:
        target: Any = ref
        if program is None and self.file is not None and self.file.parent.name == "tasks":
            program = self.file.parent.parent.name if self.program is None else self.program
            if self._in_program(ref, program, self.file) is None:
                program = None  # not in the caller's program: a path or a library name
        if (
            self.file is not None
            and not Path(ref).is_absolute()
            and Path(ref).suffix in TASK_SUFFIXES
        ):
            target = str(self.file.parent / ref)
        options = inherited(self.options)
        options["params"] = dict(params)
        options["executor"] = self.worker
        options["events"] = self.task_events()
        options["clock"] = self.clock
        options["trigger"] = "subrun"
        options["depth"] = self._depth + 1
        options["caller_file"] = str(self.file) if self.file else None
        child = Task(task=target, program=program, **options)
        try:
            async with child:
                stats = await child.run()
        except Exception as exc:  # a bad sub-task file is this step's failure
            return StepOutcome(StepStatus.FAILED, error=f"sub-run {ref}: {exc}")
        ok = stats.status is TaskStatus.DONE
        return StepOutcome(
            StepStatus.DONE if ok else StepStatus.FAILED,
            output=stats.run_id,
            error=None if ok else f"sub-run {stats.task} {stats.status}: {stats.error}",
        )

    async def close(self) -> None:
        if self._actions is not None:
            await self._actions.aclose()
        if self._owns_bus and self._bus is not None:
            await self._bus.aclose()
        if self._owns_executor:
            await self.worker.aclose()
        self._started = False
