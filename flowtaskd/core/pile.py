"""``Step`` and ``TaskPile``: a validated task as a DAG of steps, with groups.

``TaskPile(task)`` validates a task dict (or takes a :class:`TaskDefinition`), then builds
the DAG with :func:`~flowtaskd.core.graph.compile_graph` (the rules live there: default
chain, ``depends: []`` roots, groups, cycle paths) and raises one
:class:`~flowtaskd.errors.TaskParseError` listing every problem. Pure: no I/O.

The pile keeps its edges as tuples of step ids (what a run asks: a step's upstream and
downstream steps); :attr:`TaskPile.graph`, a networkx ``DiGraph``, is built from them on
first use, so loading and running a task import no networkx and keep no graph objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtaskd.core.catalog import Catalog
from flowtaskd.core.graph import Group, compile_graph
from flowtaskd.core.loader import load_document
from flowtaskd.core.schema import StepSpec, TaskDefinition, validate_definition
from flowtaskd.core.values import has_braces
from flowtaskd.errors import Problem, TaskParseError

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Group", "Step", "TaskPile", "check_syntax", "load_pile", "load_task"]


class Step:
    """One step of a task: a component with its parameters (flowtask's ``Step``).

    ``component`` is the component's name (upstream's ``step_name``); ``id`` is the step's
    id (upstream's ``step_id``): an int ``step_id`` makes ``<step_name>_<step_id>`` as
    upstream does. ``depends`` is what
    the step waits for (in a :class:`TaskPile`: after the default chain is applied).
    """

    __slots__ = (
        "_templated",
        "component",
        "depends",
        "group",
        "id",
        "params",
        "program",
        "spec",
        "to_group",
    )

    def __init__(
        self,
        step_name: str,
        step_id: str | int,
        params: Mapping[str, Any],
        program: str | None = None,
        *,
        spec: StepSpec | None = None,
    ) -> None:
        self.component = step_name
        self.id = f"{step_name}_{step_id}" if isinstance(step_id, int) else step_id
        self.params = dict(params)
        self.program = program
        self.spec = spec
        if spec is not None:
            deps: Any = spec.options.depends
            self.group, self.to_group = spec.options.Group, spec.options.to_group
        else:
            deps = params.get("depends")
            self.group, self.to_group = params.get("Group"), params.get("to_group")
        self.depends: tuple[str, ...] = (deps,) if isinstance(deps, str) else tuple(deps or ())
        self._templated: bool | None = None

    @property
    def templated(self) -> bool:
        """Whether the step's parameters, env, cwd or precondition hold placeholders.

        Worked out once per pile: every run of the step asks, and most steps have none.
        """
        if self._templated is None:
            o = self.spec.options if self.spec is not None else None
            parts = [self.params] if o is None else [self.params, o.env, o.cwd, o.precondition]
            self._templated = has_braces(parts)
        return self._templated

    @property
    def step_name(self) -> str:
        return self.component

    @property
    def step_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Step({self.component!r}, {self.id!r})"


class TaskPile:
    """Parses a task definition into steps and a DAG (flowtask's ``TaskPile``).

    ``task`` is an already validated :class:`TaskDefinition`, or a task dict (as read from
    a file) validated against the components of ``catalog``. Raises
    :class:`TaskParseError` listing every problem. :class:`flowtaskd.tasks.TaskPile` is
    this class with the installed components as the catalog.
    """

    def __init__(
        self,
        task: Mapping[str, Any] | TaskDefinition,
        program: str | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> None:
        if isinstance(task, TaskDefinition):
            self.definition = task
        elif catalog is None:
            raise TypeError("validating a task dict needs a component catalog")
        else:
            data = dict(task) if isinstance(task, Mapping) else task
            self.definition = validate_definition(data, catalog=catalog)
        self.task = self.definition.raw
        self.program = program
        self._graph: nx.DiGraph | None = None
        self._pred: dict[str, tuple[str, ...]] = {}
        self._succ: dict[str, tuple[str, ...]] = {}
        self._task: list[Step] = []
        self._by_id: dict[str, Step] = {}
        self._groups: dict[str, Group] = {}
        self._built = False
        self.build()

    def build(self) -> TaskPile:
        """Compile the steps and the dependency graph; verify it is a DAG (once)."""
        if self._built:
            return self
        d = self.definition
        graph = compile_graph(d.steps, d.file, d.line_of)
        if graph.problems:
            raise TaskParseError(graph.problems, d.file)
        for spec, deps in zip(d.steps, graph.depends, strict=True):
            step = Step(spec.component, spec.id, spec.params.model_dump(), self.program, spec=spec)
            step.depends = deps
            self._task.append(step)
            self._by_id[step.id] = step
            self._pred[step.id] = deps
        self._succ = {sid: tuple(vs) for sid, vs in graph.successors.items()}
        self._groups, self._built = graph.groups, True
        return self

    @classmethod
    def from_task_pile(
        cls,
        task_pile: Sequence[Mapping[str, Any]],
        name: str = "Generated TaskPile",
        program: str | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> TaskPile:
        """Build from ``[{"task_id": "a", "step": "Command", "command": [...], ...}]``.

        Unlike upstream, each item keeps its parameters and its ``depends``; ``task_id``
        becomes the step's ``name``.
        """
        steps: list[dict[str, Any]] = []
        problems: list[Problem] = []
        for i, item in enumerate(task_pile):
            if not isinstance(item, Mapping) or not isinstance(item.get("step"), str):
                problems.append(
                    Problem(
                        "an item is a mapping with `step` (a component name), and optionally "
                        "`task_id`, `depends` and the step's parameters",
                        path=f"task_pile[{i}]",
                    )
                )
                continue
            params = {k: v for k, v in item.items() if k not in ("task_id", "step")}
            if item.get("task_id") is not None:
                params["name"] = str(item["task_id"])
            steps.append({item["step"]: params})
        if problems:
            raise TaskParseError(problems)
        return cls({"name": name, "steps": steps}, program=program, catalog=catalog)

    # -- queries -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def graph(self) -> nx.DiGraph:
        """The DAG as a networkx ``DiGraph`` (built on first use, then kept)."""
        if self._graph is None:
            import networkx as nx  # noqa: PLC0415 - lazy: see the module's docstring

            graph = nx.DiGraph()
            graph.add_nodes_from(self._by_id)
            graph.add_edges_from(self.edges())
            self._graph = graph
        return self._graph

    def predecessors(self, step_id: str) -> tuple[str, ...]:
        """The steps ``step_id`` waits for, in its ``depends`` order."""
        return self._pred[step_id]

    def successors(self, step_id: str) -> tuple[str, ...]:
        """The steps that wait for ``step_id``, in file order."""
        return self._succ[step_id]

    def edges(self) -> list[tuple[str, str]]:
        """Every ``(upstream, downstream)`` pair, in the order networkx lists them."""
        return [(u, v) for u, vs in self._succ.items() for v in vs]

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
        return list(self._pred[step_id])

    def downstream(self, step_id: str) -> list[str]:
        return list(self._succ[step_id])

    def roots(self) -> list[str]:
        return [s.id for s in self._task if not self._pred[s.id]]

    def __getitem__(self, step_id: str) -> Step:
        return self._by_id[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._by_id

    def __iter__(self) -> Iterator[Step]:
        return iter(self._task)

    def __len__(self) -> int:
        return len(self._task)


def load_pile(path: str | Path, program: str | None = None, *, catalog: Catalog) -> TaskPile:
    """Read, validate and build a task file's DAG (every problem reported at once)."""
    doc = load_document(path)
    return TaskPile(validate_definition(doc.data, doc, catalog=catalog), program=program)


def load_task(path: str | Path, *, catalog: Catalog) -> TaskDefinition:
    """Read a JSON, YAML or TOML task file into a validated definition (its graph too)."""
    return load_pile(path, catalog=catalog).definition


def check_syntax(task: Mapping[str, Any] | TaskDefinition, *, catalog: Catalog) -> bool:
    """True if ``task`` (a dict) is a valid task, else raise :class:`TaskParseError`."""
    TaskPile(task, catalog=catalog)
    return True
