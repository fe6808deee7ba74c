"""How fast task files load, validate and build, next to bare YAML parsing.

    .venv/bin/python bench/parse.py [--files 1000] [--repeat 3]

1. Generates ``--files`` realistic 20-step YAML task files in a temporary folder (Commands
   with argv lists, a few placeholders, ``depends`` lists, retries, timeouts, env, a group),
   then times, per file, ``flowtaskd.tasks.load_pile`` (read + load with line numbers +
   validate + build the DAG) against ``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same
   file (read included in both), keeping no result. Prints both, the ratio (goal: under
   2.0), where the time goes (read+load with line numbers, validation, graph building), and
   both again when every result is kept alive (the garbage collector then costs more).
2. Builds one 10,000-step DAG from a dict (100 chains of 100 ``Dummy`` steps, each chain
   also waiting for a step of the chain before it) and prints the time (goal: well under 1 s),
   again split into validation and graph building.

Each figure is the least CPU time of this process over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flowtaskd.components.registry import registry
from flowtaskd.core.graph import compile_graph
from flowtaskd.core.loader import load_document
from flowtaskd.core.schema import validate_definition
from flowtaskd.tasks import TaskPile, load_pile

CATALOG = registry()

STEPS = 20


def task_text(n: int, rng: random.Random) -> str:
    """One realistic task file of STEPS steps, as YAML text."""
    lines = [
        f"name: generated-{n}",
        f"description: generated task number {n} for the parse benchmark",
        "timezone: Europe/Berlin",
        f'schedule: "{rng.randrange(60)} {rng.randrange(24)} * * mon-fri"',
        "params: {day: '{yesterday}', region: north}",
        "env: {LANG: C.UTF-8, REPORT_DIR: /srv/reports}",
        "retry: {attempts: 2, delay: 5s}",
        "steps:",
    ]
    ids: list[str] = []
    for i in range(STEPS):
        name = f"step_{i}"
        lines.append("  - Command:")
        lines.append(f"      name: {name}")
        argv = ["/usr/bin/report", f"--part={i}", "--day={day}", "--region", "{region}"]
        if ids and rng.random() < 0.3:
            argv.append(f"{{steps.{ids[-1]}.output}}")
        lines.append(f"      command: [{', '.join(repr(a) for a in argv)}]")
        if ids and rng.random() < 0.5:
            deps = rng.sample(ids[-5:], k=min(len(ids[-5:]), rng.randint(1, 2)))
            if argv[-1].startswith("{steps.") and ids[-1] not in deps:
                deps.append(ids[-1])
            lines.append(f"      depends: [{', '.join(deps)}]")
        elif ids and rng.random() < 0.1 and not argv[-1].startswith("{steps."):
            lines.append("      depends: []")
        if rng.random() < 0.3:
            lines.append(
                "      retry: {attempts: 3, delay: 10s, backoff: exponential, "
                "max_delay: 2m, on_exit_codes: [1, 75]}"
            )
        if rng.random() < 0.4:
            lines.append(f"      timeout: {rng.choice(['30s', '5m', 120, '1h'])}")
        if rng.random() < 0.3:
            lines.append(f"      env: {{PART: '{i}', MODE: fast}}")
        if rng.random() < 0.1:
            lines.append("      trigger_rule: all_done")
        ids.append(name)
    return "\n".join(lines) + "\n"


def best(repeat: int, run: Callable[[], Any]) -> float:
    """The least CPU time of this process over ``repeat`` runs (CPU time, not wall time, so
    other work on the machine does not count; the files are in the page cache)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def validate(doc: Any) -> Any:
    return validate_definition(doc.data, doc, catalog=CATALOG)


def each(items: list[Any], work: Callable[[Any], Any]) -> None:
    """``work`` on every item, keeping no result (each file costs the same, first or last)."""
    for item in items:
        work(item)


def bench_files(count: int, repeat: int) -> None:
    rng = random.Random(20261125)
    with tempfile.TemporaryDirectory(prefix="flowtaskd-bench-") as tmp:
        paths = []
        for n in range(count):
            path = Path(tmp) / f"task_{n:04d}.yaml"
            path.write_text(task_text(n, rng))
            paths.append(path)
        for path in paths:  # every generated file is valid
            load_pile(path)
        docs = [load_document(p) for p in paths]
        defs = [validate_definition(d.data, d, catalog=CATALOG) for d in docs]

        bare = best(
            repeat, lambda: each(paths, lambda p: yaml.load(p.read_text(), Loader=yaml.CSafeLoader))
        )
        full = best(repeat, lambda: each(paths, load_pile))
        loading = best(repeat, lambda: each(paths, load_document))
        validating = best(repeat, lambda: each(docs, validate))
        building = best(repeat, lambda: each(defs, TaskPile))
        bare_kept = best(
            repeat, lambda: [yaml.load(p.read_text(), Loader=yaml.CSafeLoader) for p in paths]
        )
        full_kept = best(repeat, lambda: [load_pile(p) for p in paths])
    per = 1e3 / count
    print(f"{count} files of {STEPS} steps (YAML), best of {repeat}:")
    print(f"  yaml.load(CSafeLoader) per file:      {bare * per:7.3f} ms")
    print(f"  load_pile (load+validate+build):      {full * per:7.3f} ms")
    print(f"  ratio:                                {full / bare:7.2f}   (goal < 2.0)")
    print("  breakdown of load_pile per file:")
    print(
        f"    read + load with line numbers:      {loading * per:7.3f} ms"
        f"  ({loading / bare:.2f}x bare YAML)"
    )
    print(f"    validate (schema + models):         {validating * per:7.3f} ms")
    print(f"    build (graph + checks + Steps):     {building * per:7.3f} ms")
    print(
        f"    validate + build only:              {(validating + building) / bare:7.2f}"
        "   x bare YAML"
    )
    print("  keeping every result alive (as a task library does; the GC walks them all):")
    print(f"    yaml.load per file:                 {bare_kept * per:7.3f} ms")
    print(
        f"    load_pile per file:                 {full_kept * per:7.3f} ms"
        f"  (ratio {full_kept / bare_kept:.2f})"
    )


def big_dag(chains: int = 100, length: int = 100) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for c in range(chains):
        for k in range(length):
            params: dict[str, Any] = {"name": f"c{c}_{k}"}
            if k == 0:
                params["depends"] = []
            elif c and k % 10 == 0:  # a cross link to the chain before
                params["depends"] = [f"c{c}_{k - 1}", f"c{c - 1}_{k}"]
            steps.append({"Dummy": params})
    return {"name": "big", "steps": steps}


def bench_dag(repeat: int) -> None:
    task = big_dag()
    n = len(task["steps"])
    pile = TaskPile(task)
    edges = pile.graph.number_of_edges()
    definition = pile.definition
    total = best(repeat, lambda: TaskPile(task))
    validating = best(repeat, lambda: validate_definition(task, catalog=CATALOG))
    graph = best(repeat, lambda: compile_graph(definition.steps))
    building = best(repeat, lambda: TaskPile(definition))
    print(f"one DAG of {n} steps and {edges} edges, from a dict, best of {repeat}:")
    print(f"  TaskPile(dict) (validate + build):    {total * 1e3:7.1f} ms   (goal well under 1 s)")
    print(f"    validate:                           {validating * 1e3:7.1f} ms")
    print(
        f"    build:                              {building * 1e3:7.1f} ms"
        f"  (graph and its checks: {graph * 1e3:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, PyYAML {yaml.__version__} "
        f"(libyaml: {yaml.__with_libyaml__}), {platform.machine()}"
    )
    bench_files(args.files, args.repeat)
    bench_dag(args.repeat)


if __name__ == "__main__":
    main()
