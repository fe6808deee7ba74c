"""At run time, validating and building every built-in component's step, rendering a pile
and exporting the schema load no I/O shell: the pure core, handed the component registry
as its catalog, pulls in no asyncio, subprocess, sqlite3, socket or threading, and nothing
of the process, execution, engine or daemon packages. (The static rules of the house, over
every import of every module, are in ``test_layers.py``.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANNED_STDLIB = ("asyncio", "subprocess", "sqlite3", "socket")
BANNED_OURS = ("flowtaskd.daemon", "flowtaskd.execution", "flowtaskd.process", "flowtaskd.engine")


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
catalog = registry()
steps = [{{name: {{}}}} for name in sorted(catalog)]
task_schema(catalog)
try:
    TaskPile({{"name": "all", "steps": steps}}, catalog=catalog)
except Exception as exc:  # missing parameters: the point is that validation ran
    assert type(exc).__name__ == "TaskParseError", exc
render(TaskPile({{"name": "one", "steps": [{{"Dummy": {{}}}}]}}, catalog=catalog))
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
