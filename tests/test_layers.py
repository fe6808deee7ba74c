"""The house's rules, read off every import of every module.

Every import counts: at module level and inside functions and coroutines. Imports under
``if TYPE_CHECKING:`` never run; they still may not point up the layers or close a cycle
(a cycle hidden there is a design cycle all the same), so those two checks run with them
and without them. The walk fails on

- an arrow against the direction of the layers (``LAYERS``: a module imports only from its
  own layer or the layers before it),
- a cycle between modules, or between packages,
- a private name (``_x``) imported from another module,
- the pure core reaching asyncio, subprocess, sqlite3, socket or threading.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowtaskd"

LAYERS: list[tuple[str, ...]] = [
    (
        "flowtaskd.errors",
        "flowtaskd.clock",
        "flowtaskd.logs",
        "flowtaskd.journal",
        "flowtaskd.logmessages",
    ),
    ("flowtaskd.core",),
    ("flowtaskd.process",),
    ("flowtaskd.components",),
    ("flowtaskd.execution",),
    ("flowtaskd.engine",),
    ("flowtaskd.tasks",),
    ("flowtaskd.daemon",),
    ("flowtaskd.cli", "flowtaskd.__main__", "flowtaskd"),
]
IMPURE = ("asyncio", "subprocess", "sqlite3", "socket", "threading", "selectors")


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, typing: bool = False) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(tree):
        if not typing and isinstance(child, ast.If) and _type_checking(child):
            for stmt in child.orelse:
                yield stmt
                yield from _nodes(stmt, typing)
            continue
        yield child
        yield from _nodes(child, typing)


@cache
def imports(module: str, typing: bool = False) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    """(imported module, line, names taken from it) for each import that runs (and, with
    ``typing``, each one under ``if TYPE_CHECKING:``)."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, tuple[str, ...]]] = []
    for node in _nodes(ast.parse(path.read_text(), str(path)), typing):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = tuple(a.name for a in node.names)
            submodules = [n for n in names if f"{base}.{n}" in modules()]
            found.append((base, node.lineno, tuple(n for n in names if n not in submodules)))
            found.extend((f"{base}.{n}", node.lineno, ()) for n in submodules)
    return tuple(found)


def layer(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def ours(typing: bool = False) -> Iterator[tuple[str, str, int, tuple[str, ...]]]:
    for module in modules():
        for target, line, names in imports(module, typing):
            if target == "flowtaskd" or target.startswith("flowtaskd."):
                yield module, target, line, names


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer(module)


@pytest.mark.parametrize("typing", [False, True], ids=["run-time", "with-type-checking"])
def test_every_arrow_points_down_the_layers(typing: bool) -> None:
    against = [
        f"{module}:{line} imports {target} (layer {layer(target)} above {layer(module)})"
        for module, target, line, _ in ours(typing)
        if layer(target) > layer(module)
    ]
    assert against == []


def _graph(key: str, typing: bool) -> nx.DiGraph:
    graph = nx.DiGraph()
    for module, target, _, _ in ours(typing):
        if target not in modules() or target == "flowtaskd":
            continue
        a, b = module, target
        if key == "package":
            a = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
            b = target if modules()[target].name == "__init__.py" else target.rpartition(".")[0]
            # a package importing its own modules is containment, not an arrow
            if b.startswith(a + ".") or a == b:
                continue
        graph.add_edge(a, b)
    return graph


@pytest.mark.parametrize("typing", [False, True], ids=["run-time", "with-type-checking"])
@pytest.mark.parametrize("key", ["module", "package"])
def test_no_import_cycles(key: str, typing: bool) -> None:
    graph = _graph(key, typing)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_no_private_name_crosses_a_module() -> None:
    crossing = [
        f"{module}:{line} takes {name} from {target}"
        for module, target, line, names in ours()
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert crossing == []


def test_the_walk_sees_function_level_imports() -> None:
    # the walk must count imports inside functions: components.commands imports the
    # process runner only inside its run() coroutine
    targets = {t for _, t, _, _ in (x for x in ours() if x[0] == "flowtaskd.components.commands")}
    assert "flowtaskd.components.runtime" in targets


def _reach(start: str) -> dict[str, list[str]]:
    """Every module reachable from ``start`` (ours and the stdlib tops), with a chain."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        module = todo.pop()
        for target, _, _ in imports(module):
            top = target.split(".")[0]
            hops = [target] if top != "flowtaskd" else []
            if top == "flowtaskd":
                parts = target.split(".")
                hops = [
                    m for n in range(1, len(parts) + 1) if (m := ".".join(parts[:n])) in modules()
                ]
            for hop in hops:
                if hop not in chains:
                    chains[hop] = [*chains[module], hop]
                    if hop in modules():
                        todo.append(hop)
    return chains


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("flowtaskd.core")))
def test_the_core_reaches_no_io(module: str) -> None:
    bad = [
        " -> ".join(chain)
        for reached, chain in _reach(module).items()
        if reached.split(".")[0] in IMPURE
        or (reached.startswith("flowtaskd.") and layer(reached) > layer("flowtaskd.core"))
        or reached == "flowtaskd.clock"
    ]
    assert bad == []


def test_the_cycle_check_can_fail() -> None:
    graph = _graph("module", True)
    graph.add_edge("flowtaskd.core.loader", "flowtaskd.core.schema")  # schema imports loader
    assert any(len(c) > 1 for c in nx.strongly_connected_components(graph))


def test_the_purity_check_can_fail() -> None:
    chains = _reach("flowtaskd.process.spawn")
    assert "subprocess" in chains
