"""One run of a TaskPile: decide which steps are ready, hand them to an executor.

Scheduling is a ready queue over *units* (a plain step, or a whole group): a unit becomes
ready when every unit it depends on is final, then the trigger rules decide whether it
runs. Steps run concurrently up to ``max_active_steps``; a group runs its member steps
once per item of its parent's output. Each step's attempts (retries, backoff, precondition)
live in :mod:`flowtaskd.engine.attempts`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from flowtaskd.components.context import StepOutcome
from flowtaskd.core.pile import Group, TaskPile
from flowtaskd.core.rules import (
    SkipError,
    StepStatus,
    TaskStatus,
    decide,
)
from flowtaskd.engine.attempts import Attempts, RunSettings
from flowtaskd.engine.jumps import Jumps
from flowtaskd.engine.stats import StepMonitor, TaskMonitor

__all__ = ["DagRun", "Kept"]

_WORST = [
    StepStatus.FAILED,
    StepStatus.TIMED_OUT,
    StepStatus.CANCELLED,
    StepStatus.UPSTREAM_FAILED,
    StepStatus.DONE,
    StepStatus.SKIPPED,
]
_FAILURES = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})


_YIELD_EVERY = 32  # units run in place before letting other tasks have the loop
_Work = tuple[str, Coroutine[Any, Any, None]]  # a unit and the coroutine that runs it


@dataclass(frozen=True, slots=True)
class Kept:
    """A step a retry does not run again: how it ended in the run retried, and its output."""

    status: StepStatus
    output: str | None
    origin: str  # the run id it comes from


class _CancelRequested(Exception):
    pass


class DagRun:
    """Runs one TaskPile once. ``await run()`` returns the filled :class:`TaskMonitor`."""

    def __init__(
        self, pile: TaskPile, settings: RunSettings, kept: Mapping[str, Kept] | None = None
    ) -> None:
        self.pile = pile
        self.s = settings
        self.kept: dict[str, Kept] = dict(kept or {})
        d = pile.definition
        self.monitor = TaskMonitor(
            d.name,
            settings.run_id,
            trigger=settings.trigger,
            params=settings.masker.mask_obj(dict(settings.params)),
        )
        for step in pile:
            self.monitor.steps[step.id] = StepMonitor(step.id, step.component)
        self.status: dict[str, StepStatus] = {}
        self.outputs: dict[str, str | None] = {}
        self._not_chosen: dict[str, str] = {}  # step id -> the branching step that passed it by
        self._unit_of: dict[str, str] = {}
        self._members: dict[str, Group] = {}
        for g in pile.groups.values():
            for m in g.members:
                self._unit_of[m] = "group:" + g.name
            self._members["group:" + g.name] = g
        self._tg: asyncio.TaskGroup | None = None
        self._cancel_requested = False
        self._main: asyncio.Task[Any] | None = None
        self.attempts = Attempts(self.pile, self.monitor, settings)
        self.jumps = Jumps(pile)

    # -- public -----------------------------------------------------------------------
    def cancel(self) -> None:
        """Cancel the run: running steps are stopped, the run ends ``cancelled``."""
        self._cancel_requested = True
        if self._main is not None:
            self._main.cancel()

    async def run(self) -> TaskMonitor:
        s, mon = self.s, self.monitor
        self._main = asyncio.current_task()
        mon.started_at = s.clock.time()
        mon.status = TaskStatus.RUNNING
        s.emit("start", {"status": "running", "trigger": s.trigger, "params": mon.params})
        s.emit("running", {"status": "running", "steps": len(self.pile)})
        if self._cancel_requested:  # cancelled before it started: nothing runs
            self._finish_pending(StepStatus.CANCELLED, "run cancelled")
            return self._finish(TaskStatus.CANCELLED, "cancelled")
        try:
            async with asyncio.timeout(self.pile.definition.header.timeout):
                await self._schedule_all()
        except TimeoutError:
            self._finish_pending(StepStatus.CANCELLED, "task timed out")
            timeout = self.pile.definition.header.timeout
            return self._finish(TaskStatus.FAILED, f"task timed out after {timeout:g}s")
        except asyncio.CancelledError:
            self._finish_pending(StepStatus.CANCELLED, "run cancelled")
            self._finish(TaskStatus.CANCELLED, "cancelled")
            task = asyncio.current_task()
            if self._cancel_requested and task is not None and task.uncancel() == 0:
                return mon
            raise
        except Exception as exc:  # an engine bug must still end the run with its stats
            self._finish_pending(StepStatus.CANCELLED, "internal error")
            s.log.exception("exception", error=str(exc))
            s.emit("exception", {"status": "failed", "error": s.masker.mask(repr(exc))})
            return self._finish(TaskStatus.FAILED, f"internal error: {exc!r}")
        failed = [
            sid
            for sid, st in self.status.items()
            if st in _FAILURES
            and self.pile[sid].spec is not None
            and self.pile[sid].spec.options.skipError is SkipError.ENFORCE  # type: ignore[union-attr]
            and sid not in self.jumps.handled
        ]
        if failed:
            return self._finish(TaskStatus.FAILED, f"steps failed: {', '.join(failed)}")
        return self._finish(TaskStatus.DONE, None)

    # -- scheduling -------------------------------------------------------------------
    async def _schedule_all(self) -> None:
        preds: dict[str, set[str]] = {}
        succs: dict[str, set[str]] = {}
        for sid in (step.id for step in self.pile):
            unit = self._unit_of.get(sid, sid)
            preds.setdefault(unit, set())
            succs.setdefault(unit, set())
        for u, v in self.pile.edges():
            uu, vu = self._unit_of.get(u, u), self._unit_of.get(v, v)
            if uu != vu:
                preds[vu].add(uu)
                succs[uu].add(vu)
        remaining = {unit: len(p) for unit, p in preds.items()}

        async with asyncio.TaskGroup() as tg:
            self._tg = tg

            def finished(unit: str) -> list[_Work]:
                """``unit`` is final: the units that can start because of it."""
                ready: list[_Work] = []
                for nxt in succs[unit]:
                    remaining[nxt] -= 1
                    if remaining[nxt] == 0:
                        ready.extend(prepare(nxt))
                return ready

            def prepare(unit: str) -> list[_Work]:
                """The work to start ``unit``, or (if it does not run) what it unblocks."""
                if self._keep(unit) or (self.jumps.active and self._jumped(unit)):
                    return finished(unit)
                if unit in self._members:
                    return [(unit, self._run_group(self._members[unit]))]
                if unit in self._not_chosen:
                    why = f"not chosen by {self._not_chosen[unit]}"
                    self._settle(unit, StepStatus.SKIPPED, why)
                    return finished(unit)
                decision = decide(self._rule(unit), self._upstream(unit))
                if decision.run or unit in self.jumps.forced:
                    return [(unit, self._run_single(unit))]
                self._settle(unit, decision.status or StepStatus.SKIPPED, decision.reason)
                return finished(unit)

            def launch(works: list[_Work]) -> None:
                for unit, work in works:
                    tg.create_task(self._run_unit(unit, work, finished, launch))

            for unit, n in list(remaining.items()):
                if n == 0:
                    launch(prepare(unit))

    async def _run_unit(self, unit: str, work: Any, finished: Any, launch: Any) -> None:
        """Run ``work``, then go on with the first unit it unblocks in this same task.

        Continuing in place, rather than in a new task, saves a chain of steps a trip
        through the event loop per step; the other unblocked units get tasks of their own.
        A chain of steps that never wait (``Dummy``) still lets the loop run now and then.
        """
        inline = 0
        while True:
            await work
            ready = finished(unit)
            if not ready:
                return
            (unit, work), rest = ready[0], ready[1:]
            launch(rest)
            inline += 1
            if inline % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _keep(self, unit: str) -> bool:
        """Settle ``unit`` as the retried run left it, if the retry keeps it (a group is
        kept only as a whole)."""
        group = self._members.get(unit)
        sids = list(group.members) if group is not None else [unit]
        if not sids or not all(sid in self.kept for sid in sids):
            return False
        for sid in sids:
            k = self.kept[sid]
            self.outputs[sid] = k.output
            self.monitor.steps[sid].output = k.output
            self.status[sid] = k.status
            mon = self.monitor.steps[sid]
            mon.status, mon.reason = k.status, f"kept from run {k.origin}"
            self.s.emit(
                "step_skipped",
                {"step": sid, "status": str(k.status), "reason": mon.reason, "kept": True},
            )
        return True

    def _rule(self, sid: str) -> Any:
        spec = self.pile[sid].spec
        assert spec is not None
        return spec.options.trigger_rule

    def effective(self, sid: str) -> StepStatus:
        """A step's status as its downstream sees it (``skipError: skip`` reads as done)."""
        st = self.status[sid]
        spec = self.pile[sid].spec
        if st in _FAILURES and spec is not None and spec.options.skipError is SkipError.SKIP:
            return StepStatus.DONE
        return st

    def _upstream(
        self, sid: str, local: Mapping[str, StepStatus] | None = None
    ) -> list[tuple[str, StepStatus]]:
        out = []
        for u in self.pile.predecessors(sid):
            if local is not None and u in local:
                out.append((u, local[u]))
            else:
                out.append((u, self.effective(u)))
        return out

    def _settle(self, sid: str, status: StepStatus, reason: str | None = None) -> None:
        self.status[sid] = status
        mon = self.monitor.steps[sid]
        mon.status = status
        if reason:
            mon.reason = reason
        if status in (StepStatus.SKIPPED, StepStatus.UPSTREAM_FAILED):
            self.s.emit("step_skipped", {"step": sid, "status": str(status), "reason": reason})

    async def _run_single(self, sid: str) -> None:
        outcome = await self.attempts.run(sid, self.outputs)
        self.outputs[sid] = outcome.output
        self.status[sid] = self.monitor.steps[sid].status
        if self.jumps.active:
            self.jumps.after(sid, self.status[sid])
        self._took(sid, outcome)

    def _jumped(self, unit: str) -> bool:
        """Settle a unit a ``Goto`` / ``OnError`` jumped over (a group: all its members)."""
        group = self._members.get(unit)
        ids = list(group.members) if group is not None else [unit]
        if not all(i in self.jumps.jumped for i in ids):
            return False
        for i in ids:
            self._settle(i, StepStatus.SKIPPED, self.jumps.jumped[i])
        return True

    def _took(self, sid: str, outcome: StepOutcome) -> None:
        """What a finished step says about later ones: variables, branches not taken."""
        if not outcome.ok:
            return
        if outcome.variables:
            self.attempts.variables.update(outcome.variables)
        for other in outcome.skip:
            if other in self.pile and other not in self.status:
                self._not_chosen.setdefault(other, sid)

    # -- groups -------------------------------------------------------------------------
    async def _run_group(self, group: Group) -> None:
        parent = self.pile[group.parent]
        items = self.attempts.items_of.get(parent.id) or []
        members = group.members
        if self.status.get(parent.id) is not StepStatus.DONE or not items:
            for m in members:  # in file order, so a member's group-mates are settled first
                d = decide(self._rule(m), self._upstream(m))
                if d.run:
                    self._settle(m, StepStatus.SKIPPED, f"group {group.name} has no items")
                else:
                    self._settle(m, d.status or StepStatus.SKIPPED, d.reason)
            return
        for m in members:
            self.monitor.steps[m].items = len(items)
        results = []
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._run_item(group, i, item)) for i, item in enumerate(items)]
        results = [t.result() for t in tasks]
        for m in members:
            statuses = {r[m] for r in results}
            final = next(st for st in _WORST if st in statuses)
            self.status[m] = final
            self.monitor.steps[m].status = final

    async def _run_item(
        self, group: Group, index: int, item: Mapping[str, Any]
    ) -> dict[str, StepStatus]:
        members = set(group.members)
        local: dict[str, StepStatus] = {}
        outputs: dict[str, str | None] = dict(self.outputs)
        done = {m: asyncio.Event() for m in group.members}

        async def one(m: str) -> None:
            for u in self.pile.predecessors(m):
                if u in members:
                    await done[u].wait()
            d = decide(self._rule(m), self._upstream(m, local))
            if d.run:
                outcome: StepOutcome = await self.attempts.run(
                    m, outputs, item_index=index, item=item
                )
                local[m] = (
                    outcome.status if not self._skip_error(m, outcome.status) else StepStatus.DONE
                )
                outputs[m] = outcome.output
                if outcome.ok and outcome.variables:
                    self.attempts.variables.update(outcome.variables)
            else:
                local[m] = d.status or StepStatus.SKIPPED
                self.monitor.steps[m].reason = d.reason
            done[m].set()

        async with asyncio.TaskGroup() as tg:
            for m in group.members:
                tg.create_task(one(m))
        return local

    def _skip_error(self, sid: str, status: StepStatus) -> bool:
        spec = self.pile[sid].spec
        return status in _FAILURES and spec is not None and spec.options.skipError is SkipError.SKIP

    # -- ending -------------------------------------------------------------------------
    def _finish_pending(self, status: StepStatus, reason: str) -> None:
        now = self.s.clock.time()
        for sid, mon in self.monitor.steps.items():
            if mon.status in (StepStatus.PENDING, StepStatus.RUNNING):
                mon.status = status
                mon.reason = reason
                if mon.started_at is not None and mon.finished_at is None:
                    mon.finished_at = now
                self.status[sid] = status

    def _finish(self, status: TaskStatus, error: str | None) -> TaskMonitor:
        s, mon = self.s, self.monitor
        mon.status = status
        mon.error = s.masker.mask(error) if error else None
        mon.finished_at = s.clock.time()
        payload = {"status": str(status), "error": mon.error, "duration": mon.duration}
        if status is TaskStatus.DONE:
            s.emit("done", payload)
        elif status is TaskStatus.CANCELLED:
            s.emit("cancelled", payload)
        else:
            s.emit("on_error", payload)
        s.emit("completed", {"status": str(status), "stats": s.masker.mask_obj(mon.to_dict())})
        return mon
