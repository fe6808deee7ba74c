"""``flowtaskd render FILE`` and ``exec FILE --dry-run``: what a run would do, run nothing.

Every step with its resolved parameters (argv for commands), env, cwd and precondition,
masks at ``--at`` (default now), secrets as ``***``, step outputs as ``<output of x>``;
the order (levels of the DAG, groups with their members); retry and timeout policies.
Exit 0, or 1 for an invalid file or a step whose placeholders do not resolve.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtaskd.cli.errors import EXIT_FAILED, EXIT_USAGE, fail
from flowtaskd.errors import FlowtaskError, TaskParseError

if TYPE_CHECKING:
    from flowtaskd.core.pile import TaskPile

__all__ = ["attempts_of", "dry_run", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "render",
        help="show what a run of a task file would do (runs nothing)",
        epilog="example:\n  flowtaskd render nightly.yaml -p day=2026-01-01 --at 2026-01-02",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a task file")
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a run param"
    )
    p.add_argument("--at", default=None, help="the time masks evaluate at (date or ISO time)")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(handler=_cmd_render)


def attempts_of(pile: TaskPile) -> dict[str, int]:
    """Each step's most tries (its retry policy, else the task's)."""
    default = pile.definition.header.retry
    out = {}
    for step in pile:
        assert step.spec is not None
        policy = step.spec.options.retry or default
        out[step.id] = policy.attempts if policy is not None else 1
    return out


def _cmd_render(args: argparse.Namespace) -> int:
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return fail(f"bad param {item!r}: expected KEY=VALUE", EXIT_USAGE)
        params[key.strip()] = value
    return dry_run(args.file, params, args.at, args.json)


def dry_run(file: Path, params: dict[str, str], at: str | None, as_json: bool) -> int:
    from flowtaskd.core.plan import plan_run  # noqa: PLC0415 - lazy
    from flowtaskd.daemon.ops import OpError, parse_moment  # noqa: PLC0415 - lazy
    from flowtaskd.tasks import load_pile  # noqa: PLC0415 - lazy

    try:
        pile = load_pile(file)
        tz = pile.definition.header.timezone or "UTC"
        when = parse_moment(at, tz) if at else datetime.now(UTC)
    except TaskParseError as exc:
        return fail([str(p) for p in exc.problems] or [str(exc)], EXIT_FAILED)
    except (FlowtaskError, OpError) as exc:
        return fail(str(exc), EXIT_FAILED)
    plan = plan_run(pile, params, when, os.environ)
    if as_json:
        sys.stdout.write(json.dumps(plan, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(format_plan(plan))
    errors = [s for s in plan["steps"] if s["error"]]
    if errors:
        return fail([str(s["error"]) for s in errors], EXIT_FAILED)
    return 0


def _policy(step: dict[str, Any]) -> str:
    parts = []
    retry = step.get("retry")
    if retry and retry.get("attempts", 1) > 1:
        delay = f", {retry['backoff']} {retry['delay']:g}s" if retry.get("delay") else ""
        parts.append(f"retry {retry['attempts']} tries{delay}")
    if step.get("timeout") is not None:
        parts.append(f"timeout {step['timeout']:g}s")
    if step.get("trigger_rule") not in (None, "all_success"):
        parts.append(f"when {step['trigger_rule']}")
    return "; ".join(parts)


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as text, level by level."""
    steps = {s["id"]: s for s in plan["steps"]}
    lines = [f"task {plan['task']} at {plan['at']} (dry run: nothing runs)"]
    if plan["params"]:
        lines.append(f"params {json.dumps(plan['params'])}")
    for n, level in enumerate(plan["levels"], 1):
        lines.append(f"level {n}:")
        for unit in level:
            if unit.startswith("group:"):
                name = unit.removeprefix("group:")
                lines.append(f"  group {name} (once per item of its parent):")
                ids = plan["groups"].get(name, [])
                lines.extend(_step_lines(steps[sid], "    ") for sid in ids)
            else:
                lines.append(_step_lines(steps[unit], "  "))
    return "\n".join(lines) + "\n"


def _step_lines(s: dict[str, Any], indent: str) -> str:
    head = f"{indent}{s['id']} ({s['component']})"
    if s["depends"]:
        head += f" after {', '.join(s['depends'])}"
    policy = _policy(s)
    if policy:
        head += f"  [{policy}]"
    out = [head]
    params = s.get("params") or {}
    argv = params.get("command")
    if isinstance(argv, list):
        out.append(f"{indent}  argv: {json.dumps(argv)}")
    elif isinstance(argv, str):
        out.append(f"{indent}  command: {argv}")
    others = {k: v for k, v in params.items() if k not in ("command", "output_cap")}
    if others:
        out.append(f"{indent}  params: {json.dumps(others, default=str)}")
    if s.get("env"):
        out.append(f"{indent}  env: {json.dumps(s['env'])}")
    if s.get("cwd"):
        out.append(f"{indent}  cwd: {s['cwd']}")
    if s.get("precondition"):
        out.append(f"{indent}  precondition: {json.dumps(s['precondition'])}")
    if s.get("error"):
        out.append(f"{indent}  error: {s['error']}")
    return "\n".join(out)
