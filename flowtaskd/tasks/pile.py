"""``Step`` and ``TaskPile``: a validated task as a networkx DAG of steps, with groups.

Edges run from a step to the steps that wait for it. A step without ``depends`` waits for
the step before it (so a plain upstream list is a chain); ``depends: []`` makes a root.
A step with ``to_group: G`` is the fan-out parent of group ``G``; every step with
``Group: G`` runs once per item the parent produces. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from flowtaskd.components.registry import get_component
from flowtaskd.errors import Problem, TaskParseError, format_path
from flowtaskd.tasks.schema import StepSpec, TaskDefinition, validate_definition

__all__ = ["Group", "Step", "TaskPile"]

_STEP_REF = re.compile(r"\{steps\.([^.{}]+)\.output\}")


class Step:
    """One step of a task: a component with its parameters (flowtask's ``Step``)."""

    __slots__ = ("depends", "group", "id", "name", "params", "program", "spec", "to_group")

    def __init__(
        self,
        step_name: str,
        step_id: str,
        params: Mapping[str, Any],
        program: str | None = None,
        *,
        spec: StepSpec | None = None,
    ) -> None:
        self.name = step_name  # the component
        self.id = step_id
        self.params = dict(params)
        self.program = program
        self.spec = spec
        self.depends: tuple[str, ...] = ()
        self.group: str | None = spec.options.Group if spec else None
        self.to_group: str | None = spec.options.to_group if spec else None

    def __repr__(self) -> str:
        return f"Step({self.name!r}, {self.id!r})"


@dataclass(frozen=True, slots=True)
class Group:
    """A fan-out group: its parent step and its member steps (in file order)."""

    name: str
    parent: str
    members: tuple[str, ...]


class TaskPile:
    """Parses a task definition into steps and a DAG (flowtask's ``TaskPile``).

    ``task`` is a task dict (as read from a file) or an already validated
    :class:`TaskDefinition`. Raises :class:`TaskParseError` listing every problem.
    """

    def __init__(self, task: Mapping[str, Any] | TaskDefinition, program: str | None = None) -> None:
        self.definition = task if isinstance(task, TaskDefinition) else validate_definition(dict(task))
        self.task = self.definition.raw
        self.program = program
        self._graph: nx.DiGraph = nx.DiGraph()
        self._task: list[Step] = []
        self._by_id: dict[str, Step] = {}
        self._groups: dict[str, Group] = {}
        self._size = 0
        self._built = False
        self.build()

    # -- building ----------------------------------------------------------------
    def build(self) -> TaskPile:
        """Compile the steps and the dependency graph; verify it is a DAG."""
        if self._built:
            return self
        d = self.definition
        problems: list[Problem] = []

        def add(msg: str, spec: StepSpec, *key: str | int, hint: str | None = None) -> None:
            path = ("steps", spec.index, spec.component, *key)
            problems.append(Problem(msg, d.file, d.line_of(path), format_path(path), hint))

        steps: list[Step] = []
        by_id: dict[str, Step] = {}
        for spec in d.steps:
            step = Step(spec.component, spec.id, dict(spec.params), self.program, spec=spec)
            if spec.id in by_id:
                first = by_id[spec.id].spec
                assert first is not None
                where = f"line {first.line}" if first.line else f"steps[{first.index}]"
                add(f"duplicate step id `{spec.id}` (first used at {where})", spec, "name")
            else:
                by_id[spec.id] = step
            steps.append(step)
        known = list(by_id)
        graph = self._graph
        graph.add_nodes_from(known)
        for i, step in enumerate(steps):
            spec = step.spec
            assert spec is not None
            deps = spec.options.depends
            if deps is None:
                deps = [steps[i - 1].id] if i > 0 else []
            for dep in deps:
                if dep not in by_id:
                    near = difflib.get_close_matches(dep, known, n=3, cutoff=0.5)
                    hint = f"nearest: {', '.join(near)}" if near else f"known: {', '.join(known[:8])}"
                    add(f"depends on unknown step `{dep}`", spec, "depends", hint=hint)
                    continue
                graph.add_edge(dep, step.id)
            step.depends = tuple(deps)
        if not problems:
            self._check_cycles(graph, add, by_id)
        if not problems:
            self._groups = self._build_groups(steps, by_id, add)
            self._check_step_refs(steps, by_id, add)
        if problems:
            raise TaskParseError(problems, d.file)
        self._task, self._by_id, self._size = steps, by_id, len(steps)
        self._built = True
        return self

    @staticmethod
    def _check_cycles(graph: nx.DiGraph, add: Any, by_id: dict[str, Step]) -> None:
        if nx.is_directed_acyclic_graph(graph):
            return
        cycle = nx.find_cycle(graph)
        path = [u for u, _ in cycle] + [cycle[0][0]]
        first = by_id[path[0]].spec
        add(f"dependency cycle: {' -> '.join(path)}", first, "depends")

    def _build_groups(self, steps: list[Step], by_id: dict[str, Step], add: Any) -> dict[str, Group]:
        parents: dict[str, Step] = {}
        members: dict[str, list[Step]] = {}
        for step in steps:
            spec = step.spec
            assert spec is not None
            if step.to_group:
                if step.to_group in parents:
                    other = parents[step.to_group].id
                    add(f"group `{step.to_group}` is fed by two steps: {other} and {step.id}",
                        spec, "to_group")
                    continue
                comp = get_component(step.name)
                if comp is not None and not comp.iterator:
                    add(f"`to_group` needs an iterator component such as FileList, not {step.name}",
                        spec, "to_group")
                if step.group:
                    add("nested groups are not supported: a group member cannot feed a group",
                        spec, "to_group")
                parents[step.to_group] = step
            if step.group:
                members.setdefault(step.group, []).append(step)
        groups: dict[str, Group] = {}
        for name, parent in parents.items():
            group_members = members.get(name, [])
            if not group_members:
                assert parent.spec is not None
                add(f"group `{name}` is empty: no step has `Group: {name}`", parent.spec, "to_group")
                continue
            ancestors_ok = nx.descendants(self._graph, parent.id)
            for m in group_members:
                if m.id not in ancestors_ok:
                    assert m.spec is not None
                    add(f"member of group `{name}` must run after its parent `{parent.id}`",
                        m.spec, "Group")
            groups[name] = Group(name, parent.id, tuple(m.id for m in group_members))
        for name, group_members in members.items():
            if name not in parents:
                near = difflib.get_close_matches(name, list(parents), n=1)
                for m in group_members:
                    assert m.spec is not None
                    add(f"member of group `{name}`, but no step has `to_group: {name}`",
                        m.spec, "Group", hint=f"did you mean `{near[0]}`?" if near else None)
        return groups

    def _check_step_refs(self, steps: list[Step], by_id: dict[str, Step], add: Any) -> None:
        for step in steps:
            refs = set(_STEP_REF.findall(_strings(step.params)))
            if not refs:
                continue
            ancestors = nx.ancestors(self._graph, step.id)
            for ref in sorted(refs):
                assert step.spec is not None
                if ref not in by_id:
                    add(f"`{{steps.{ref}.output}}` names an unknown step", step.spec)
                elif ref not in ancestors:
                    add(f"`{{steps.{ref}.output}}` refers to a step that does not run before "
                        f"`{step.id}`", step.spec, hint=f"add `depends: [{ref}]`")

    # -- flowtask API ------------------------------------------------------------
    @staticmethod
    def from_task_pile(
        task_pile: Sequence[Mapping[str, Any]],
        name: str = "Generated TaskPile",
        program: str | None = None,
    ) -> TaskPile:
        """Build from ``[{"task_id": ..., "step": "Component", **params}, ...]``.

        Unlike upstream, each item keeps its parameters and its ``depends``.
        """
        steps = []
        for item in task_pile:
            rest = {k: v for k, v in item.items() if k not in ("task_id", "step")}
            if "task_id" in item:
                rest["name"] = item["task_id"]
            steps.append({item.get("step", "Dummy"): rest})
        return TaskPile({"name": name, "steps": steps}, program=program)

    # -- queries -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def graph(self) -> nx.DiGraph:
        return self._graph

    @property
    def groups(self) -> dict[str, Group]:
        return dict(self._groups)

    @property
    def steps(self) -> list[Step]:
        return list(self._task)

    def group_of(self, step_id: str) -> Group | None:
        g = self._by_id[step_id].group
        return self._groups.get(g) if g else None

    def upstream(self, step_id: str) -> list[str]:
        return list(self._graph.predecessors(step_id))

    def downstream(self, step_id: str) -> list[str]:
        return list(self._graph.successors(step_id))

    def roots(self) -> list[str]:
        return [s.id for s in self._task if self._graph.in_degree(s.id) == 0]

    def __getitem__(self, step_id: str) -> Step:
        return self._by_id[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._by_id

    def __iter__(self) -> Iterator[Step]:
        return iter(self._task)

    def __len__(self) -> int:
        return self._size


def _strings(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return " ".join(_strings(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(_strings(v) for v in value)
    return ""
