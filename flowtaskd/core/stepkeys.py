"""Upstream flowtask's framework keys on a step, read with upstream's meaning.

- Which keys of a step are the component's and which are options (:func:`split_step_keys`):
  a component that declares ``name`` (or ``variables``, ``conditions``, ...) as a parameter
  gets it, as upstream passes every key to its component.
- ``attributes: {key: value}`` overrides the component's parameters (:func:`apply_attributes`).
- ``masks:`` definitions are checked when the file is read (:func:`mask_problems`).
- ``NextTask`` steps become continuations (:class:`NextTaskSpec`), never DAG steps.
- :func:`link_steps`: ``depends`` given as upstream pile indexes or group ids (``dl_2``)
  become step ids; ``Goto`` / ``OnError`` targets are found as upstream finds them (an id,
  else the first step of that component) and must lie ahead in upstream's order; under
  ``order: file`` (implied by ``Goto`` / ``OnError``) every step also waits for the step
  before it in upstream's pile order, so the run is upstream's strict sequence.
Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from flowtaskd.core.masks import MASK_FUNCTIONS, call_problem
from flowtaskd.core.options import STEP_OPTION_KEYS, UPSTREAM_VALUE_KEYS, RunOrder, StrictModel
from flowtaskd.core.upstream import Numbering

if TYPE_CHECKING:
    from flowtaskd.core.spec import StepSpec

__all__ = [
    "ChainOn",
    "NextTaskSpec",
    "apply_attributes",
    "link_steps",
    "mask_problems",
    "split_step_keys",
    "validate_next_task",
]

_Path = tuple[str | int, ...]
Problem3 = tuple[str, _Path, str | None]


def split_step_keys(
    params_model: type[BaseModel], params: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(component parameters, step options)`` of one step's mapping."""
    own: dict[str, Any] = {}
    opts: dict[str, Any] = {}
    declared = params_model.model_fields
    for key, value in params.items():
        if key in STEP_OPTION_KEYS and not (key in UPSTREAM_VALUE_KEYS and key in declared):
            opts[key] = value
        else:
            own[key] = value
    return own, opts


def apply_attributes(
    own: Mapping[str, Any], attributes: Mapping[str, Any], params_model: type[BaseModel]
) -> dict[str, Any]:
    """Upstream's ``attributes``: each one replaces the parameter of that name."""
    return {**own, **{k: v for k, v in attributes.items() if isinstance(k, str)}}


def mask_problems(raw: Any, where: _Path) -> list[Problem3]:
    """What is wrong with a ``masks:`` mapping, checked without evaluating it."""
    if raw is None or not isinstance(raw, dict):
        return []  # a wrong type is the model's to report
    out: list[Problem3] = []
    for key, definition in raw.items():
        problem = call_problem(definition)
        if problem is None:
            continue
        hint = None
        if problem.startswith("unknown mask function"):
            near = difflib.get_close_matches(str(definition[0]), list(MASK_FUNCTIONS), n=1)
            hint = f"did you mean `{near[0]}`?" if near else None
        out.append((problem, (*where, str(key)), hint))
    return out


class ChainOn(StrEnum):
    """When a ``NextTask`` fires (upstream's ``on:``)."""

    SUCCESS = "success"
    FAILURE = "failure"
    ALWAYS = "always"
    NODATA = "nodata"  # upstream's "done with no data": a state flowtaskd does not have
    WARNING = "warning"  # upstream's "done with warnings": likewise


class NextTaskSpec(StrictModel):
    """A reserved ``NextTask`` step: a task started after this one ends."""

    step_id: str
    index: int
    task: str = Field(description="The task to start: a name, a path, or with program.")
    program: str | None = None
    on: ChainOn = ChainOn.SUCCESS
    variables: dict[str, Any] = Field(default_factory=dict, description="Its run params.")
    result: bool = True
    executor: str | dict[str, Any] = "inline"
    priority: str | None = None
    storage: str | None = None
    filestore: str | None = None


def validate_next_task(
    i: int, params: Any, step_id: str, add: Callable[..., None]
) -> NextTaskSpec | None:
    where: _Path = ("steps", i, "NextTask")
    if not isinstance(params, dict):
        add("the parameters of a NextTask step are a mapping with `task`", where)
        return None
    if params.get("Group"):
        add("a NextTask cannot be part of a group (upstream refuses it too)", (*where, "Group"))
        return None
    data = {
        ("on" if k is True else k): v for k, v in params.items() if k not in ("Group", "to_group")
    }
    try:
        return NextTaskSpec.model_validate({**data, "step_id": step_id, "index": i})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            key = (*where, *err["loc"])
            msg = "field required" if err["type"] == "missing" else err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (NextTask takes task, program, on, variables, result, ...)"
            add(msg, key)
        return None


AddStep = Callable[["StepSpec", _Path, str, str | None], None]


def link_steps(
    steps: Sequence[StepSpec],
    numbering: Numbering,
    order: RunOrder,
    partial: frozenset[int],
    add: AddStep,
) -> list[StepSpec]:
    """``steps`` with upstream's ``depends`` forms, jump targets and file order applied."""
    by_index = {s.index: s for s in steps}
    flat = [i for entry in numbering.entries for i in entry if i in by_index]
    position = {i: n for n, entry in enumerate(numbering.entries) for i in entry}
    members = {i for entry in numbering.groups.values() for i in entry}
    out: dict[int, StepSpec] = {}
    jumps = False
    for spec in steps:
        update: dict[str, Any] = {}
        deps = spec.options.depends
        if deps is not None and any(not isinstance(d, str) or d in numbering.groups for d in deps):
            update["depends"] = _upstream_depends(spec, deps, numbering, by_index, add)
        for key in ("Goto", "OnError"):
            target = getattr(spec.options, key)
            if target is None or spec.index in partial:
                continue
            jumps = True
            found = _jump_target(spec, key, target, steps, numbering, position, members, add)
            if found is not None:
                update[key] = found
        out[spec.index] = replace(spec, options=spec.options.model_copy(update=update))
    _iterate_next(out, numbering, flat)
    if (order is RunOrder.FILE or jumps) and not partial:
        for n, i in enumerate(flat[1:], 1):
            spec = out[i]
            declared = [str(d) for d in spec.options.depends] if spec.options.depends else []
            before = out[flat[n - 1]].id
            chained = list(dict.fromkeys([*declared, before]))
            out[i] = replace(spec, options=spec.options.model_copy(update={"depends": chained}))
    return [out[s.index] for s in steps]


def _iterate_next(out: dict[int, StepSpec], numbering: Numbering, flat: list[int]) -> None:
    """Upstream's ``iterate: true`` without ``to_group``: the iterator runs the next pile
    entry once per item. Here that entry becomes the iterator's group (ids unchanged)."""
    entries = [e for e in numbering.entries if all(i in out for i in e)]
    grouped = {i for e in numbering.groups.values() for i in e}
    for n, entry in enumerate(entries[:-1]):
        spec = out.get(entry[0]) if len(entry) == 1 else None
        if spec is None or spec.raw is None or spec.raw.get("iterate") is not True:
            continue
        i = entry[0]
        if spec.options.to_group or spec.options.Group or spec.index in grouped:
            continue
        body = entries[n + 1]
        if len(body) != 1 or body[0] in grouped or out[body[0]].options.Group:
            continue
        name = f"{spec.id}.items"
        out[i] = replace(spec, options=spec.options.model_copy(update={"to_group": name}))
        member = out[body[0]]
        out[body[0]] = replace(member, options=member.options.model_copy(update={"Group": name}))


def _upstream_depends(
    spec: StepSpec,
    deps: Sequence[str | int],
    numbering: Numbering,
    by_index: Mapping[int, StepSpec],
    add: AddStep,
) -> list[str]:
    ids: list[str] = []
    for dep in deps:
        if isinstance(dep, int):
            if not 0 <= dep < len(numbering.entries):
                add(
                    spec,
                    ("depends",),
                    f"depends on pile index {dep}, but the pile has "
                    f"{len(numbering.entries)} entries (0 to {len(numbering.entries) - 1})",
                    "an index counts upstream's pile from 0; a group is one entry",
                )
                continue
            ids.extend(by_index[i].id for i in numbering.entries[dep] if i in by_index)
        elif dep in numbering.groups:
            ids.extend(by_index[i].id for i in numbering.groups[dep] if i in by_index)
        else:
            ids.append(dep)
    return list(dict.fromkeys(ids))


def _jump_target(
    spec: StepSpec,
    key: str,
    target: str,
    steps: Sequence[StepSpec],
    numbering: Numbering,
    position: Mapping[int, int],
    members: set[int],
    add: AddStep,
) -> str | None:
    if spec.index in members:
        add(spec, (key,), f"`{key}` on a member of a group is not supported", None)
        return None
    heads = [s for s in steps if s.index not in members]
    hit = next((s for s in heads if s.id == target), None)
    if hit is None:
        hit = next((s for s in heads if s.component == target), None)
    if hit is None:
        near = difflib.get_close_matches(target, [s.id for s in heads], n=1)
        hint = f"did you mean `{near[0]}`?" if near else None
        add(spec, (key,), f"`{key}` names an unknown step `{target}`", hint)
        return None
    if position.get(hit.index, -1) <= position.get(spec.index, -1):
        add(
            spec,
            (key,),
            f"`{key}: {target}` jumps back to `{hit.id}`: jumps go forward only, as upstream's",
            None,
        )
        return None
    return hit.id
