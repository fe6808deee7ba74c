"""Draw a TaskPile as text, Graphviz dot or Mermaid, groups shown. Pure."""

from __future__ import annotations

import networkx as nx

from flowtaskd.tasks.pile import TaskPile

__all__ = ["FORMATS", "render"]

FORMATS = ("text", "dot", "mermaid")


def render(pile: TaskPile, fmt: str = "text") -> str:
    if fmt == "dot":
        return _dot(pile)
    if fmt == "mermaid":
        return _mermaid(pile)
    return _text(pile)


def _order(pile: TaskPile) -> list[str]:
    index = {s.id: i for i, s in enumerate(pile)}
    return list(nx.lexicographical_topological_sort(pile.graph, key=lambda n: index[n]))


def _text(pile: TaskPile) -> str:
    lines = [f"task {pile.name}: {len(pile)} steps, {len(pile.groups)} groups"]
    for sid in _order(pile):
        step = pile[sid]
        ups = pile.upstream(sid)
        tags = []
        if step.to_group:
            tags.append(f"feeds group {step.to_group}")
        if step.group:
            tags.append(f"in group {step.group}, once per item")
        after = f" <- {', '.join(ups)}" if ups else " (root)"
        extra = f"  [{'; '.join(tags)}]" if tags else ""
        lines.append(f"  {sid} ({step.name}){after}{extra}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(pile: TaskPile) -> str:
    out = [f"digraph {_q(pile.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    grouped = {m for g in pile.groups.values() for m in g.members}
    for g in pile.groups.values():
        out.append(f"  subgraph {_q('cluster_' + g.name)} {{")
        out.append(f"    label={_q('group ' + g.name + ' (per item)')}; style=dashed;")
        out.extend(f"    {_q(m)} [label={_q(m + chr(10) + pile[m].name)}];" for m in g.members)
        out.append("  }")
    for s in pile:
        if s.id not in grouped:
            out.append(f"  {_q(s.id)} [label={_q(s.id + chr(10) + s.name)}];")
    out.extend(f"  {_q(u)} -> {_q(v)};" for u, v in pile.graph.edges)
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid(pile: TaskPile) -> str:
    ids = {s.id: f"s{i}" for i, s in enumerate(pile)}
    out = ["flowchart LR"]
    grouped = {m for g in pile.groups.values() for m in g.members}
    for g in pile.groups.values():
        out.append(f'  subgraph {g.name}["group {g.name} (per item)"]')
        out.extend(f'    {ids[m]}["{m}<br/>{pile[m].name}"]' for m in g.members)
        out.append("  end")
    for s in pile:
        if s.id not in grouped:
            out.append(f'  {ids[s.id]}["{s.id}<br/>{s.name}"]')
    out.extend(f"  {ids[u]} --> {ids[v]}" for u, v in pile.graph.edges)
    return "\n".join(out) + "\n"
