"""Property tests: random step graphs either build a TaskPile or raise TaskParseError, never
anything else; a valid random DAG has exactly the expected edges."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtaskd.components.registry import registry
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import TaskPile

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rarely(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.sampled_from(range(100))) >= 100 - percent  # the simplest draw: no


@st.composite
def graphs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Random steps, mostly valid: ids, depends (earlier, later, unknown, wrong types,
    cycles), groups (right and wrong), and now and then a wrong key or component."""
    n = draw(st.integers(1, 14))
    ids: list[str] = []
    items: list[dict[str, Any]] = []
    group: str | None = None
    for i in range(n):
        component = draw(st.sampled_from(["Dummy"] * 6 + ["FileList", "Command"]))
        if _rarely(draw, 2):
            component = "Nope"
        params: dict[str, Any] = {"path": "."} if component == "FileList" else {}
        if component == "Command" and not _rarely(draw, 5):
            params["command"] = [
                "echo",
                draw(
                    st.sampled_from(
                        ["hi", "{steps.s0.output}", "{steps.zz.output}", "{{steps.s1.output}}"]
                    )
                ),
            ]
        step_id = f"{component}_{i + 1}"
        if draw(st.booleans()):
            step_id = f"s{i}"
            if ids and _rarely(draw, 4):
                step_id = draw(st.sampled_from(ids))  # a duplicate
            elif _rarely(draw, 2):
                step_id = draw(st.sampled_from(["x y", "", "{z}"]))
            params["name"] = step_id
        ids.append(step_id)
        pool = ids[:-1] or ["s0"]
        kind = draw(st.sampled_from(range(100)))
        if kind < 15:
            params["depends"] = []
        elif kind < 30:
            params["depends"] = draw(st.sampled_from(pool))
        elif kind < 45:
            params["depends"] = draw(st.lists(st.sampled_from(pool), max_size=3))
        elif kind < 50:  # later steps (maybe a cycle), unknown ids, wrong types
            params["depends"] = draw(
                st.sampled_from([[f"s{i + 1}"], [f"s{n - 1}"], "nowhere", 5, [1], {"a": 1}])
            )
        if (component == "FileList" and _rarely(draw, 60)) or _rarely(draw, 2):
            params["to_group"] = group = draw(st.sampled_from(["g", "h"]))
        elif group and not _rarely(draw, 30):
            params["Group"] = group  # members usually follow their parent
        elif _rarely(draw, 3):
            params["Group"] = draw(st.sampled_from(["g", "h"]))
        if _rarely(draw, 30):
            group = None
        if _rarely(draw, 3):
            params["typo"] = 1
        items.append({component: params})
    return items


@given(graphs())
@SETTINGS
def test_random_step_graphs_build_or_raise_a_parse_error(items: list[dict[str, Any]]) -> None:
    try:
        pile = TaskPile({"name": "random", "steps": items})
    except TaskParseError as exc:
        assert exc.problems
        assert all(str(p).startswith("<task>: steps[") for p in exc.problems)
        return
    assert nx.is_directed_acyclic_graph(pile.graph)
    assert len(pile) == len(items) == pile.graph.number_of_nodes()
    for group in pile.groups.values():
        assert registry()[pile[group.parent].component].iterator
        assert all(group.parent in nx.ancestors(pile.graph, m) for m in group.members)


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """A random valid DAG: each step depends on earlier steps only (or on the default)."""
    n = draw(st.integers(1, 25))
    named = [draw(st.booleans()) for _ in range(n)]
    ids = [f"s{i}" if named[i] else f"Dummy_{i + 1}" for i in range(n)]
    items: list[dict[str, Any]] = []
    edges: set[tuple[str, str]] = set()
    for i in range(n):
        params: dict[str, Any] = {"name": ids[i]} if named[i] else {}
        how = draw(st.sampled_from(["default", "root", "one", "list"]))
        if how == "default" or i == 0:
            deps = [ids[i - 1]] if i else []
        elif how == "root":
            params["depends"], deps = [], []
        elif how == "one":
            deps = [ids[draw(st.integers(0, i - 1))]]
            params["depends"] = deps[0]
        else:
            deps = draw(st.lists(st.sampled_from(ids[:i]), max_size=4, unique=True))
            params["depends"] = deps
        items.append({"Dummy": params})
        edges |= {(d, ids[i]) for d in deps}
    return items, edges


@given(dags())
@SETTINGS
def test_a_valid_random_dag_has_exactly_the_expected_edges(
    dag: tuple[list[dict[str, Any]], set[tuple[str, str]]],
) -> None:
    items, edges = dag
    pile = TaskPile({"name": "dag", "steps": items})
    assert set(pile.graph.edges) == edges
    assert {sid for sid in pile.graph if pile.graph.in_degree(sid) == 0} == set(pile.roots())


@given(dags(), st.data())
@SETTINGS
def test_a_back_edge_makes_a_cycle_that_is_reported_with_its_path(
    dag: tuple[list[dict[str, Any]], set[tuple[str, str]]], data: st.DataObject
) -> None:
    items, edges = dag
    if not edges:
        return
    graph = nx.DiGraph(edges)
    u, v = data.draw(st.sampled_from(sorted(edges)))
    ((_, params),) = items[_index(items, u)].items()
    deps = params.get("depends")
    params["depends"] = [*([deps] if isinstance(deps, str) else deps or []), v]
    if _index(items, u) > 0 and deps is None:  # keep its default dependency too
        params["depends"].append(_id(items, _index(items, u) - 1))
    try:
        TaskPile({"name": "cyclic", "steps": items})
    except TaskParseError as exc:
        cycles = [p.message for p in exc.problems if p.message.startswith("dependency cycle: ")]
        assert cycles, exc.problems
        path = cycles[0].removeprefix("dependency cycle: ").split(" -> ")
        assert path[0] == path[-1]
        with_back_edge = nx.DiGraph([*graph.edges, (v, u)])
        assert all(with_back_edge.has_edge(a, b) for a, b in pairwise(path))
    else:
        raise AssertionError("a cycle was not found")


def _id(items: list[dict[str, Any]], i: int) -> str:
    ((component, params),) = items[i].items()
    return str(params.get("name") or f"{component}_{i + 1}")


def _index(items: list[dict[str, Any]], step_id: str) -> int:
    return next(i for i in range(len(items)) if _id(items, i) == step_id)
