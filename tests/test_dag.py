"""flowtaskd.daemon.web.dag: layered layout of a task graph and its SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import networkx as nx

from flowtaskd.daemon.web.dag import ICONS, layout, svg

NS = "{http://www.w3.org/2000/svg}"


def _graph(edges: list[tuple[str, str]], nodes: tuple[str, ...] = ()) -> nx.DiGraph:
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def test_layers_follow_the_deepest_upstream() -> None:
    g = _graph(
        [
            ("fetch", "sales"),
            ("fetch", "stock"),
            ("sales", "publish"),
            ("stock", "publish"),
            ("fetch", "publish"),
        ]
    )
    lay = layout(g)
    assert lay.positions["fetch"] == (0, 0)
    assert {lay.positions["sales"], lay.positions["stock"]} == {(1, 0), (1, 1)}
    assert lay.positions["publish"] == (2, 0)
    assert sorted(lay.edges) == sorted(g.edges)
    assert lay.width == 10 * 2 + 3 * (170 + 50) - 50
    assert lay.height == 10 * 2 + 2 * (30 + 12) - 12


def test_a_layer_is_ordered_by_its_upstream_positions() -> None:
    # b is above a in layer 0 (sorted names: a, b); their children are placed under them
    g = _graph([("a", "z_child_of_a"), ("b", "a_child_of_b")])
    lay = layout(g)
    assert lay.positions["a"] == (0, 0) and lay.positions["b"] == (0, 1)
    assert lay.positions["z_child_of_a"] == (1, 0)
    assert lay.positions["a_child_of_b"] == (1, 1)


def test_an_empty_graph() -> None:
    lay = layout(_graph([]))
    assert lay.positions == {} and lay.edges == []
    assert lay.width == 0


def test_svg_nodes_carry_state_icon_and_escaped_names() -> None:
    g = _graph([("a<b", "c")])
    out = svg(g, {"a<b": "failed"}, link="/runs/r1/steps/{step}")
    root = ET.fromstring(out)
    nodes = {n.get("data-step"): n for n in root.iter(f"{NS}g")}
    assert set(nodes) == {"a<b", "c"}
    assert nodes["a<b"].get("data-state") == "failed"
    assert nodes["a<b"].get("class") == "node st-failed"
    assert nodes["c"].get("data-state") == "pending"  # the default
    text = "".join(nodes["a<b"].itertext())
    assert ICONS["failed"] in text and "a<b: failed" in text
    link = nodes["c"].find(f"{NS}a")
    assert link is not None and link.get("href") == "/runs/r1/steps/c"
    edges = list(root.iter(f"{NS}path"))
    assert [(e.get("data-from"), e.get("data-to")) for e in edges] == [("a<b", "c")]


def test_svg_long_names_are_cut_in_the_label_not_the_title() -> None:
    name = "a-very-long-step-name-indeed"
    out = svg(_graph([], (name,)))
    root = ET.fromstring(out)
    label = "".join(next(root.iter(f"{NS}text")).itertext())
    assert label.endswith(name[:19] + "…")
    assert next(root.iter(f"{NS}title")).text == f"{name}: pending"


def test_svg_unknown_state_gets_a_question_mark() -> None:
    out = svg(_graph([], ("a",)), {"a": "weird"})
    assert '<tspan class="icon">?</tspan>' in out
    assert "<a " not in out  # no link without ``link``
