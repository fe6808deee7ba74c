"""What a run of a task would do, without running it (``render``, ``exec --dry-run``).

:func:`plan_run` resolves every step's parameters as a run at ``at`` would (params, the
masks ``{today}``, ``{yesterday}``, ``{now}``, ``{logical_time}``, and upstream's
``masks:``, ``variables:`` and ``conditions:`` in the task's zone), shows step outputs as
``<output of x>`` and a group's item fields as ``<item.key>``, masks the values of the
task's ``secrets`` as ``***``, and lists the order: the levels of the DAG (a group is one
unit, its members listed with it), each step's retry and timeout policy. A placeholder that
cannot be resolved is reported on its step (``error``), not raised. Pure: the caller passes
the time and the environment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import networkx as nx

from flowtaskd.core.masks import MaskError, zoned_now
from flowtaskd.core.options import PlaceholderMode
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.stepvalues import StepValues
from flowtaskd.core.values import mask_values, resolve
from flowtaskd.errors import PlaceholderError

__all__ = ["plan_run"]


class _PlanValues(Mapping[str, Any]):
    """Known values, plus ``steps.<id>.output`` and (in a group) item fields as labels."""

    def __init__(self, base: dict[str, Any], steps: set[str], in_group: bool) -> None:
        self.base, self.steps, self.in_group = base, steps, in_group

    def __getitem__(self, key: str) -> Any:
        if key in self.base:
            return self.base[key]
        if key.startswith("steps.") and key.endswith(".output") and key[6:-7] in self.steps:
            return f"<output of {key[6:-7]}>"
        if self.in_group:
            return f"<item.{key}>"
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            self[str(key)]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        for sid in self.steps:
            yield f"steps.{sid}.output"

    def __len__(self) -> int:
        return len(self.base) + len(self.steps)


class _Masker:
    """Every secret value, wherever it occurs in a string, becomes ``***`` (longest first)."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            for secret in self.secrets:
                obj = obj.replace(secret, "***")
            return obj
        if isinstance(obj, Mapping):
            return {k: self.mask_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.mask_obj(v) for v in obj]
        return obj


def _levels(pile: TaskPile) -> list[list[str]]:
    """Units (step ids, ``group:<name>``) in the order they can run, level by level."""
    unit_of: dict[str, str] = {}
    for g in pile.groups.values():
        for m in g.members:
            unit_of[m] = "group:" + g.name
    units: nx.DiGraph = nx.DiGraph()
    for step in pile:
        units.add_node(unit_of.get(step.id, step.id))
    for u, v in pile.edges():
        uu, vu = unit_of.get(u, u), unit_of.get(v, v)
        if uu != vu:
            units.add_edge(uu, vu)
    order = {unit_of.get(s.id, s.id): i for i, s in enumerate(pile)}
    return [sorted(level, key=lambda u: order[u]) for level in nx.topological_generations(units)]


def plan_run(
    pile: TaskPile,
    params: Mapping[str, Any],
    at: datetime,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The plan of one run of ``pile`` at ``at``; see the module docstring."""
    d = pile.definition
    header = d.header
    merged = {**header.params, **params}
    env = env or {}
    secrets = [
        str(v)
        for name in header.secrets
        for v in (merged.get(name), env.get(name), header.env.get(name))
        if v not in (None, "")
    ]
    masker = _Masker(secrets)
    base: dict[str, Any] = dict(merged)
    base.update(mask_values(at))
    base.update(task=d.name, run_id="<run id>", logical_time=at)
    ids = {s.id for s in pile}
    default_retry = header.retry
    upstream = StepValues(pile)  # upstream's masks, variables, conditions, file.value
    lenient = header.placeholders is PlaceholderMode.LENIENT
    steps: list[dict[str, Any]] = []
    for step in pile:
        assert step.spec is not None
        opts = step.spec.options
        retry = opts.retry or default_retry
        values = _PlanValues(base, ids, step.group is not None)
        step_params: Any = step.params
        out: dict[str, Any] = {
            "id": step.id,
            "component": step.component,
            "depends": list(pile.upstream(step.id)),
            "group": step.group,
            "to_group": step.to_group,
            "trigger_rule": str(opts.trigger_rule),
            "retry": retry.model_dump(mode="json") if retry is not None else None,
            "timeout": opts.timeout if opts.timeout is not None else None,
            "error": None,
        }
        try:
            if upstream.involved(step.id, step_params):  # as the engine does (attempts.py)
                now = zoned_now(at, header.timezone)
                try:
                    extra, masks = upstream.values(step.id, dict(merged), now)
                except MaskError as exc:
                    raise PlaceholderError(f"{step.id}: {exc}") from None
                mine = {k: v for k, v in base.items() if k in merged}
                values = _PlanValues({**base, **extra, **mine}, ids, step.group is not None)
                filled = StepValues.file_pattern(step_params, values, now)
                step_params = StepValues.whole(filled, masks)
            out["params"] = resolve(step_params, values, step.id, lenient)
            out["env"] = resolve(
                {**header.env, **(opts.env or {})}, values, f"{step.id}.env", lenient
            )
            out["cwd"] = resolve(opts.cwd, values, f"{step.id}.cwd", lenient) if opts.cwd else None
            pre = opts.precondition
            out["precondition"] = (
                resolve(pre, values, f"{step.id}.precondition", lenient) if pre else None
            )
        except PlaceholderError as exc:
            out.update(params=step.params, env={}, cwd=opts.cwd, precondition=None)
            out["error"] = str(exc)
        steps.append(masker.mask_obj(out))
    levels = _levels(pile)
    groups = {name: list(g.members) for name, g in pile.groups.items()}
    return {
        "task": d.name,
        "file": d.file,
        "at": at.isoformat(),
        "params": masker.mask_obj(merged),
        "timeout": header.timeout,
        "levels": levels,
        "groups": groups,
        "steps": steps,
    }
