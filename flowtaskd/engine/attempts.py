"""The attempts of one step: placeholders, precondition, retries with backoff, events.

Used by :class:`~flowtaskd.engine.runner.DagRun` for every step it decides to run (and for
every item of a group member). Time comes from the injected clock, so backoff is tested
without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtaskd.clock import Clock, SystemClock
from flowtaskd.components.context import Executor, StepContext, StepOutcome, SubRun
from flowtaskd.components.registry import get_component
from flowtaskd.components.runtime import mask_outcome
from flowtaskd.core.masks import MaskError, zoned_now
from flowtaskd.core.options import PlaceholderMode, RetryPolicy, StepOptions
from flowtaskd.core.rules import StepStatus
from flowtaskd.core.stepvalues import StepValues
from flowtaskd.core.values import has_braces, mask_values, resolve
from flowtaskd.engine.stats import AttemptStats
from flowtaskd.errors import PlaceholderError
from flowtaskd.execution.local import LocalExecutor
from flowtaskd.logs import SecretMasker

if TYPE_CHECKING:
    from flowtaskd.core.pile import TaskPile
    from flowtaskd.engine.stats import TaskMonitor

__all__ = ["Attempts", "RunSettings"]

Emit = Callable[[str, dict[str, Any]], None]
_NO_RETRY = RetryPolicy()


@dataclass(slots=True)
class RunSettings:
    """Everything a run needs from outside the task file."""

    run_id: str
    executor: Executor
    emit: Emit
    log: Any  # a structlog logger bound to task and run_id
    log_dir: Path
    masker: SecretMasker
    params: Mapping[str, Any] = field(default_factory=dict)
    trigger: str = "manual"
    clock: Clock = field(default_factory=SystemClock)
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    inherit_env: bool = False  # base_env is os.environ as it is: local steps may inherit it
    secrets: tuple[str, ...] = ()
    kill_grace: float = 5.0
    base_dir: str | None = None
    subrun: SubRun | None = None
    python_allow: tuple[str, ...] | None = None
    rand: Callable[[], float] = random.random
    local_executor: Executor = field(default_factory=LocalExecutor)
    logical_time: datetime | None = None  # masks evaluate at it (a fire time, a backfill date)


class Attempts:
    def __init__(self, pile: TaskPile, monitor: TaskMonitor, settings: RunSettings) -> None:
        self.monitor = monitor
        self.s = settings
        self.pile = pile
        self.items_of: dict[str, list[dict[str, Any]]] = {}
        self.variables: dict[str, Any] = {}  # set by steps (SetVariables) for later placeholders
        d = pile.definition
        self.task_env = dict(d.header.env)
        self.default_retry = d.header.retry or _NO_RETRY
        self.max_active = asyncio.Semaphore(d.header.max_active_steps)
        self._task_env_braces = has_braces(self.task_env)
        self.upstream = StepValues(pile)
        self.lenient = d.header.placeholders is PlaceholderMode.LENIENT
        self.zone = d.header.timezone

    def _templated(self, sid: str) -> bool:
        """Whether a step's parameters use placeholders (most don't: skip the work)."""
        return (
            self._task_env_braces
            or self.pile[sid].templated
            or (self.upstream.used and self.upstream.involved(sid, self.pile[sid].params))
            or isinstance(self.pile[sid].params.get("file"), dict)
        )

    def _executor_for(self, component: str, choice: str | None) -> Executor:
        """Remote-capable steps go to the configured executor unless they ask for ``local``."""
        if choice == "local" or self.s.executor.name == "local":
            return self.s.local_executor
        comp = get_component(component)
        return self.s.executor if comp is not None and comp.remote else self.s.local_executor

    @staticmethod
    def _env_needed(component: str) -> bool:
        comp = get_component(component)
        return comp is None or comp.remote or comp.needs_env

    def _inherits_env(self, component: str, opts: StepOptions) -> bool:
        """The step's process can inherit this process's environment (env None)."""
        return (
            self.s.inherit_env
            and not self.task_env
            and not opts.env
            and self._executor_for(component, opts.executor) is self.s.local_executor
        )

    def values(
        self, outputs: Mapping[str, str | None], item: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        v: dict[str, Any] = dict(self.s.params)
        logical = self.s.logical_time
        v.update(mask_values(logical if logical is not None else self.s.clock.now()))
        v["logical_time"] = logical if logical is not None else v["now"]
        v["task"] = self.pile.name
        v["run_id"] = self.s.run_id
        v.update(self.variables)
        if item:
            v.update(item)
            v["item"] = item.get("item", item.get("file", item.get("index")))
        return _Values(v, outputs)

    @staticmethod
    def _with(
        values: Mapping[str, Any], extra: Mapping[str, Any], outputs: Mapping[str, str | None]
    ) -> Mapping[str, Any]:
        base = dict(values.base) if isinstance(values, _Values) else dict(values)
        base.update(extra)
        return _Values(base, outputs)

    def _prepare(
        self, sid: str, outputs: Mapping[str, str | None], item: Mapping[str, Any] | None
    ) -> _Prepared:
        """Substitute placeholders (raises PlaceholderError) and settle env and cwd."""
        s, step = self.s, self.pile[sid]
        assert step.spec is not None
        opts = step.spec.options
        env: dict[str, str] | None
        if self._templated(sid):
            values: Mapping[str, Any] = self.values(outputs, item)
            params: Any = step.params
            lenient = self.lenient
            if self.upstream.involved(sid, params):
                now = zoned_now(s.logical_time or s.clock.time(), self.zone)
                try:
                    extra, masks = self.upstream.values(sid, {**s.params, **(item or {})}, now)
                except MaskError as exc:
                    raise PlaceholderError(f"{sid}: {exc}") from None
                # built-ins < masks, variables, conditions < run params and group items
                mine = {k: v for k, v in values.items() if k in s.params or (item and k in item)}
                values = self._with(values, {**extra, **mine}, outputs)
                params = StepValues.whole(StepValues.file_pattern(params, values, now), masks)
            params = resolve(params, values, sid, lenient)
            env = None
            if not self._inherits_env(step.component, opts):
                env = dict(s.base_env)
                env.update(resolve(self.task_env, values, "env", lenient))
                env.update(resolve(opts.env or {}, values, f"{sid}.env", lenient))
            cwd = resolve(opts.cwd, values, f"{sid}.cwd", lenient) if opts.cwd else None
            pre = opts.precondition
            precondition = resolve(pre, values, f"{sid}.precondition", lenient) if pre else None
        else:
            params, cwd, precondition = step.params, opts.cwd, opts.precondition
            env = {}
            if self._inherits_env(step.component, opts):
                env = None
            elif self._env_needed(step.component):
                env = {**s.base_env, **self.task_env, **(opts.env or {})}
        if cwd and s.base_dir and not os.path.isabs(cwd):
            cwd = os.path.join(s.base_dir, cwd)
        return _Prepared(params, env, cwd, precondition)

    def _forbidden(self, component: str, params: Mapping[str, Any]) -> str | None:
        """Why a Python step may not run (``security.python_allow``), or None."""
        allow = self.s.python_allow
        if component not in ("Python", "UserFunc") or allow is None:
            return None
        target = str(params.get("function", ""))
        for prefix in allow:
            root = prefix.rstrip(".")
            if target == prefix or target.startswith((root + ".", root + ":")):
                return None
        return f"{target} is not in the allowed Python modules ({', '.join(allow)})"

    async def run(
        self,
        sid: str,
        outputs: Mapping[str, str | None],
        item_index: int | None = None,
        item: Mapping[str, Any] | None = None,
    ) -> StepOutcome:
        s, step = self.s, self.pile[sid]
        assert step.spec is not None
        opts = step.spec.options
        mon = self.monitor.steps[sid]
        now = s.clock.time()
        mon.started_at = now if mon.started_at is None else min(mon.started_at, now)
        mon.status = StepStatus.RUNNING
        base: dict[str, Any] = {"step": sid, "component": step.component}
        if item_index is not None:
            base["item"] = item_index
        try:
            prep = self._prepare(sid, outputs, item)
        except PlaceholderError as exc:
            failed = StepOutcome(StepStatus.FAILED, error=s.masker.mask(str(exc)))
            return self._end(sid, mon, failed, base)
        refused = self._forbidden(step.component, prep.params)
        if refused:
            return self._end(sid, mon, StepOutcome(StepStatus.FAILED, error=refused), base)

        def ctx_for(
            component: str, p: Mapping[str, Any], attempt: int, suffix: str = ""
        ) -> StepContext:
            return StepContext(
                task=self.pile.name,
                run_id=s.run_id,
                step_id=sid + suffix + (f"[{item_index}]" if item_index is not None else ""),
                component=component,
                params=p,
                attempt=attempt,
                env=prep.env,
                cwd=prep.cwd,
                timeout=opts.timeout,
                kill_grace=s.kill_grace,
                log_dir=s.log_dir,
                secrets=s.secrets,
                item=item,
                base_dir=s.base_dir,
                resources=opts.resources,
                input=upstream_input,
                timezone=self.pile.definition.header.timezone,
                runtime=s.subrun,
            )

        comp = get_component(step.component)
        upstream_input = self._input_of(sid, outputs) if comp and comp.wants_input else None
        executor = self._executor_for(step.component, opts.executor)
        if prep.precondition:
            async with self.max_active:
                pre = await executor.run(
                    ctx_for("Command", {"command": prep.precondition}, 1, ".precondition")
                )
            if not pre.ok:
                return self._skip(mon, base, _precondition_reason(pre))
        params = prep.params
        policy = opts.retry or self.default_retry
        attempt = 1
        while True:
            a = AttemptStats(attempt, "running", s.clock.time(), item=item_index)
            mon.attempts.append(a)
            s.emit("step_start", {**base, "status": "running", "attempt": attempt})
            try:
                async with self.max_active:
                    outcome = await executor.run(ctx_for(step.component, params, attempt))
            except asyncio.CancelledError:
                a.status, a.finished_at = "cancelled", s.clock.time()
                raise
            a.finished_at = s.clock.time()
            outcome = mask_outcome(outcome, s.secrets)
            mon.record(a, outcome)
            if outcome.ok or outcome.status is StepStatus.CANCELLED:
                break
            if not policy.should_retry(attempt, outcome.exit_code):
                break
            delay = _retry_delay(policy, attempt + 1, s.rand(), outcome)
            s.emit(
                "step_retry",
                {
                    **base,
                    "status": str(outcome.status),
                    "attempt": attempt,
                    "exit_code": outcome.exit_code,
                    "error": outcome.error,
                    "delay": delay,
                },
            )
            await s.clock.sleep(delay)
            attempt += 1
        if outcome.items is not None:
            self.items_of[sid] = outcome.items
        return self._end(sid, mon, outcome, {**base, "attempt": attempt})

    def _input_of(self, sid: str, outputs: Mapping[str, str | None]) -> str | None:
        """What a ``wants_input`` step reads: its upstream step's output (several: a JSON
        object of them by step id)."""
        ups = self.pile.predecessors(sid)
        if len(ups) == 1:
            return outputs.get(ups[0])
        if not ups:
            return None
        return json.dumps({u: outputs.get(u) for u in ups})

    def _skip(self, mon: Any, base: dict[str, Any], why: str) -> StepOutcome:
        mon.reason = why
        mon.status = StepStatus.SKIPPED
        mon.finished_at = self.s.clock.time()
        self.s.emit("step_skipped", {**base, "status": "skipped", "reason": why})
        return StepOutcome(StepStatus.SKIPPED, error=why)

    def _end(self, sid: str, mon: Any, outcome: StepOutcome, base: dict[str, Any]) -> StepOutcome:
        s = self.s
        mon.finished_at = max(mon.finished_at or 0.0, s.clock.time())
        if mon.items is None:  # a group member's status is settled over all its items
            mon.status = outcome.status
        if outcome.error:
            mon.error = outcome.error
        payload = {**base, "status": str(outcome.status), "exit_code": outcome.exit_code}
        if outcome.ok:
            payload["output"] = _short(outcome.output)
            s.emit("step_done", payload)
        else:
            payload["error"] = outcome.error
            s.emit("step_error", payload)
        if outcome.event:  # upstream's event for what happened (file_not_found, ...)
            s.emit(outcome.event, {**payload, "status": outcome.event})
        return outcome


@dataclass(frozen=True, slots=True)
class _Prepared:
    params: Mapping[str, Any]
    env: Mapping[str, str] | None  # None: inherit this process's environment
    cwd: str | None
    precondition: Any


def _retry_delay(policy: RetryPolicy, attempt: int, rand: float, outcome: StepOutcome) -> float:
    """The policy's wait before try ``attempt``, or longer if the server asked for it
    (HTTP ``Retry-After``, capped by ``max_delay``)."""
    delay = policy.delay_before(attempt, rand)
    if outcome.retry_after is not None:
        wait = outcome.retry_after
        if policy.max_delay is not None:
            wait = min(wait, policy.max_delay)
        delay = max(delay, wait)
    return delay


def _precondition_reason(pre: StepOutcome) -> str:
    if pre.status is StepStatus.TIMED_OUT:
        return "precondition timed out"
    if pre.exit_code is None and pre.error:
        return f"precondition failed: {pre.error}"
    return f"precondition exited {pre.exit_code}"


class _Values(Mapping[str, Any]):
    """Placeholder values; ``steps.<id>.output`` is looked up only when asked for."""

    __slots__ = ("base", "outputs")

    def __init__(self, base: dict[str, Any], outputs: Mapping[str, str | None]) -> None:
        self.base, self.outputs = base, outputs

    def __getitem__(self, key: str) -> Any:
        if key in self.base:
            return self.base[key]
        if key.startswith("steps.") and key.endswith(".output"):
            sid = key[6:-7]
            if sid in self.outputs:
                return self.outputs[sid]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        for sid in self.outputs:
            yield f"steps.{sid}.output"

    def __len__(self) -> int:
        return len(self.base) + len(self.outputs)


def _short(text: str | None, limit: int = 1000) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "..."
