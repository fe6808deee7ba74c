"""``retry``: a new run of a finished run's task that keeps the steps that went well.

:func:`plan_retry` reads the history (it needs no daemon): the definition the run used
(kept in the history; ``current`` passes the task as loaded now instead), its params, and
which steps to run again:

* by default every step that did not end ``done`` or ``skipped`` (failed, timed out,
  cancelled, upstream failed, never reached) and everything downstream of them;
* ``failed_only``: only those, keeping done steps downstream of them;
* ``from_step``: that step and everything downstream of it (and any step that did not end
  well).

Kept steps are not run; their recorded outputs still feed ``{steps.x.output}``. A group is
kept or run again as a whole, and a group that runs again runs its parent again (its items
come from the parent's run). :func:`submit_retry` queues the plan as a run with trigger
``retry`` and ``retry_of`` set. Refused: a run still going, a run that did not fail (unless
``force``), a kept step the task no longer has, a definition whose secrets the history did
not keep (use ``current``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from flowtaskd.components.registry import registry
from flowtaskd.core.options import Overlap
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.rules import StepStatus
from flowtaskd.core.schema import validate_definition
from flowtaskd.daemon.ops.common import UNFINISHED, OpError, did_you_mean, find_run
from flowtaskd.daemon.runs.extras import SECRET_KEPT
from flowtaskd.daemon.runs.records import RunRecord, RunStore
from flowtaskd.daemon.runs.request import RunRequest
from flowtaskd.engine.runner import Kept
from flowtaskd.errors import TaskParseError

__all__ = ["RetryPlan", "plan_retry", "submit_retry"]

_KEEPABLE = {str(StepStatus.DONE): StepStatus.DONE, str(StepStatus.SKIPPED): StepStatus.SKIPPED}


@dataclass(slots=True)
class RetryPlan:
    """What a retry runs: the definition, params, kept steps and the steps run again."""

    original: RunRecord
    pile: TaskPile
    params: dict[str, Any]
    kept: dict[str, Kept]
    rerun: list[str]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "retry_of": self.original.run_id,
            "task": self.pile.name,
            "kept": list(self.kept),
            "rerun": self.rerun,
            "notes": self.notes,
        }


def _definition(store: RunStore, run: RunRecord, current: TaskPile | None) -> TaskPile:
    if current is not None:
        return current
    raw = store.get_definition(run.run_id)
    if raw is None:
        raise OpError(
            f"the history kept no definition for run {run.run_id}"
            " (recorded before definitions were kept): retry with --current"
        )
    for key in ("params", "env"):
        hidden = [k for k, v in (raw.get(key) or {}).items() if v == SECRET_KEPT]
        if hidden:
            raise OpError(
                f"the definition kept for run {run.run_id} hides the secret"
                f" {', '.join(hidden)}: retry with --current (the task as loaded now)"
            )
    try:
        definition = validate_definition(raw, catalog=registry())
    except TaskParseError as exc:  # a component gone since, say
        first = exc.problems[0] if exc.problems else exc
        raise OpError(
            f"the definition kept for run {run.run_id} no longer loads: {first}"
        ) from None
    return TaskPile(dataclasses.replace(definition, file=run.source))


def _rerun(pile: TaskPile, bad: set[str], from_step: str | None, failed_only: bool) -> set[str]:
    graph = pile.graph
    if from_step is not None:
        start = {from_step} | bad
        rerun = start | {d for s in start for d in nx.descendants(graph, s)}
    elif failed_only:
        rerun = set(bad)
    else:
        rerun = bad | {d for s in bad for d in nx.descendants(graph, s)}
    changed = True
    while changed:  # a group runs again as a whole, and with its parent
        changed = False
        for g in pile.groups.values():
            if any(m in rerun for m in g.members):
                new = (set(g.members) | {g.parent}) - rerun
                if new:
                    rerun |= new
                    if not failed_only:
                        rerun |= {d for s in new for d in nx.descendants(graph, s)}
                    changed = True
    return rerun


def plan_retry(
    store: RunStore,
    run_id: str,
    *,
    from_step: str | None = None,
    failed_only: bool = False,
    force: bool = False,
    current: Callable[[str], TaskPile | None] | None = None,
) -> RetryPlan:
    """The retry of ``run_id``; ``current(task)`` gives the task as loaded now (asked for
    ``--current``: the kept definition is used when it is None)."""
    run, _ = find_run(store, run_id)
    if run.status in UNFINISHED:
        raise OpError(f"run {run.run_id} is still {run.status}: wait for it, or cancel it first")
    if run.status == "done" and not force:
        raise OpError(f"run {run.run_id} did not fail (it is done): --force runs it again")
    now_pile = None
    if current is not None:
        now_pile = current(run.task)
        if now_pile is None:
            raise OpError(f"--current: no task named {run.task!r} is loaded")
    pile = _definition(store, run, now_pile)
    steps: Mapping[str, Any] = ((run.stats or {}).get("steps")) or {}
    ended = {sid: _KEEPABLE.get(str(s.get("status"))) for sid, s in steps.items()}
    if from_step is not None and from_step not in pile:
        ids = [s.id for s in pile]
        raise OpError(
            f"--from: task {pile.name} has no step {from_step!r}{did_you_mean(from_step, ids)}"
            f" (steps: {', '.join(ids)})"
        )
    bad = {s.id for s in pile if ended.get(s.id) is None}
    if run.status == "done" and from_step is None:  # --force: all of it again
        bad = {s.id for s in pile}
    rerun = _rerun(pile, bad, from_step, failed_only)
    kept: dict[str, Kept] = {}
    for sid, status in ended.items():
        if status is None or sid in rerun:
            continue
        if sid not in pile:
            raise OpError(
                f"step {sid!r} of run {run.run_id} would be kept, but task {pile.name}"
                " no longer has it: retry without --current, or with --from"
            )
        kept[sid] = Kept(status, steps[sid].get("output"), run.run_id)
    if not [s for s in pile if s.id not in kept]:
        raise OpError(f"run {run.run_id}: nothing to run again (every step ended well)")
    secret_names = set(pile.definition.header.secrets)
    params = {k: v for k, v in run.params.items() if k not in secret_names}
    notes = []
    if len(params) < len(run.params):
        dropped = ", ".join(sorted(set(run.params) - set(params)))
        notes.append(f"secret params not kept in the history, left to the task: {dropped}")
    order = [s.id for s in pile if s.id not in kept]
    return RetryPlan(run, pile, params, kept, order, notes)


def submit_retry(plan: RetryPlan, submit: Callable[[RunRequest], str | None]) -> str | None:
    """Queue the retry (the run manager's ``submit``); its run id, None if skipped."""
    run = plan.original
    return submit(
        RunRequest(
            pile=plan.pile,
            trigger="retry",
            params=plan.params,
            source=run.source,
            overlap=Overlap.QUEUE,  # an operator asked for it: it waits its turn
            retry_of=run.run_id,
            kept=plan.kept,
            logical_time=run.logical_time,
        )
    )
