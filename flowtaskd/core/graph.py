"""The graph of a task's steps and everything wrong with it, found at once.

Edges run from a step to the steps that wait for it. A step without ``depends`` waits for
the step before it (so a plain upstream list is a chain); ``depends: []`` makes a root.
A step with ``to_group: G`` is the fan-out parent of group ``G`` and must be an iterator
(``FileList``); every step with ``Group: G`` runs once per item the parent produces. The
members of a group run together as one unit, so no other step may sit between two of them.

:func:`compile_graph` reports duplicate ids, unknown ``depends`` (with the nearest known
ids), each cycle with its path ``a -> b -> c -> a``, group mistakes, and
``{steps.<id>.output}`` naming a step that does not run before, and branch targets
(``IF``/``Switch``) that are unknown or do not run after their step. Schema validation runs it
too, on what could be read of invalid steps, so schema and graph problems come together.
Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flowtaskd.core.targets import target_problems
from flowtaskd.core.values import placeholders
from flowtaskd.errors import Problem, format_path

if TYPE_CHECKING:
    from flowtaskd.core.spec import StepSpec

__all__ = ["CompiledGraph", "Group", "LineOf", "compile_graph", "graph_problems"]

LineOf = Callable[[Sequence[str | int]], int | None]
_Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """A fan-out group: its parent step and its member steps (in file order)."""

    name: str
    parent: str
    members: tuple[str, ...]


def compile_graph(
    specs: Sequence[StepSpec],
    file: str | None = None,
    line_of: LineOf | None = None,
    partial: frozenset[int] = frozenset(),
) -> CompiledGraph:
    """The DAG of ``specs`` and every problem with it.

    ``partial`` holds the indexes of steps that failed validation (stand-ins with what could
    be read of them): the checks that need the whole truth (upstream order, group order,
    output references) are then left out rather than guessed.
    """
    return CompiledGraph(specs, file, line_of, partial)


def graph_problems(
    specs: Sequence[StepSpec],
    file: str | None = None,
    line_of: LineOf | None = None,
    partial: frozenset[int] = frozenset(),
) -> list[Problem]:
    """:func:`compile_graph`'s problems only."""
    return CompiledGraph(specs, file, line_of, partial).problems


class CompiledGraph:
    """The DAG of a list of steps, the effective ``depends`` of each (its predecessors, in
    order), the ``successors`` of each (in file order), its ``groups``, and everything wrong
    with it (``problems``). Plain lists, no networkx: a loaded task needs no more, and
    networkx is imported only to name a cycle."""

    def __init__(
        self,
        specs: Sequence[StepSpec],
        file: str | None,
        line_of: LineOf | None,
        partial: frozenset[int],
    ) -> None:
        self.specs = specs
        self.file, self.line_of = file, line_of
        self.problems: list[Problem] = []
        self._index: list[int] = []  # the step index of each problem
        self.groups: dict[str, Group] = {}
        self.first: dict[str, StepSpec] = {}  # id -> the step that has it
        for spec in specs:
            if spec.id in self.first:
                self._duplicate(spec, self.first[spec.id])
            else:
                self.first[spec.id] = spec
        self._pred: dict[str, list[str]] = {sid: [] for sid in self.first}
        self._succ: dict[str, list[str]] = {sid: [] for sid in self.first}
        self.depends = self._edges()
        self.successors: Mapping[str, list[str]] = self._succ
        if not _acyclic(self._succ, self._pred):
            self._cycles()
        sound = not self.problems and not partial
        self._groups(partial)
        if sound:
            self._group_order()
            self._references()
        self._targets(sound)
        order = sorted(range(len(self.problems)), key=self._index.__getitem__)
        self.problems = [self.problems[i] for i in order]  # in file order, stable

    def _add(self, spec: StepSpec, key: _Path, message: str, hint: str | None = None) -> None:
        path = _key_path(spec, *key)
        line = self.line_of(path) if self.line_of else None
        self.problems.append(Problem(message, self.file, line, format_path(path), hint))
        self._index.append(spec.index)

    def _where(self, spec: StepSpec) -> str:
        line = self.line_of(_key_path(spec)) if self.line_of else None
        return f"steps[{spec.index}]" + (f", line {line}" if line else "")

    def _duplicate(self, spec: StepSpec, first: StepSpec) -> None:
        if spec.options.name is not None:
            self._add(spec, ("name",), f"duplicate step id `{spec.id}` (also {self._where(first)})")
        else:
            self._add(
                spec,
                (),
                f"this step's id `{spec.id}` is already the name of {self._where(first)}",
                "give that step another `name:`",
            )

    def _edges(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        known = list(self.first)
        for n, spec in enumerate(self.specs):
            given = spec.options.depends
            if given is None:
                given = [self.specs[n - 1].id] if n else []
            deps = list(dict.fromkeys(str(d) for d in given))
            out.append(tuple(deps))
            owner = self.first[spec.id] is spec
            for dep in deps:
                if dep not in self.first:
                    near = _nearest(dep, [k for k in known if k != spec.id])
                    names = ", ".join(f"`{k}`" for k in near) or "none"
                    self._add(
                        spec,
                        ("depends",),
                        f"depends on unknown step `{dep}`",
                        f"nearest known ids: {names}",
                    )
                elif owner:
                    self._pred[spec.id].append(dep)
                    self._succ[dep].append(spec.id)
        return out

    def _cycles(self) -> None:
        import networkx as nx  # noqa: PLC0415 - lazy: only a task with a cycle needs it

        graph = nx.DiGraph()
        graph.add_nodes_from(self.first)
        graph.add_edges_from((u, v) for v, us in self._pred.items() for u in us)
        order = {sid: i for i, sid in enumerate(self.first)}
        cycles = []
        for scc in nx.strongly_connected_components(graph):
            start = min(scc, key=order.__getitem__)
            if len(scc) > 1 or graph.has_edge(start, start):
                cycles.append(_cycle_through(self._succ, scc, start, order))
        for path in sorted(cycles, key=lambda p: order[p[0]]):
            self._add(
                self.first[path[0]],
                ("depends",),
                "dependency cycle: " + " -> ".join(path),
                "`a -> b` means b waits for a; remove one of these dependencies",
            )

    def _groups(self, partial: frozenset[int]) -> None:
        parents: dict[str, StepSpec] = {}
        members: dict[str, list[StepSpec]] = {}
        for spec in self.specs:
            group, feeds = spec.options.Group, spec.options.to_group
            if feeds:
                if feeds in parents:
                    self._add(
                        spec,
                        ("to_group",),
                        f"group `{feeds}` is fed twice: by "
                        f"`{parents[feeds].id}` and by `{spec.id}`",
                        "a group has one parent; give each group its own name",
                    )
                else:
                    parents[feeds] = spec
                if spec.iterator is False:
                    self._add(
                        spec,
                        ("to_group",),
                        f"`to_group` needs an iterator component "
                        f"such as FileList, not {spec.component}",
                    )
                if group:
                    self._add(
                        spec,
                        ("to_group",),
                        "nested groups are not supported: a member "
                        f"of group `{group}` cannot feed group `{feeds}`",
                    )
            if group:
                members.setdefault(group, []).append(spec)
        for name, parent in parents.items():
            if name in members:
                ids = tuple(m.id for m in members[name])
                self.groups[name] = Group(name, parent.id, ids)
            else:
                self._add(
                    parent, ("to_group",), f"group `{name}` is empty: no step has `Group: {name}`"
                )
        for name, orphans in members.items():
            if name not in parents:
                near = difflib.get_close_matches(name, list(parents), n=1)
                for m in orphans:
                    self._add(
                        m,
                        ("Group",),
                        f"no step feeds group `{name}` (none has `to_group: {name}`)",
                        f"did you mean `{near[0]}`?"
                        if near
                        else f"add `to_group: {name}` to an iterator step such as FileList",
                    )

    def _group_order(self) -> None:
        unit = {m: f"group {g.name}" for g in self.groups.values() for m in g.members}
        for g in self.groups.values():
            after = _reach(self._succ, g.parent)
            for m in g.members:
                if m not in after:
                    self._add(
                        self.first[m],
                        ("Group",),
                        f"a member of group `{g.name}` must run after its parent `{g.parent}`",
                        f"add `depends: {g.parent}`, or depend on a step after it",
                    )
        if not unit:
            return
        usucc: dict[str, list[str]] = {unit.get(n, n): [] for n in self._succ}
        upred: dict[str, list[str]] = {u: [] for u in usucc}
        for v, ups in self._pred.items():
            for u in ups:
                a, b = unit.get(u, u), unit.get(v, v)
                if a != b:
                    usucc[a].append(b)
                    upred[b].append(a)
        if _acyclic(usucc, upred):
            return
        for g in self.groups.values():
            ms = set(g.members)
            below = set().union(*(_reach(self._succ, m) for m in ms)) - ms
            above = set().union(*(_reach(self._pred, m) for m in ms)) - ms
            for sid in (s.id for s in self.specs if s.id in below & above):
                self._add(
                    self.first[sid],
                    (),
                    f"`{sid}` runs after one member of group "
                    f"`{g.name}` and before another, but a group's members run together, "
                    "once per item",
                    f"make it a member with `Group: {g.name}`, or let it wait for the whole group",
                )

    def _references(self) -> None:
        member_of = {m: g.name for g in self.groups.values() for m in g.members}
        for spec in self.specs:
            refs = list(_step_refs(spec))
            if not refs:
                continue
            before = _reach(self._pred, spec.id)
            for key, ref in refs:
                token = f"`{{steps.{ref}.output}}`"
                if ref == spec.id:
                    self._add(spec, key, f"{token} names this step itself")
                elif ref not in self.first:
                    near = _nearest(ref, [k for k in self.first if k != spec.id])
                    self._add(
                        spec,
                        key,
                        f"{token} names an unknown step",
                        "nearest known ids: " + ", ".join(f"`{k}`" for k in near),
                    )
                elif ref not in before:
                    self._add(
                        spec,
                        key,
                        f"{token} names a step that does not run before `{spec.id}`",
                        f"add `depends: [{ref}]`",
                    )
                elif ref in member_of and member_of.get(spec.id) != member_of[ref]:
                    self._add(
                        spec,
                        key,
                        f"{token} names a member of group `{member_of[ref]}`: "
                        "it runs once per item, and only the group's own members see "
                        "its output",
                    )

    def _targets(self, sound: bool) -> None:
        """The steps IF/Switch name (:mod:`flowtaskd.core.targets`)."""
        for spec in self.specs:
            after = partial(_reach, self._succ, spec.id) if sound else None
            near = partial(_nearest, ids=[k for k in self.first if k != spec.id])
            for key, msg, hint in target_problems(spec.id, spec.params, self.first, after, near):
                self._add(spec, key, msg, hint)


def _key_path(spec: StepSpec, *key: str | int) -> _Path:
    """``steps[i].Component.key``; just ``steps[i]`` for a step that is not a mapping."""
    return ("steps", spec.index, spec.component, *key) if spec.component else ("steps", spec.index)


def _nearest(word: str, ids: Sequence[str]) -> list[str]:
    """The 3 ids most like ``word`` (ties in file order); only close ones if any is."""
    matcher = difflib.SequenceMatcher(b=word)
    scored = []
    for n, candidate in enumerate(ids):
        matcher.set_seq1(candidate)
        scored.append((-matcher.ratio(), n, candidate))
    best = sorted(scored)[:3]
    close = [c for score, _, c in best if -score >= 0.5]
    return close or [c for _, _, c in best]


def _cycle_through(
    succ: Mapping[str, list[str]], scc: set[str], start: str, order: dict[str, int]
) -> list[str]:
    """The shortest cycle from ``start`` back to it inside one strongly connected part."""
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(set(succ[node]), key=order.__getitem__):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if nxt in scc and nxt not in came:
                came[nxt] = node
                queue.append(nxt)
    return [start, start]  # pragma: no cover - an SCC always has a way back


_OPTION_TEXTS = ("env", "cwd", "precondition")


def _step_refs(spec: StepSpec) -> Iterator[tuple[_Path, str]]:
    """``(key path, step id)`` for each ``{steps.<id>.output}`` in the step's strings."""
    if spec.raw is not None:  # as written: one quick look, then the exact keys
        if "{steps." not in repr(spec.raw):
            return
        roots: list[tuple[_Path, Any]] = [((), spec.raw)]
    else:
        roots = [((), spec.params)] + [((k,), getattr(spec.options, k)) for k in _OPTION_TEXTS]
    for key, text in _strings(roots):
        for name in placeholders(text):
            if name.startswith("steps.") and name.endswith(".output"):
                yield key, name[len("steps.") : -len(".output")]


def _strings(roots: list[tuple[_Path, Any]]) -> list[tuple[_Path, str]]:
    """Each string (under its key path) that holds ``{steps.``, in key order."""
    found: list[tuple[_Path, str]] = []
    todo = list(reversed(roots))
    while todo:
        key, value = todo.pop()
        if isinstance(value, str):
            if "{steps." in value:
                found.append((key, value))
            continue
        if isinstance(value, BaseModel):
            value = vars(value)
        if isinstance(value, dict):
            items: Iterable[tuple[str | int, Any]] = value.items()
        elif isinstance(value, list | tuple):
            items = enumerate(value)
        else:
            continue
        todo.extend(((*key, k), v) for k, v in reversed(list(items)))
    return found


def _reach(adjacent: Mapping[str, list[str]], start: str) -> set[str]:
    """Every node reachable from ``start`` (``start`` itself only through a cycle)."""
    seen: set[str] = set()
    todo = list(adjacent[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(adjacent[node])
    return seen


def _acyclic(succ: Mapping[str, list[str]], pred: Mapping[str, list[str]]) -> bool:
    """Kahn's algorithm: can every node be ordered after all of its predecessors?"""
    waiting = {node: len(ups) for node, ups in pred.items()}
    ready = [node for node, n in waiting.items() if n == 0]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for nxt in succ[node]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return done == len(waiting)
