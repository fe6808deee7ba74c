"""``flowtaskd exec FILE``: run one task in the foreground, with a live view on a terminal.

Exit codes: 0 done, 1 failed or cancelled, 2 invalid file or params, 130 Ctrl-C (the run is
cancelled: its steps' process groups are stopped). At the end the output of the last step
that printed (or of ``--output STEP``) goes to stdout; the summary to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flowtaskd.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail

if TYPE_CHECKING:
    from flowtaskd.engine.stats import TaskMonitor

__all__ = ["parse_params", "register"]

# the engine is imported by the commands: building the parser must stay fast


def register(sub: Any) -> None:
    p = sub.add_parser(
        "exec",
        help="run one task file in the foreground",
        description="Run one task file now, without a daemon; exit 0 if it ends done.",
        epilog="examples:\n  flowtaskd exec config/tasks/hello.yaml -p who=you\n"
        "  flowtaskd exec job.yaml --json > stats.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a task file (.yaml .yml .json .toml)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a task param (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the final stats as JSON on stdout")
    p.add_argument("--log-dir", type=Path, default=None, help="where step output files go")
    p.add_argument("--log-level", default="warning", help="log level (default: warning)")
    p.add_argument(
        "--dry-run", action="store_true", help="show what would run (as `render`); run nothing"
    )
    p.add_argument("--at", default=None, help="with --dry-run: the time masks evaluate at")
    p.add_argument(
        "--output", default=None, metavar="STEP", help="print this step's output at the end"
    )
    p.add_argument(
        "-v",
        "--show-output",
        action="store_true",
        help="stream each step's output lines, prefixed by the step",
    )
    p.set_defaults(handler=cmd_exec)


def parse_params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"bad param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


class _Interrupted:
    """Set by the SIGINT handler: the run was cancelled from the keyboard (exit 130)."""

    hit = False


def _log_root(args: argparse.Namespace) -> Path:
    return Path(args.log_dir or Path(tempfile.gettempdir()) / "flowtaskd-logs")


async def _exec(
    args: argparse.Namespace, params: dict[str, str], interrupted: type[_Interrupted]
) -> TaskMonitor:
    # the engine and the view are imported by the command that runs them (a fast CLI start)
    import asyncio  # noqa: PLC0415 - lazy
    import signal  # noqa: PLC0415 - lazy

    from rich.console import Console  # noqa: PLC0415 - lazy

    from flowtaskd.cli.live import RunView, live_wanted  # noqa: PLC0415 - lazy
    from flowtaskd.cli.plan import attempts_of  # noqa: PLC0415 - lazy
    from flowtaskd.engine.events import EventBus  # noqa: PLC0415 - lazy
    from flowtaskd.logs import configure_logging  # noqa: PLC0415 - lazy
    from flowtaskd.tasks.task import Task  # noqa: PLC0415 - lazy

    bus = EventBus()
    task = Task(
        task=str(args.file), params=params, events=bus, log_dir=_log_root(args), trigger="exec"
    )
    loop = asyncio.get_running_loop()
    async with bus:
        await task.start()
        assert task.pile is not None
        pile = task.pile
        view: RunView | None = None
        if live_wanted(sys.stderr, args.json):
            view = RunView(
                Console(stderr=True),
                [s.id for s in pile],
                title=f"{pile.name} {task.run_id}",
                attempts=attempts_of(pile),
                log_dir=_log_root(args) / pile.name / task.run_id,
                show_output=args.show_output,
            )
            bus.connect("*", view)
        elif args.show_output and not args.json:
            view = None
            bus.connect("*", _PlainOutput(_log_root(args) / pile.name / task.run_id))

        def on_signal(sig: int) -> None:
            interrupted.hit = interrupted.hit or sig == signal.SIGINT
            task.cancel()
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C forces the exit
            loop.remove_signal_handler(signal.SIGTERM)

        loop.add_signal_handler(signal.SIGINT, on_signal, signal.SIGINT)
        loop.add_signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
        try:
            if view is None:
                return await task.run()
            with view:
                configure_logging("auto", args.log_level)  # log lines go above the view
                return await task.run()
        finally:
            await task.close()


class _PlainOutput:
    """``--show-output`` without a terminal: each step's lines, prefixed, as they end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def __call__(self, p: dict[str, Any]) -> None:
        if p.get("event") not in ("step_done", "step_error") or not p.get("step"):
            return
        label = p["step"] if p.get("item") is None else f"{p['step']}[{p['item']}]"
        for ext in ("out", "err"):
            path = self.log_dir / f"{label}.{p.get('attempt') or 1}.{ext}"
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    sys.stderr.write(f"{label} | {line}\n")


def cmd_exec(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from flowtaskd.cli.plan import dry_run  # noqa: PLC0415 - lazy
    from flowtaskd.core.rules import TaskStatus  # noqa: PLC0415 - lazy
    from flowtaskd.errors import FlowtaskError, TaskParseError  # noqa: PLC0415 - lazy
    from flowtaskd.logs import configure_logging  # noqa: PLC0415 - lazy

    try:
        configure_logging("auto", args.log_level)
        params = parse_params(args.param)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.dry_run:
        return dry_run(args.file, params, args.at, args.json)
    interrupted = _Interrupted
    try:
        stats = asyncio.run(_exec(args, params, interrupted))
    except TaskParseError as exc:
        return fail([str(p) for p in exc.problems] or [str(exc)], EXIT_FAILED)
    except FlowtaskError as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.output is not None and args.output not in stats.steps:
        return fail(f"--output: task {stats.task} has no step {args.output!r}", EXIT_USAGE)
    if args.json:
        json.dump(stats.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        _summary(stats, sys.stderr)
        shown = (
            _final_output(stats, args.output)
            if args.output or stats.status is TaskStatus.DONE
            else None
        )
        if shown is not None:
            sys.stdout.write(shown if shown.endswith("\n") else shown + "\n")
    if interrupted.hit:
        return EXIT_INTERRUPTED
    return EXIT_OK if stats.status is TaskStatus.DONE else EXIT_FAILED


def _final_output(stats: TaskMonitor, step: str | None) -> str | None:
    """The output of ``step`` (default: the last step in file order that has one)."""
    if step is not None:
        return stats.steps[step].output
    for mon in reversed(list(stats.steps.values())):
        if mon.output:
            return mon.output
    return None


def _summary(stats: TaskMonitor, out: TextIO) -> None:
    d = stats.to_dict()
    dur = d["duration"] or 0.0
    out.write(f"task {d['task']} run {d['run_id']}: {d['status']} in {dur:.2f}s\n")
    for sid, s in d["steps"].items():
        extra = s["error"] or s["reason"] or ""
        took = f"{s['duration']:.2f}s" if s["duration"] is not None else "-"
        out.write(f"  {s['status']:<16} {sid:<30} {took:>8}  {extra}\n")
    if d["error"]:
        out.write(f"flowtaskd: {d['error']}\n")
