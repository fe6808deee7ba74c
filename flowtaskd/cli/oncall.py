"""On-call operations: ``retry``, ``pause``, ``unpause``, ``backfill``, ``next``, and
``trigger`` followed in the live view (reading a run, ``show`` and ``logs``, is
:mod:`flowtaskd.cli.runview`).

Each parses its arguments, calls one operation of :mod:`flowtaskd.daemon.ops` (directly
over the history when that works with the daemon stopped: ``pause`` while it is down;
through the control socket otherwise) and formats the answer; ``--json``
prints the operation's own result. Exit codes (:mod:`flowtaskd.cli.errors`): 0 success;
1 the run (or a backfill run) failed or was cancelled, or a refused request (unknown run,
ambiguous prefix, unknown step, paused twice); 2 bad arguments; 3 the daemon cannot be
reached; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowtaskd.cli.control import (
    Client,
    CliError,
    checked,
    common_options,
    parse_params,
    socket_path,
)
from flowtaskd.cli.daemon import history_path
from flowtaskd.cli.errors import EXIT_OK, EXIT_USAGE, guarded, print_json

# the daemon's operations, the history and the live view are imported by the commands that
# use them: building the parser (--help, completion) must stay fast

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "retry",
        help="run a failed run again, keeping the steps that were done",
        epilog=(
            "examples:\n"
            "  flowtaskd retry 019b7c40\n"
            "  flowtaskd retry 019b7c40 --from load --current"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix")
    p.add_argument(
        "--from", dest="from_step", default=None, metavar="STEP", help="that step and downstream"
    )
    p.add_argument("--failed-only", action="store_true", help="not the done steps downstream")
    p.add_argument("--current", action="store_true", help="the task file as it is now")
    p.add_argument("--force", action="store_true", help="also a run that did not fail")
    p.add_argument("--no-wait", action="store_true", help="return once the retry is queued")
    common_options(p)
    p.set_defaults(handler=guarded(_cmd_retry))

    for name, doc in (("pause", "skip a task's schedule fires"), ("unpause", "resume them")):
        p = sub.add_parser(
            name,
            help=doc,
            epilog=f"examples:\n  flowtaskd {name} nightly\n  flowtaskd {name} --schedule tick-1s",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("task", nargs="?", default=None, metavar="TASK", help="a loaded task")
        p.add_argument("--schedule", default=None, metavar="ID", help="one schedule instead")
        p.add_argument("--state-dir", type=Path, default=None, help="with the daemon stopped")
        common_options(p)
        p.set_defaults(handler=guarded(_cmd_pause), paused=name == "pause")

    p = sub.add_parser(
        "backfill",
        help="one run per fire time of a past range",
        epilog=(
            "examples:\n"
            "  flowtaskd backfill nightly --from 2026-01-01 --to 2026-01-31 --max-active 2\n"
            "  flowtaskd backfill --cancel bf-1a2b3c4d"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", default=None, metavar="TASK", help="a loaded task")
    p.add_argument("--from", dest="start", default=None, metavar="DATE", help="first day")
    p.add_argument("--to", dest="end", default=None, metavar="DATE", help="last day (included)")
    p.add_argument("--every", default=None, metavar="INTERVAL", help="instead of the schedule")
    p.add_argument("--max-active", type=int, default=1, metavar="N", help="runs at once")
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a run param"
    )
    p.add_argument("--dry-run", action="store_true", help="list the fire times; run nothing")
    p.add_argument("--no-wait", action="store_true", help="return once the runs are planned")
    p.add_argument("--cancel", default=None, metavar="BACKFILL_ID", help="cancel a backfill")
    common_options(p)
    p.set_defaults(handler=guarded(_cmd_backfill))

    p = sub.add_parser(
        "next",
        help="next fire times of a cron expression, interval or task",
        epilog=(
            "examples:\n"
            "  flowtaskd next '0 3 * * 1-5' --tz Europe/Berlin -n 3\n"
            "  flowtaskd next 5m\n"
            "  flowtaskd next nightly"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "cron", metavar="CRON|INTERVAL|TASK", help="'0 3 * * *', @daily, 5m, or a loaded task"
    )
    p.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
    p.add_argument("--after", default=None, help="ISO 8601 start (default: now)")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    common_options(p)
    p.set_defaults(handler=guarded(_cmd_next))
    sub.choices["trigger"].set_defaults(handler=guarded(_cmd_trigger))


# -- trigger ----------------------------------------------------------------------------
def _cmd_trigger(args: argparse.Namespace) -> int:
    from flowtaskd.cli.follow import follow_run  # noqa: PLC0415 - lazy

    request = {"cmd": "trigger", "task": args.task, "params": parse_params(args.param)}
    return follow_run(args, request, wait=args.wait)


# -- retry ------------------------------------------------------------------------------
def _cmd_retry(args: argparse.Namespace) -> int:
    from flowtaskd.cli.follow import follow_run  # noqa: PLC0415 - lazy

    request: dict[str, Any] = {"cmd": "retry", "run_id": args.run_id}
    for key, value in (
        ("from", args.from_step),
        ("failed_only", args.failed_only or None),
        ("current", args.current or None),
        ("force", args.force or None),
    ):
        if value is not None:
            request[key] = value

    def describe(first: dict[str, Any]) -> None:
        kept = ", ".join(first.get("kept") or []) or "none"
        print(
            f"retry {first['run_id']} of run {first['retry_of']}: keeps {kept};"
            f" runs {', '.join(first.get('rerun') or [])}",
            file=sys.stderr,
        )
        for note in first.get("notes") or []:
            print(f"note: {note}", file=sys.stderr)

    return follow_run(args, request, wait=not args.no_wait, describe=describe)


# -- pause ------------------------------------------------------------------------------
def _cmd_pause(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - lazy

    from flowtaskd.daemon import ops  # noqa: PLC0415 - lazy

    target = ops.pause_target(args.task, args.schedule)
    request: dict[str, Any] = {"cmd": "pause" if args.paused else "unpause"}
    request["task" if args.task else "schedule"] = args.task or args.schedule
    path = socket_path(args)
    if _daemon_up(path):
        with Client(path) as client:
            reply = client.request(request)
        offline = False
    else:
        reply = asyncio.run(_pause_offline(args, target))
        offline = True
    if args.json:
        print_json(reply)
        return EXIT_OK
    kind, _, name = target.partition(":")
    state = "paused" if args.paused else "unpaused"
    extra = " (the daemon is not running: it applies at its next start)" if offline else ""
    print(f"{kind} {name} {state}{extra}")
    return EXIT_OK


async def _pause_offline(args: argparse.Namespace, target: str) -> dict[str, Any]:
    from flowtaskd.daemon import ops  # noqa: PLC0415 - lazy
    from flowtaskd.daemon.runs.store import HistoryStore  # noqa: PLC0415 - lazy

    store = HistoryStore(history_path(args))
    await store.open()
    try:
        return await ops.set_pause(store, target, args.paused, time.time())
    finally:
        await store.close()


def _daemon_up(path: Path) -> bool:
    """Whether a daemon answers at ``path`` (False: nothing listens there)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError:
        return True  # something is there (permission denied...): let the client say what
    finally:
        s.close()
    return True


# -- backfill ---------------------------------------------------------------------------
def _cmd_backfill(args: argparse.Namespace) -> int:
    from flowtaskd.cli.follow import follow_backfill  # noqa: PLC0415 - lazy

    if args.cancel:
        with Client(socket_path(args)) as client:
            reply = client.request({"cmd": "backfill_cancel", "backfill_id": args.cancel})
        if args.json:
            print_json(reply)
        else:
            print(f"backfill {reply['backfill_id']} cancelled")
        return EXIT_OK
    if not args.task or not args.start or not args.end:
        raise CliError("backfill: give TASK --from DATE --to DATE (or --cancel BACKFILL_ID)")
    request: dict[str, Any] = {
        "cmd": "backfill",
        "task": args.task,
        "from": args.start,
        "to": args.end,
        "max_active": args.max_active,
    }
    if args.every:
        request["every"] = args.every
    if args.param:
        request["params"] = parse_params(args.param)
    if args.dry_run:
        request["dry_run"] = True
        with Client(socket_path(args)) as client:
            reply = client.request(request)
        if args.json:
            print_json(reply)
        else:
            for t in reply["times"]:
                print(t)
            print(f"{len(reply['times'])} runs would be made (dry run)", file=sys.stderr)
        return EXIT_OK
    return follow_backfill(args, request, wait=not args.no_wait)


# -- next -------------------------------------------------------------------------------
def _cmd_next(args: argparse.Namespace) -> int:
    from flowtaskd.daemon import ops  # noqa: PLC0415 - lazy
    from flowtaskd.daemon.ops.schedules import is_schedule  # noqa: PLC0415 - lazy

    if is_schedule(args.cron):
        try:
            after = datetime.fromisoformat(args.after) if args.after else datetime.now(UTC)
            times = ops.next_times(args.cron, after, args.n, args.tz)
        except ValueError:
            raise CliError(f"--after {args.after!r} is not an ISO 8601 time", EXIT_USAGE) from None
        except ops.OpError as exc:  # a bad expression is a usage error
            raise CliError(str(exc), EXIT_USAGE) from None
        if args.json:
            print_json([t.isoformat() for t in times])
        else:
            for t in times:
                print(t.isoformat())
        return EXIT_OK
    with Client(socket_path(args)) as client:
        reply = checked(client.request({"cmd": "next", "task": args.cron, "n": args.n}))
    if args.json:
        print_json(reply)
        return EXIT_OK
    if not reply["schedules"]:
        print(f"task {reply['task']} has no schedule")
    for s in reply["schedules"]:
        paused = "  (paused: fires are skipped)" if s["paused"] else ""
        print(f"{s['id']}  {s['when']}  {s['timezone']}{paused}")
        for t in s["next"]:
            print(f"  {t}")
    return EXIT_OK
