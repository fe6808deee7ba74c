"""``flowtaskd exec FILE``: run one task in the foreground; ``flowtaskd next CRON``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flowtaskd.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail

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
    p.set_defaults(handler=cmd_exec)

    p = sub.add_parser(
        "next",
        help="print the next fire times of a cron expression",
        epilog="example:\n  flowtaskd next '0 3 * * 1-5' --tz Europe/Berlin -n 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("cron", metavar="CRON", help="5 fields, or @hourly, @daily, ...")
    p.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
    p.add_argument("--after", default=None, help="ISO 8601 start (default: now)")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    p.set_defaults(handler=cmd_next)


def parse_params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"bad param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


class _Progress:
    """A live status line on a terminal: steps done out of total, what runs now, elapsed."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total = stream, total
        self.done = 0
        self.running: dict[str, None] = {}
        self.t0 = time.monotonic()

    def __call__(self, p: dict[str, Any]) -> None:
        event, step = p.get("event"), p.get("step")
        if event == "step_start" and step:
            self.running[str(step)] = None
        elif event in ("step_done", "step_error", "step_skipped") and step:
            self.running.pop(str(step), None)
            if p.get("item") is None:
                self.done += 1
        elif event == "completed":
            self.stream.write("\r\033[K")
            self.stream.flush()
            return
        now = ", ".join(list(self.running)[:4]) + ("..." if len(self.running) > 4 else "")
        line = f"[{self.done}/{self.total}] {time.monotonic() - self.t0:6.1f}s  {now}"
        self.stream.write("\r\033[K" + line[:120])
        self.stream.flush()


async def _exec(args: argparse.Namespace, params: dict[str, str]) -> TaskMonitor:
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from flowtaskd.engine.events import EventBus  # noqa: PLC0415
    from flowtaskd.tasks.task import Task  # noqa: PLC0415

    bus = EventBus()
    task = Task(
        task=str(args.file), params=params, events=bus, log_dir=args.log_dir, trigger="exec"
    )
    loop = asyncio.get_running_loop()
    async with bus:
        await task.start()
        assert task.pile is not None
        if sys.stderr.isatty() and not args.json:
            bus.connect("*", _Progress(sys.stderr, len(task.pile)))

        def on_signal() -> None:
            task.cancel()
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C forces the exit
            loop.remove_signal_handler(signal.SIGTERM)

        loop.add_signal_handler(signal.SIGINT, on_signal)
        loop.add_signal_handler(signal.SIGTERM, on_signal)
        try:
            return await task.run()
        finally:
            await task.close()


def cmd_exec(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from flowtaskd.core.rules import TaskStatus  # noqa: PLC0415
    from flowtaskd.errors import FlowtaskError, TaskParseError  # noqa: PLC0415
    from flowtaskd.logs import configure_logging  # noqa: PLC0415

    try:
        configure_logging("auto", args.log_level)
        params = parse_params(args.param)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        stats = asyncio.run(_exec(args, params))
    except TaskParseError as exc:
        return fail([str(p) for p in exc.problems] or [str(exc)], EXIT_FAILED)
    except FlowtaskError as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        json.dump(stats.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        _summary(stats, sys.stderr)
    return EXIT_OK if stats.status is TaskStatus.DONE else EXIT_FAILED


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


def cmd_next(args: argparse.Namespace) -> int:
    from flowtaskd.core.cron import (  # noqa: PLC0415
        CronError,
        next_fire_times,
        parse_cron,
        validate_timezone,
    )

    try:
        spec = parse_cron(args.cron)
        tz = validate_timezone(args.tz)
        after = datetime.fromisoformat(args.after) if args.after else datetime.now(UTC)
        if after.tzinfo is None:
            after = after.replace(tzinfo=tz)
        times = next_fire_times(spec, tz, after, args.n)
    except (CronError, ValueError) as exc:
        return fail(str(exc), EXIT_USAGE)
    for t in times:
        print(t.isoformat())
    return 0
