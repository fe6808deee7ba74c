"""A task's DAG as SVG, laid out in layers by networkx (no hand placement).

Layers are networkx's ``topological_generations`` (every step sits one layer right of its
deepest upstream step); inside a layer, steps are ordered by the mean position of their
upstream steps (one barycentre pass, which removes most crossings of typical task graphs).
Each node is a ``<g class="node" data-step=... data-state=...>`` with a state icon and the
step id as text, so the page can recolour it in place from the event stream; the state is
never shown by colour alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

import networkx as nx

__all__ = ["ICONS", "Layout", "layout", "svg"]

ICONS = {
    "pending": "○",
    "queued": "○",
    "running": "▶",
    "done": "✓",
    "failed": "✗",
    "timeout": "⏱",
    "cancelled": "■",
    "skipped": "↷",
    "upstream_failed": "⊘",
    "interrupted": "■",
}
_W, _H, _XGAP, _YGAP, _PAD = 170, 30, 50, 12, 10


@dataclass(frozen=True, slots=True)
class Layout:
    positions: dict[str, tuple[int, int]]  # step -> (layer, rank in layer)
    edges: list[tuple[str, str]]
    width: int
    height: int


def layout(graph: Any) -> Layout:
    """Layers and ranks of every node of a DAG."""
    g: nx.DiGraph = graph
    layers = [sorted(gen, key=str) for gen in nx.topological_generations(g)]
    rank: dict[str, float] = {}
    positions: dict[str, tuple[int, int]] = {}
    for li, nodes in enumerate(layers):
        if li:

            def centre(n: str) -> float:
                ups = [rank[p] for p in g.predecessors(n) if p in rank]
                return sum(ups) / len(ups) if ups else float("inf")

            nodes.sort(key=centre)
        for ri, node in enumerate(nodes):
            rank[node] = ri
            positions[node] = (li, ri)
    tallest = max((len(n) for n in layers), default=0)
    width = _PAD * 2 + len(layers) * (_W + _XGAP) - _XGAP
    height = _PAD * 2 + tallest * (_H + _YGAP) - _YGAP
    return Layout(positions, [(str(a), str(b)) for a, b in g.edges], max(width, 0), height)


def _xy(pos: tuple[int, int]) -> tuple[int, int]:
    return _PAD + pos[0] * (_W + _XGAP), _PAD + pos[1] * (_H + _YGAP)


def svg(graph: Any, states: Mapping[str, str] | None = None, *, link: str | None = None) -> str:
    """The SVG of ``graph``, each node in its state (default ``pending``). With ``link``
    (a format string taking ``step``), each node links there."""
    lay = layout(graph)
    states = states or {}
    out = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{lay.width}"'
        f' height="{lay.height}" viewBox="0 0 {lay.width} {lay.height}" role="img"'
        ' aria-label="task graph">'
    ]
    for a, b in lay.edges:
        x1, y1 = _xy(lay.positions[a])
        x2, y2 = _xy(lay.positions[b])
        x1, y1, y2 = x1 + _W, y1 + _H // 2, y2 + _H // 2
        mid = (x1 + x2) // 2
        out.append(
            f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"'
            f' data-from="{escape(a)}" data-to="{escape(b)}"/>'
        )
    for node, pos in lay.positions.items():
        x, y = _xy(pos)
        state = states.get(node, "pending")
        name = escape(node)
        label = escape(node if len(node) <= 20 else node[:19] + "…")
        inner = (
            f'<title>{name}: {escape(state)}</title><rect x="{x}" y="{y}" width="{_W}"'
            f' height="{_H}" rx="5"/><text x="{x + 8}" y="{y + 20}"><tspan class="icon">'
            f"{ICONS.get(state, '?')}</tspan> {label}</text>"
        )
        if link is not None:
            inner = f'<a href="{escape(link.format(step=node))}">{inner}</a>'
        out.append(
            f'<g class="node st-{escape(state)}" data-step="{name}" data-state="{escape(state)}">'
            f"{inner}</g>"
        )
    out.append("</svg>")
    return "".join(out)
