"""Draw a TaskPile as text, Graphviz dot or Mermaid, groups shown. Pure.

Steps come in a stable topological order (file order among the ready ones). In dot and
Mermaid a group is a dashed cluster / subgraph holding its members; its parent stays
outside and feeds it. Each step shows its retries and timeout; an edge into a step whose
trigger rule is not ``all_success`` is labelled with the rule; the task's schedules are in
the title. With ``states`` (step id -> status of one run, e.g. from the history) every
step is coloured by its state (dot: filled nodes, Mermaid: ``classDef``), or, as text,
prefixed by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flowtaskd.core.rules import TriggerRule

if TYPE_CHECKING:  # FORMATS is read by the CLI's parser: importing it loads no graph code
    from flowtaskd.core.pile import Step, TaskPile

__all__ = ["FORMATS", "STATE_COLOURS", "order", "render"]

FORMATS = ("text", "dot", "mermaid")

STATE_COLOURS: dict[str, str] = {
    "done": "#b7e4c7",
    "failed": "#f4a3a3",
    "timed_out": "#f7c59f",
    "upstream_failed": "#f6e3a1",
    "cancelled": "#d3d3d3",
    "skipped": "#e8e8f0",
    "running": "#a9c9f5",
    "pending": "#ffffff",
}
"""Fill colours by step status (pale, so the labels stay readable)."""


def render(pile: TaskPile, fmt: str = "text", states: Mapping[str, str] | None = None) -> str:
    """The DAG of ``pile`` as ``text``, ``dot`` or ``mermaid``, coloured by ``states``."""
    if fmt == "dot":
        return _dot(pile, states)
    if fmt == "mermaid":
        return _mermaid(pile, states)
    if fmt == "text":
        return _text(pile, states)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _details(step: Step) -> list[str]:
    """What a node shows under its name: retries and timeout."""
    options = step.spec.options if step.spec is not None else None
    out = []
    if options is not None and options.retry is not None and options.retry.attempts > 1:
        retry = options.retry
        wait = f", {_seconds(retry.delay)} {retry.backoff}" if retry.delay else ""
        out.append(f"retry x{retry.attempts - 1}{wait}")
    if options is not None and options.timeout is not None:
        out.append(f"timeout {_seconds(options.timeout)}")
    return out


def _rule(step: Step) -> TriggerRule:
    return step.spec.options.trigger_rule if step.spec else TriggerRule.ALL_SUCCESS


def _title(pile: TaskPile) -> str:
    schedules = pile.definition.schedules if pile.definition is not None else ()
    return pile.name + (f" (schedule: {', '.join(schedules)})" if schedules else "")


def order(pile: TaskPile) -> list[str]:
    """Step ids in topological order; ties broken by file order."""
    index = {s.id: i for i, s in enumerate(pile)}
    import networkx as nx  # noqa: PLC0415 - lazy (see the imports)

    return list(nx.lexicographical_topological_sort(pile.graph, key=index.__getitem__))


def _text(pile: TaskPile, states: Mapping[str, str] | None) -> str:
    groups = pile.groups
    steps = f"{len(pile)} step{'' if len(pile) == 1 else 's'}"
    lines = [f"task {_title(pile)}: {steps}, {len(groups)} group{'' if len(groups) == 1 else 's'}"]
    width = max((len(v) for v in (states or {}).values()), default=7)
    for sid in order(pile):
        step = pile[sid]
        ups = pile.upstream(sid)
        tags = []
        if step.to_group:
            tags.append(f"feeds group {step.to_group}")
        if step.group:
            tags.append(f"in group {step.group}, once per item")
        rule = _rule(step)
        if rule is not TriggerRule.ALL_SUCCESS:
            tags.append(f"runs on {rule}")
        tags += _details(step)
        after = f" <- {', '.join(ups)}" if ups else " (root)"
        extra = f"  [{'; '.join(tags)}]" if tags else ""
        state = f"{states.get(sid, 'pending'):<{width}}  " if states is not None else ""
        lines.append(f"  {state}{sid} ({step.component}){after}{extra}")
    for g in groups.values():
        lines.append(f"group {g.name}: {g.parent} -> each item -> {', '.join(g.members)}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_node(step: Step, states: Mapping[str, str] | None) -> str:
    lines = [step.id, step.component, *_details(step)]
    label = "\\n".join(_q(line)[1:-1] for line in lines)  # dot's \n: a centred line break
    attrs = f'label="{label}"'
    if states is not None:
        state = states.get(step.id, "pending")
        colour = STATE_COLOURS.get(state, "#ffffff")
        attrs += f', style=filled, fillcolor="{colour}", tooltip={_q(state)}'
    return f"{_q(step.id)} [{attrs}];"


def _dot(pile: TaskPile, states: Mapping[str, str] | None = None) -> str:
    out = [f"digraph {_q(pile.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    if _title(pile) != pile.name:
        out.append(f"  label={_q(_title(pile))}; labelloc=t;")
    grouped = {m for g in pile.groups.values() for m in g.members}
    for s in pile:
        if s.id not in grouped:
            out.append(f"  {_dot_node(s, states)}")
    for g in pile.groups.values():
        out.append(f"  subgraph {_q('cluster_' + g.name)} {{")
        out.append(f"    label={_q('group ' + g.name + ' (once per item)')}; style=dashed;")
        out.extend(f"    {_dot_node(pile[m], states)}" for m in g.members)
        out.append("  }")
    for u, v in pile.edges():
        rule = _rule(pile[v])
        label = f" [label={_q(str(rule))}]" if rule is not TriggerRule.ALL_SUCCESS else ""
        out.append(f"  {_q(u)} -> {_q(v)}{label};")
    out.append("}")
    return "\n".join(out) + "\n"


def _m(text: str) -> str:
    """Text inside a Mermaid ``"..."`` label."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")


def _mermaid_node(ids: dict[str, str], step: Step) -> str:
    label = "<br/>".join(_m(line) for line in (step.id, step.component, *_details(step)))
    return f'{ids[step.id]}["{label}"]'


def _mermaid(pile: TaskPile, states: Mapping[str, str] | None = None) -> str:
    ids = {s.id: f"s{i}" for i, s in enumerate(pile)}
    out = []
    if _title(pile) != pile.name:
        out += ["---", f"title: {_q(_title(pile))}", "---"]
    out.append("flowchart LR")
    grouped = {m for g in pile.groups.values() for m in g.members}
    for s in pile:
        if s.id not in grouped:
            out.append(f"  {_mermaid_node(ids, s)}")
    for n, g in enumerate(pile.groups.values()):
        out.append(f'  subgraph g{n}["group {_m(g.name)} (once per item)"]')
        out.extend(f"    {_mermaid_node(ids, pile[m])}" for m in g.members)
        out.append("  end")
    for u, v in pile.edges():
        rule = _rule(pile[v])
        arrow = f"-->|{_m(str(rule))}|" if rule is not TriggerRule.ALL_SUCCESS else "-->"
        out.append(f"  {ids[u]} {arrow} {ids[v]}")
    if states is not None:
        used = {states.get(s.id, "pending") for s in pile}
        for state in sorted(used):
            colour = STATE_COLOURS.get(state, "#ffffff")
            out.append(f"  classDef {state} fill:{colour},stroke:#555")
        for state in sorted(used):
            members = [ids[s.id] for s in pile if states.get(s.id, "pending") == state]
            out.append(f"  class {','.join(members)} {state}")
    return "\n".join(out) + "\n"
