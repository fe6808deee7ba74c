"""``flowtaskd validate``, ``graph`` and ``schema``: the task model from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flowtaskd.errors import FlowtaskError, Problem, TaskParseError
from flowtaskd.tasks import load_pile
from flowtaskd.tasks.jsonschema import task_schema
from flowtaskd.tasks.loader import TASK_SUFFIXES
from flowtaskd.tasks.render import FORMATS, render

__all__ = ["iter_task_files", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check task files (files or folders)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("graph", help="show a task's DAG")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema of the task format")
    p.set_defaults(handler=cmd_schema)


def iter_task_files(paths: list[Path]) -> list[Path]:
    """Files as given, plus task files found recursively in folders (dotfiles skipped)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in TASK_SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            out.append(path)
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    files = iter_task_files(args.paths)
    for path in files:
        try:
            pile = load_pile(path)
        except TaskParseError as exc:
            results.append({"file": str(path), "valid": False, "problems": exc.problems})
        except FlowtaskError as exc:
            problem = Problem(str(exc), file=str(path))
            results.append({"file": str(path), "valid": False, "problems": [problem]})
        else:
            results.append({"file": str(path), "valid": True, "task": pile.name,
                            "steps": len(pile), "problems": []})
    bad = [r for r in results if not r["valid"]]
    if args.json:
        for r in results:
            r["problems"] = [p.to_dict() for p in r["problems"]]
        json.dump({"valid": not bad, "files": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            if r["valid"]:
                print(f"ok    {r['file']}: task {r['task']} ({r['steps']} steps)")
            else:
                for p in r["problems"]:
                    print(f"error {p}", file=sys.stderr)
        if not files:
            print("no task files found", file=sys.stderr)
        print(f"{len(results) - len(bad)} valid, {len(bad)} invalid", file=sys.stderr)
    return 1 if bad or not files else 0


def cmd_graph(args: argparse.Namespace) -> int:
    try:
        pile = load_pile(args.file)
    except FlowtaskError as exc:
        print(f"error {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(pile, args.format))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    json.dump(task_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
