"""How upstream flowtask reads a list of steps: its step ids, its pile order, its jumps.

Upstream numbers steps with one counter over the file: a plain step is ``<Component>_<n>``;
a ``to_group: G`` parent is ``<Component>_<n>``, its group ``G_<n+1>`` and each member
(wherever it stands in the file) ``<Component>_<n+1>_<k>``; the group takes one number, its
members none; a ``NextTask`` takes a number but never runs. Upstream runs that *pile*
strictly in order, a group as one entry. :func:`number_steps` computes both, so an id
written for flowtask (``depends: Dummy_3``, ``Goto: PrintMessage_4``) names the same step
here, and ``order: file``, ``Goto`` and ``OnError`` follow upstream's order. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NEXT_TASK", "Numbering", "number_steps", "pile_position"]

NEXT_TASK = "NextTask"
"""A reserved step: a continuation fired after the task, never a step of the DAG."""

_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(slots=True)
class Numbering:
    """Upstream's reading of a step list.

    ``ids[i]``: the id of step ``i`` (its ``name:`` when it has a usable one, else upstream's
    number; ``None`` for a step that is not a mapping of one component). ``entries``: the
    pile in upstream's order, each entry the step indexes it runs (a group: its members).
    ``entry_ids``: upstream's id of each entry (a group's is ``G_<n>``).
    """

    ids: list[str | None]
    entries: list[tuple[int, ...]] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)
    next_tasks: list[int] = field(default_factory=list)
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Upstream's id of each group (``dl_2``) -> its member indexes."""


def _one(item: Any) -> tuple[str, Mapping[str, Any]] | None:
    if isinstance(item, dict) and len(item) == 1:
        ((key, value),) = item.items()
        if isinstance(key, str):
            return key, value if isinstance(value, dict) else {}
    return None


def number_steps(
    raw: Sequence[Any], name_is_id: Callable[[str], bool] = lambda _component: True
) -> Numbering:
    """Upstream's ids and pile order for the raw step list of a task file.

    A step's ``name:`` is its id (flowtaskd's extension) unless ``name_is_id(component)``
    is false: a component with a ``name`` parameter of its own keeps upstream's meaning.
    """
    auto: list[str | None] = [None] * len(raw)
    parsed = [_one(item) for item in raw]
    out = Numbering(auto)
    taken: set[int] = set()
    counter = 1
    for i, step in enumerate(parsed):
        if step is None:
            auto[i] = None
            continue
        if i in taken:
            continue
        comp, params = step
        auto[i] = f"{comp}_{counter}"
        if comp == NEXT_TASK:
            out.next_tasks.append(i)
            counter += 1
            continue
        out.entries.append((i,))
        out.entry_ids.append(auto[i] or "")
        counter += 1
        group = params.get("to_group")
        if not isinstance(group, str) or not group:
            continue
        members: list[int] = []
        for j, inner in enumerate(parsed):
            if j in taken or j == i or inner is None:
                continue
            if inner[1].get("Group") == group and inner[0] != NEXT_TASK:
                members.append(j)
                taken.add(j)
                auto[j] = f"{inner[0]}_{counter}_{len(members)}"
        if members:
            out.entries.append(tuple(members))
            out.entry_ids.append(f"{group}_{counter}")
            out.groups[f"{group}_{counter}"] = tuple(members)
        counter += 1
    for i, step in enumerate(parsed):
        if step is None:
            continue
        name = step[1].get("name")
        if isinstance(name, str) and _ID.match(name) and name_is_id(step[0]):
            auto[i] = name
    return out


def pile_position(numbering: Numbering) -> dict[int, int]:
    """Step index -> the position of its pile entry (members share their group's)."""
    return {i: n for n, entry in enumerate(numbering.entries) for i in entry}
