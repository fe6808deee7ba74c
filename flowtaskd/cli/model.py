"""``flowtaskd validate``, ``graph`` and ``schema``: the task model from the command line.

``validate PATH...`` checks files and folders (recursively; dot-files and dot-folders are
skipped) and prints each problem as ``FILE:LINE: KEY.PATH: message`` on stderr, one valid
file per line on stdout; exit 0 when every file is valid, 1 otherwise (also when no task
file was found). ``--json`` prints one JSON document on stdout instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtaskd.cli.errors import EXIT_FAILED, EXIT_USAGE, fail, plural

if TYPE_CHECKING:
    from flowtaskd.core.pile import TaskPile
    from flowtaskd.errors import Problem

# the task model is imported by the commands: building the parser must stay fast
TASK_SUFFIXES = (".yaml", ".yml", ".json", ".toml")  # = flowtaskd.core.loader.TASK_SUFFIXES
GRAPH_FORMATS = ("text", "dot", "mermaid")  # = flowtaskd.core.render.FORMATS

__all__ = ["iter_task_files", "register", "validate_files"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check task files (files or folders)",
        description="Check task files; print each problem as FILE:LINE: KEY: message.",
        epilog="examples:\n  flowtaskd validate config/tasks\n  flowtaskd validate job.yaml --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="task files, or folders to search"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument(
        "--upstream-report",
        action="store_true",
        help="for a folder of flowtask files: per file runs / needs component X / error",
    )
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser(
        "graph",
        help="show a task's DAG, groups included",
        epilog="examples:\n  flowtaskd graph job.yaml\n"
        "  flowtaskd graph job.yaml --format dot | dot -Tsvg > job.svg\n"
        "  flowtaskd graph --run 019b7c40 --format mermaid   # coloured by that run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=None,
        metavar="FILE",
        help="a task file (default with --run: the file the run came from)",
    )
    p.add_argument(
        "--run",
        default=None,
        metavar="RUN_ID",
        help="colour each step by its state in this run (a run id or a unique prefix)",
    )
    p.add_argument("--config", type=Path, default=None, help="the daemon's config (for --run)")
    p.add_argument("--state-dir", type=Path, default=None, help="the daemon's state dir")
    p.add_argument(
        "--format", choices=GRAPH_FORMATS, default="text", help="text (default), dot or mermaid"
    )
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser(
        "schema",
        help="print the JSON Schema (Draft 2020-12) of task files",
        epilog="examples:\n  flowtaskd schema > task.schema.json\n"
        '  check-jsonschema --schemafile "$(flowtaskd schema --path)" job.yaml',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--path", action="store_true", help="print where the packaged copy is, not the schema"
    )
    p.set_defaults(handler=cmd_schema)


def _load_pile(path: Path) -> TaskPile:
    from flowtaskd.tasks import load_pile  # noqa: PLC0415 - lazy: networkx and the models

    return load_pile(path)


def iter_task_files(paths: list[Path]) -> list[Path]:
    """Files as given, plus task files found recursively in folders (dot-names skipped)."""
    from flowtaskd.core.loader import TASK_SUFFIXES  # noqa: PLC0415 - lazy: yaml

    out: list[Path] = []
    for path in paths:
        if not path.is_dir():
            out.append(path)
            continue
        found = (
            p
            for p in path.rglob("*")
            if p.suffix.lower() in TASK_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.is_file()
        )
        out.extend(sorted(found))
    return out


def validate_files(paths: list[Path]) -> list[dict[str, Any]]:
    """One result per task file: ``file``, ``valid``, ``problems`` (and ``task``, ``steps``)."""
    from flowtaskd.core.migrate import order_notes  # noqa: PLC0415
    from flowtaskd.errors import (  # noqa: PLC0415
        FlowtaskError,
        Problem,
        TaskNotFound,
        TaskParseError,
    )

    results: list[dict[str, Any]] = []
    for path in iter_task_files(paths):
        problems: list[Problem] = []
        try:
            pile = _load_pile(path)
        except TaskParseError as exc:
            problems = exc.problems
        except TaskNotFound:
            problems = [Problem("no such file or folder", file=str(path))]
        except FlowtaskError as exc:
            problems = [Problem(str(exc), file=str(path))]
        if problems:
            results.append({"file": str(path), "valid": False, "problems": problems})
        else:
            notes = [
                Problem(note, str(path), line, f"steps[{_index(pile, sid)}]")
                for sid, line, note in order_notes(pile)
            ]
            results.append(
                {
                    "file": str(path),
                    "valid": True,
                    "task": pile.name,
                    "steps": len(pile),
                    "problems": [],
                    "notes": notes,
                }
            )
    return results


def cmd_validate(args: argparse.Namespace) -> int:
    results = validate_files(args.paths)
    bad = sum(not r["valid"] for r in results)
    if args.upstream_report:
        from flowtaskd.cli.report import upstream_report  # noqa: PLC0415 - lazy: the registry

        return upstream_report(results, json_out=args.json)
    if args.json:
        files = [
            {
                **r,
                "problems": [p.to_dict() for p in r["problems"]],
                "notes": [p.to_dict() for p in r.get("notes", [])],
            }
            for r in results
        ]
        doc = {"valid": bool(results) and not bad, "files": files}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for r in results:
            if r["valid"]:
                print(f"ok {r['file']}: task {r['task']} ({plural(r['steps'], 'step')})")
                for note in r.get("notes", []):
                    print(note)
            for p in r["problems"]:
                print(p, file=sys.stderr)
        if not results:
            fail("no task files found")
        print(f"{len(results) - bad} valid, {bad} invalid", file=sys.stderr)
    return 1 if bad or not results else 0


def cmd_graph(args: argparse.Namespace) -> int:
    from flowtaskd.core.render import render  # noqa: PLC0415
    from flowtaskd.errors import FlowtaskError, TaskParseError  # noqa: PLC0415
    from flowtaskd.tasks import load_pile  # noqa: PLC0415

    states: dict[str, str] | None = None
    file = args.file
    if args.run is not None:
        try:
            file, states = _run_states(args)
        except FlowtaskError as exc:
            return fail(str(exc), EXIT_FAILED)
    if file is None:
        return fail("graph needs a FILE, or --run RUN_ID", EXIT_USAGE)
    try:
        pile = load_pile(file)
    except TaskParseError as exc:
        return fail([str(p) for p in exc.problems] or [str(exc)], EXIT_FAILED)
    except FlowtaskError as exc:
        return fail(str(exc), EXIT_FAILED)
    sys.stdout.write(render(pile, args.format, states))
    return 0


def _run_states(args: argparse.Namespace) -> tuple[Path | None, dict[str, str]]:
    """The task file of run ``args.run`` (unless FILE is given) and each step's state."""
    from flowtaskd.cli.daemon import history_path  # noqa: PLC0415
    from flowtaskd.daemon.runs.store import HistoryStore  # noqa: PLC0415
    from flowtaskd.errors import FlowtaskError  # noqa: PLC0415

    store = HistoryStore.open_readonly(history_path(args))
    found = store.get_run(args.run)
    if found is None:
        raise FlowtaskError(f"no run {args.run!r} in the history")
    run, attempts = found
    states = {a.step_id: a.status for a in attempts}  # the last attempt wins
    steps = (run.stats or {}).get("steps") or {}
    states.update({sid: str(s.get("status")) for sid, s in steps.items() if isinstance(s, dict)})
    file = args.file if args.file is not None else (Path(run.source) if run.source else None)
    if file is None:
        raise FlowtaskError(f"run {run.run_id} has no task file on record: give FILE")
    return file, states


def cmd_schema(args: argparse.Namespace) -> int:
    if args.path:
        print(Path(str(resources.files("flowtaskd") / "task.schema.json")).resolve())
        return 0
    from flowtaskd.components.registry import registry  # noqa: PLC0415
    from flowtaskd.core.jsonschema import task_schema  # noqa: PLC0415

    sys.stdout.write(json.dumps(task_schema(registry()), indent=2) + "\n")
    return 0


def _index(pile: TaskPile, sid: str) -> int | str:
    spec = pile[sid].spec
    return spec.index if spec is not None else sid
