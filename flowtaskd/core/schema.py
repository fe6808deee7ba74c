"""The task file format: validate a loaded document into a :class:`TaskDefinition`.

Every problem in a file is reported at once, each with file, line and key path
(``nightly.yaml:9: steps[2].Command.command: field required``): the loader's (duplicate
keys, YAML 1.1 traps), the header's, each step's (its component's parameter model plus the
options every step accepts), the ``events:`` actions', the schedules' and, when anything is
wrong, the graph's (unknown ``depends``, cycles, groups; see :mod:`flowtaskd.core.graph`)
as far as the steps can be read. A valid definition's graph is checked by ``TaskPile``.
Pure: no I/O beyond what the loader already read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, create_model

from flowtaskd.core.catalog import Catalog, ComponentInfo
from flowtaskd.core.cron import CronError, parse_cron, validate_timezone
from flowtaskd.core.eventblock import EVENT_ACTION_MODELS, EventAction, validate_events
from flowtaskd.core.graph import graph_problems
from flowtaskd.core.loader import Document
from flowtaskd.core.options import (
    STEP_OPTION_KEYS,
    EnvMap,
    NoParams,
    Overlap,
    PlaceholderMode,
    RetryPolicy,
    RunOrder,
    StepOptions,
    StrictModel,
    Timeout,
)
from flowtaskd.core.problems import closest, pydantic_problems, shown
from flowtaskd.core.spec import StepSpec
from flowtaskd.core.stepkeys import (
    NextTaskSpec,
    apply_attributes,
    link_steps,
    mask_problems,
    split_step_keys,
    validate_next_task,
)
from flowtaskd.core.upstream import NEXT_TASK, Numbering, number_steps
from flowtaskd.errors import Problem, TaskParseError, format_path

__all__ = [
    "EVENT_ACTION_MODELS",
    "EventAction",
    "StepSpec",
    "TaskDefinition",
    "TaskHeader",
    "pydantic_problems",
    "step_model",
    "validate_definition",
]

_Path = tuple[str | int, ...]
_STEP_EXAMPLE = "e.g. `- Command: {command: [echo, hi]}`"


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class TaskHeader(StrictModel):
    """Everything at the top level of a task file (steps are checked one by one)."""

    schema_uri: str | None = Field(
        default=None,
        alias="$schema",
        title="$schema",
        description="The JSON Schema the file is written against, for editors (not used).",
    )
    name: str = Field(min_length=1, description="The task's name, unique in a library.")
    description: str | None = None
    comments: str | None = None
    timezone: str | None = Field(default=None, description="IANA zone of the schedule.")
    events: dict[str, Any] | None = Field(  # each event checked by core.eventblock
        default=None, description="Event name -> list of {Action: {params}} (or true/false)."
    )
    steps: list[Any] = Field(min_length=1, description="Each step: {Component: {params}}.")
    schedule: Annotated[
        list[str] | None,
        BeforeValidator(_one_or_many, json_schema_input_type=str | list[str] | None),
    ] = Field(default=None, description="Cron string(s): 5 fields or a macro like @daily.")
    params: dict[str, Any] = Field(default_factory=dict, description="Defaults per run.")
    env: EnvMap = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="Env/param names to mask.")
    timeout: Timeout | None = None
    retry: RetryPolicy | None = Field(default=None, description="Default for every step.")
    max_active_runs: int = Field(default=1, ge=1)
    overlap: Overlap = Overlap.SKIP
    max_active_steps: int = Field(default=16, ge=1)
    masks: dict[str, Any] = Field(
        default_factory=dict, description="Upstream masks for every step: {name: [fn, {args}]}."
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Upstream variables every step starts with."
    )
    placeholders: PlaceholderMode = Field(
        default=PlaceholderMode.STRICT,
        description="lenient: an unknown {name} stays as written (upstream's behaviour).",
    )
    order: RunOrder = Field(
        default=RunOrder.DAG, description="file: run strictly in file order, as upstream does."
    )


_HEADER_KEYS = frozenset(f.alias or n for n, f in TaskHeader.model_fields.items())


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A validated task file. ``raw`` is the document as read (for sub-runs and dumps)."""

    header: TaskHeader
    steps: tuple[StepSpec, ...]
    events: Mapping[str, tuple[EventAction, ...]]
    file: str | None = None
    source: Document | None = field(default=None, compare=False, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    continuations: tuple[NextTaskSpec, ...] = ()
    """The ``NextTask`` steps: tasks to start when this one ends."""
    numbering: Numbering | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def schedules(self) -> tuple[str, ...]:
        return tuple(self.header.schedule or ())

    def line_of(self, path: Sequence[str | int]) -> int | None:
        return self.source.line_of(path) if self.source is not None else None


_STEP_MODELS: dict[ComponentInfo, type[BaseModel]] = {}


def step_model(component: ComponentInfo) -> type[BaseModel]:
    """One model of a step's mapping: the component's parameters plus every step option
    (for the JSON Schema; validation checks the two parts separately)."""
    model = _STEP_MODELS.get(component)
    if model is None:
        model = create_model(
            f"{component.name}Step",
            __base__=(component.Params, StepOptions),
            __doc__=component.summary or f"A {component.name} step.",
        )
        _STEP_MODELS[component] = model
    return model


# --- validation -------------------------------------------------------------------------------


class _Problems:
    """Collects the problems of one document."""

    def __init__(self, doc: Document | None) -> None:
        self.doc = doc
        self.file = doc.file if doc else None
        self.items: list[Problem] = list(doc.problems) if doc else []
        # a YAML 1.1 trap the loader reported: pydantic's error at that key would repeat it
        self._trapped = {p.path for p in self.items if p.path and "YAML 1.1" in p.message}

    def line_of(self, path: Sequence[str | int]) -> int | None:
        return self.doc.line_of(path) if self.doc is not None else None

    def add(
        self, message: str, path: _Path, hint: str | None = None, at: _Path | None = None
    ) -> None:
        """A problem at key ``path``, on the line of ``at`` (default: of ``path``)."""
        line = self.line_of(path if at is None else at)
        self.items.append(Problem(message, self.file, line, format_path(path), hint))

    def forgive_on_key(self, i: int) -> None:
        """NextTask's ``on:`` is its documented key: YAML 1.1 reading it as ``true`` is no
        trap there (upstream's loader reads it so too, and the key is taken back)."""
        at = f"steps[{i}].NextTask.on"
        self.items = [p for p in self.items if not (p.path == at and "YAML 1.1" in p.message)]

    def add_hint(self, message: str, path: _Path, hint: str | None) -> None:
        self.add(message, path, hint)

    def add_step(self, spec: StepSpec, key: _Path, message: str, hint: str | None) -> None:
        where: _Path = ("steps", spec.index, spec.component, *key)
        self.add(message, where, hint)

    def pydantic_of(self, exc: Exception, prefix: _Path, data: Any, model: type[Any]) -> None:
        assert isinstance(exc, ValidationError)
        self.pydantic(exc, prefix, data, frozenset(model.model_fields), model)

    def pydantic(
        self,
        exc: ValidationError,
        prefix: _Path,
        data: Any,
        known: frozenset[str],
        *models: type[BaseModel],
    ) -> None:
        for problem in pydantic_problems(exc, prefix, self.doc, known, data, models):
            if problem.path not in self._trapped:
                self.items.append(problem)


def validate_definition(
    data: Any, doc: Document | None = None, *, catalog: Catalog
) -> TaskDefinition:
    """Validate a task's data against the components of ``catalog``; raise
    :class:`TaskParseError` listing every problem."""
    found = _Problems(doc)
    if not isinstance(data, dict):
        what = "nothing" if data is None else type(data).__name__
        found.add(f"a task is a mapping with `name` and `steps`, got {what}", ())
        raise TaskParseError(found.items, found.file)
    header: TaskHeader | None = None
    try:
        header = TaskHeader.model_validate(data)
    except ValidationError as exc:
        found.pydantic(exc, (), data, _HEADER_KEYS, TaskHeader)
    raw_steps = data.get("steps")
    steps, partial, nexts, numbering = _validate_steps(raw_steps, found, catalog)
    events = validate_events(data.get("events"), found.add_hint, found.pydantic_of, closest)
    for problem in mask_problems(data.get("masks"), ("masks",)):
        found.add(*problem)
    if header is not None:
        _check_schedules(header, isinstance(data.get("schedule"), str), found)
    if numbering is not None and steps:
        order = header.order if header is not None else RunOrder.DAG
        steps = link_steps(steps, numbering, order, partial, found.add_step)
    if found.items or header is None:
        if steps:
            found.items.extend(graph_problems(steps, found.file, found.line_of, partial))
        found.items.sort(key=_file_order)  # stable: the same place keeps its order
        raise TaskParseError(found.items, found.file)
    return TaskDefinition(
        header, tuple(steps), events, found.file, doc, data, tuple(nexts), numbering
    )


_STEP_INDEX = re.compile(r"^steps\[(\d+)\]")


def _file_order(problem: Problem) -> tuple[int, int]:
    """Problems sort by line, or (a dict has no lines) by the step they are in."""
    step = _STEP_INDEX.match(problem.path)
    return (problem.line or 0, int(step[1]) if step else -1)


def _validate_steps(
    raw: Any, found: _Problems, components: Catalog
) -> tuple[list[StepSpec], frozenset[int], list[NextTaskSpec], Numbering | None]:
    """Every step that validates, plus stand-ins (in ``partial``) for those that do not,
    so the graph can still be checked around them; the ``NextTask`` continuations; and
    upstream's numbering of the list (the default step ids)."""
    if not isinstance(raw, list):
        return [], frozenset(), [], None

    def name_is_id(component: str) -> bool:
        comp = components.get(component)
        return comp is None or "name" not in comp.Params.model_fields

    numbering = number_steps(raw, name_is_id)
    steps: list[StepSpec] = []
    nexts: list[NextTaskSpec] = []
    partial: set[int] = set()
    for i, item in enumerate(raw):
        auto = numbering.ids[i]
        if isinstance(item, dict) and len(item) == 1 and NEXT_TASK in item:
            found.forgive_on_key(i)
            nt = validate_next_task(i, item[NEXT_TASK], auto or f"{NEXT_TASK}_{i + 1}", found.add)
            nexts.extend([nt] if nt is not None else [])
            continue
        spec = _validate_step(i, item, components, found, auto)
        if spec is None:
            spec = _stand_in(i, item, auto)
            partial.add(i)
        steps.append(spec)
    return steps, frozenset(partial), nexts, numbering


def _validate_step(
    i: int,
    item: Any,
    components: Catalog,
    found: _Problems,
    auto: str | None = None,
) -> StepSpec | None:
    where: _Path = ("steps", i)
    if not isinstance(item, dict) or len(item) != 1:
        found.add(
            "a step is a mapping with exactly one key, the component name", where, _STEP_EXAMPLE
        )
        return None
    ((comp_name, params),) = item.items()
    comp = components.get(comp_name) if isinstance(comp_name, str) else None
    if comp is None:
        near = closest(str(comp_name), set(components))
        hint = f"did you mean `{near}`?" if near else f"known: {', '.join(sorted(components))}"
        found.add(f"unknown component `{comp_name}`", where, hint, (*where, str(comp_name)))
        return None
    where = (*where, comp_name)
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        found.add(
            f"the parameters of a {comp_name} step are a mapping, got {shown(params)}",
            where,
            _STEP_EXAMPLE,
        )
        return None
    own, opts = split_step_keys(comp.Params, params)
    options = own_params = None
    try:
        options = StepOptions.model_validate(opts)
    except ValidationError as exc:
        found.pydantic(exc, where, params, _known(comp), StepOptions)
    if options is not None and options.attributes:
        own = apply_attributes(own, options.attributes, comp.Params)
    try:
        own_params = comp.Params.model_validate(own)
    except ValidationError as exc:
        found.pydantic(exc, where, params, _known(comp), comp.Params)
    for problem in mask_problems(params.get("masks"), (*where, "masks")):
        found.add(*problem)
    if options is None or own_params is None:
        return None
    line = found.line_of(where)  # the component key's line
    named = options.name if "name" not in comp.Params.model_fields else None
    step_id = named or auto or f"{comp_name}_{i + 1}"
    return StepSpec(i, step_id, comp.name, own_params, options, line, params, comp.iterator)


def _known(comp: ComponentInfo) -> frozenset[str]:
    return frozenset(comp.Params.model_fields) | STEP_OPTION_KEYS


def _stand_in(i: int, item: Any, numbered: str | None = None) -> StepSpec:
    """What can be read of an invalid step's id, ``depends`` and groups."""
    comp, params, auto = "", {}, f"step_{i + 1}"  # comp "": no key path below steps[i]
    if isinstance(item, dict) and len(item) == 1:
        ((key, value),) = item.items()
        comp, params = str(key), value if isinstance(value, dict) else {}
        auto = numbered or f"{comp}_{i + 1}"
    elif isinstance(item, str):  # `- Dummy`: probably meant as a component
        auto = f"{item}_{i + 1}"
    name = params.get("name")
    depends = params.get("depends")
    if isinstance(depends, str | int) and not isinstance(depends, bool):
        depends = [depends]
    elif depends is not None and not (
        isinstance(depends, list)
        and all(isinstance(d, str | int) and not isinstance(d, bool) for d in depends)
    ):
        depends = []  # unreadable: no edges, so nothing false is said about it
    group, feeds = (
        v if isinstance(v, str) and v else None for v in _get(params, "Group", "to_group")
    )
    options = StepOptions.model_construct(depends=depends, Group=group, to_group=feeds)
    step_id = name if isinstance(name, str) and name else auto
    return StepSpec(i, step_id, comp, NoParams(), options, raw=params)


def _get(params: Mapping[str, Any], *keys: str) -> list[Any]:
    return [params.get(k) for k in keys]


def _check_schedules(header: TaskHeader, single: bool, found: _Problems) -> None:
    if header.timezone is not None:
        try:
            validate_timezone(header.timezone)
        except CronError as exc:
            found.add(str(exc), ("timezone",))
    raw = header.schedule or []
    for k, expr in enumerate(raw):
        try:
            parse_cron(expr)
        except CronError as exc:
            found.add(str(exc), ("schedule",) if single else ("schedule", k))
