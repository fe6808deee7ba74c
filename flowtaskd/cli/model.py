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
from pathlib import Path
from typing import Any

from flowtaskd.cli.report import upstream_report
from flowtaskd.components.registry import registry
from flowtaskd.core.jsonschema import task_schema
from flowtaskd.core.loader import TASK_SUFFIXES
from flowtaskd.core.migrate import order_notes
from flowtaskd.core.render import FORMATS, render
from flowtaskd.errors import FlowtaskError, Problem, TaskNotFound, TaskParseError
from flowtaskd.tasks import TaskPile, load_pile

__all__ = ["iter_task_files", "register", "validate_files"]


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check task files (files or folders)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument(
        "--upstream-report",
        action="store_true",
        help="for a folder of flowtask files: per file runs / needs component X / error",
    )
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("graph", help="show a task's DAG, groups included")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema (Draft 2020-12) of task files")
    p.set_defaults(handler=cmd_schema)


def iter_task_files(paths: list[Path]) -> list[Path]:
    """Files as given, plus task files found recursively in folders (dot-names skipped)."""
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
    results: list[dict[str, Any]] = []
    for path in iter_task_files(paths):
        problems: list[Problem] = []
        try:
            pile = load_pile(path)
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
                print(f"ok {r['file']}: task {r['task']} ({r['steps']} steps)")
                for note in r.get("notes", []):
                    print(note)
            for p in r["problems"]:
                print(p, file=sys.stderr)
        if not results:
            print("no task files found", file=sys.stderr)
        print(f"{len(results) - bad} valid, {bad} invalid", file=sys.stderr)
    return 1 if bad or not results else 0


def cmd_graph(args: argparse.Namespace) -> int:
    try:
        pile = load_pile(args.file)
    except FlowtaskError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(render(pile, args.format))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(task_schema(registry()), indent=2) + "\n")
    return 0


def _index(pile: TaskPile, sid: str) -> int | str:
    spec = pile[sid].spec
    return spec.index if spec is not None else sid
