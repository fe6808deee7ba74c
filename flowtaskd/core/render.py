"""Draw a TaskPile as text, Graphviz dot or Mermaid, groups shown. Pure.

Steps come in a stable topological order (file order among the ready ones). In dot and
Mermaid a group is a dashed cluster / subgraph holding its members; its parent stays
outside and feeds it.
"""

from __future__ import annotations

import networkx as nx

from flowtaskd.core.pile import TaskPile
from flowtaskd.core.rules import TriggerRule

__all__ = ["FORMATS", "order", "render"]

FORMATS = ("text", "dot", "mermaid")


def render(pile: TaskPile, fmt: str = "text") -> str:
    """The DAG of ``pile`` as ``text``, ``dot`` or ``mermaid``."""
    if fmt == "dot":
        return _dot(pile)
    if fmt == "mermaid":
        return _mermaid(pile)
    if fmt == "text":
        return _text(pile)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def order(pile: TaskPile) -> list[str]:
    """Step ids in topological order; ties broken by file order."""
    index = {s.id: i for i, s in enumerate(pile)}
    return list(nx.lexicographical_topological_sort(pile.graph, key=index.__getitem__))


def _text(pile: TaskPile) -> str:
    groups = pile.groups
    lines = [f"task {pile.name}: {len(pile)} steps, {len(groups)} groups"]
    for sid in order(pile):
        step = pile[sid]
        ups = pile.upstream(sid)
        tags = []
        if step.to_group:
            tags.append(f"feeds group {step.to_group}")
        if step.group:
            tags.append(f"in group {step.group}, once per item")
        rule = step.spec.options.trigger_rule if step.spec else TriggerRule.ALL_SUCCESS
        if rule is not TriggerRule.ALL_SUCCESS:
            tags.append(f"runs on {rule}")
        after = f" <- {', '.join(ups)}" if ups else " (root)"
        extra = f"  [{'; '.join(tags)}]" if tags else ""
        lines.append(f"  {sid} ({step.component}){after}{extra}")
    for g in groups.values():
        lines.append(f"group {g.name}: {g.parent} -> each item -> {', '.join(g.members)}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(sid: str, component: str) -> str:
    return _q(sid)[:-1] + "\\n" + _q(component)[1:]  # dot's \n: a centred line break


def _dot(pile: TaskPile) -> str:
    out = [f"digraph {_q(pile.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    grouped = {m for g in pile.groups.values() for m in g.members}
    for s in pile:
        if s.id not in grouped:
            out.append(f"  {_q(s.id)} [label={_dot_label(s.id, s.component)}];")
    for g in pile.groups.values():
        out.append(f"  subgraph {_q('cluster_' + g.name)} {{")
        out.append(f"    label={_q('group ' + g.name + ' (once per item)')}; style=dashed;")
        out.extend(f"    {_q(m)} [label={_dot_label(m, pile[m].component)}];" for m in g.members)
        out.append("  }")
    out.extend(f"  {_q(u)} -> {_q(v)};" for u, v in pile.graph.edges)
    out.append("}")
    return "\n".join(out) + "\n"


def _m(text: str) -> str:
    """Text inside a Mermaid ``"..."`` label."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")


def _mermaid(pile: TaskPile) -> str:
    ids = {s.id: f"s{i}" for i, s in enumerate(pile)}
    out = ["flowchart LR"]
    grouped = {m for g in pile.groups.values() for m in g.members}
    for s in pile:
        if s.id not in grouped:
            out.append(f'  {ids[s.id]}["{_m(s.id)}<br/>{_m(s.component)}"]')
    for n, g in enumerate(pile.groups.values()):
        out.append(f'  subgraph g{n}["group {_m(g.name)} (once per item)"]')
        out.extend(f'    {ids[m]}["{_m(m)}<br/>{_m(pile[m].component)}"]' for m in g.members)
        out.append("  end")
    out.extend(f"  {ids[u]} --> {ids[v]}" for u, v in pile.graph.edges)
    return "\n".join(out) + "\n"
