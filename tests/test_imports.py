"""The pure core imports no I/O shell: no asyncio, subprocess, sqlite3 or socket, nothing from
``flowtaskd.daemon`` or ``flowtaskd.execution``, directly or through the flowtaskd modules
it imports.

Proven twice: statically, by walking the import statements with ``ast`` (function-level
imports count; those under ``if TYPE_CHECKING:`` do not, nor those inside an ``async def``:
a coroutine only runs under the event loop, in the shell, like a component's ``run``), and
at run time, by validating and building a task that uses every built-in component in a
fresh process and looking at ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = [
    "loader",
    "schema",
    "pile",
    "graph",
    "problems",
    "cron",
    "rules",
    "values",
    "options",
    "render",
    "jsonschema",
]
BANNED_STDLIB = ("asyncio", "subprocess", "sqlite3", "socket")
BANNED_OURS = ("flowtaskd.daemon", "flowtaskd.execution", "flowtaskd.process", "flowtaskd.engine")


def _file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:`` and inside ``async def``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for stmt in child.orelse for n in [stmt, *_nodes(stmt)])
            continue
        yield child
        if not isinstance(child, ast.AsyncFunctionDef):
            yield from _nodes(child)


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import that runs in ``module``."""
    path = _file(module)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base, node.lineno
            for alias in node.names:  # `from pkg import submodule`
                if _file(f"{base}.{alias.name}") is not None:
                    yield f"{base}.{alias.name}", node.lineno


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def violations(start: str) -> list[str]:
    """Each banned import reachable from ``start``, with the chain that reaches it."""
    found: list[str] = []
    chains: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        module = todo.pop()
        for name, lineno in imports(module):
            top = name.split(".")[0]
            banned = top in BANNED_STDLIB or any(
                name == b or name.startswith(b + ".") for b in BANNED_OURS
            )
            if banned:
                found.append(f"{' -> '.join(chains[module])} imports {name} (line {lineno})")
                continue
            if top != "flowtaskd":
                continue
            for target in _with_parents(name):
                if target not in chains and _file(target) is not None:
                    chains[target] = [*chains[module], target]
                    todo.append(target)
    return found


@pytest.mark.parametrize("name", CORE)
def test_a_core_module_reaches_no_io_shell(name: str) -> None:
    assert violations(f"flowtaskd.core.{name}") == []


@pytest.mark.parametrize("name", CORE)
def test_a_core_module_has_no_coroutines(name: str) -> None:
    path = _file(f"flowtaskd.core.{name}")
    assert path is not None
    tree = ast.parse(path.read_text())
    assert not [n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)]


def test_the_walk_finds_what_it_must() -> None:
    # the engine is not pure: the walk must say so, with the chain
    found = violations("flowtaskd.tasks.task")
    assert any(v.startswith("flowtaskd.tasks.task imports flowtaskd.execution") for v in found)
    assert any("imports flowtaskd.process" in v for v in violations("flowtaskd.components.runtime"))


def test_at_run_time_validation_loads_no_io_shell() -> None:
    code = f"""
import sys
import importlib.metadata, networkx, pydantic, yaml, tomllib, zoneinfo
importlib.metadata.entry_points(group="flowtaskd.components")
before = set(sys.modules)
from flowtaskd.components.registry import registry
from flowtaskd.core.jsonschema import task_schema
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.render import render
steps = [{{name: {{}}}} for name in sorted(registry())]
task_schema()
try:
    TaskPile({{"name": "all", "steps": steps}})
except Exception as exc:  # missing parameters: the point is that validation ran
    assert type(exc).__name__ == "TaskParseError", exc
render(TaskPile({{"name": "one", "steps": [{{"Dummy": {{}}}}]}}))
new = set(sys.modules) - before
bad = sorted(m for m in new if m.split(".")[0] in {BANNED_STDLIB!r}
             or m.startswith({BANNED_OURS!r}))
assert not bad, bad
"""
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
