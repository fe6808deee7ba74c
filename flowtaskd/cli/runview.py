"""Reading a run from the history: ``show`` and ``logs``.

Both read the history database and the log files directly, so they work with the daemon
stopped (``--config FILE`` or ``--state-dir DIR`` find them); ``--json`` prints the
operation's own result (:func:`flowtaskd.daemon.ops.describe_run`,
:func:`flowtaskd.daemon.ops.read_logs`). Exit codes: 0, or 1 for an unknown run, an
ambiguous prefix or an unknown step (:mod:`flowtaskd.cli.errors`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtaskd.cli.daemon import history_path, where_options
from flowtaskd.cli.errors import EXIT_OK, guarded, print_json

if TYPE_CHECKING:
    from flowtaskd.daemon.runs.store import HistoryStore

# the daemon's operations are imported by the commands: building the parser stays fast

__all__ = ["register"]

_FOLLOW_POLL = 0.2  # seconds between looks at a followed run's log files


def register(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="show one run: every step, tries, output heads, log paths",
        epilog="example:\n  flowtaskd show 019b7c40",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_id", help="a run id or a unique prefix")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    where_options(p)
    p.set_defaults(handler=guarded(_cmd_show))

    p = sub.add_parser(
        "logs",
        help="what a run's steps printed (works with the daemon stopped)",
        epilog=("examples:\n  flowtaskd logs 019b7c40 load --stderr\n  flowtaskd logs 019b7c40 -f"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix")
    p.add_argument("step", nargs="?", default=None, metavar="STEP", help="one step (or step[i])")
    p.add_argument("--attempt", type=int, default=None, metavar="N", help="that try (from 1)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    which.add_argument("--all", action="store_true", help="stdout and stderr")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the run ends")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="the last N lines of each")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    where_options(p)
    p.set_defaults(handler=guarded(_cmd_logs))


def _store(args: argparse.Namespace) -> HistoryStore:
    from flowtaskd.daemon.runs.store import HistoryStore  # noqa: PLC0415 - lazy

    return HistoryStore.open_readonly(history_path(args))


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _took(seconds: float | None) -> str:
    return f"{seconds:.2f}s" if seconds is not None else "-"


# -- show -------------------------------------------------------------------------------
def _cmd_show(args: argparse.Namespace) -> int:
    from flowtaskd.daemon import ops  # noqa: PLC0415 - lazy

    out = ops.describe_run(_store(args), args.run_id)
    if args.json:
        print_json(out)
        return EXIT_OK
    run = out["run"]
    print(f"run {run['run_id']}  task {run['task']}  {run['status']}  ({run['trigger']})")
    print(
        f"  started {_when(run['started_at'])}  finished {_when(run['finished_at'])}"
        f"  duration {_took(run['duration'])}"
    )
    if run.get("logical_time") is not None:
        print(f"  logical time {datetime.fromtimestamp(run['logical_time'], UTC).isoformat()}")
    if out["retry_of"]:
        print(f"  retry of {out['retry_of']}")
    if out["retries"]:
        print(f"  retried by {', '.join(out['retries'])}")
    if run.get("backfill_id"):
        print(f"  backfill {run['backfill_id']}")
    if run["source"]:
        print(f"  source {run['source']}")
    if run["params"]:
        print(f"  params {json.dumps(run['params'])}")
    if run["error"]:
        print(f"  error {run['error']}")
    if run["log_dir"] and Path(run["log_dir"]).is_dir():
        print(f"  logs {run['log_dir']}")
    print("steps:")
    for s in out["steps"]:
        _show_step(s)
    return EXIT_OK


def _show_step(s: dict[str, Any]) -> None:
    why = s["reason"] or s["error"] or ""
    if not s["started"] and s["status"] not in ("done", "running"):
        why = f"never started: {why}" if why else "never started"
    items = f" x{s['items']}" if s.get("items") else ""
    code = "" if s["exit_code"] is None else f"exit {s['exit_code']}"
    print(
        f"  {s['status']:<16} {s['id'] + items:<28} tries {s['attempts']:<2}"
        f" {_took(s['duration']):>8}  {code}  {why}".rstrip()
    )
    for t in s["tries"]:
        if len(s["tries"]) > 1 or t["label"] != s["id"]:
            code = "" if t["exit_code"] is None else f"exit {t['exit_code']}"
            print(
                f"      {t['label']} try {t['attempt']}: {t['status']}"
                f"  {_took(t.get('duration'))}  {code}  {t.get('error') or ''}".rstrip()
            )
        for key in ("stdout", "stderr"):
            if t.get(key):
                print(f"      {key}: {t[key]}")
    for key in ("output_head", "stderr_head"):
        if s.get(key):
            label = "output" if key == "output_head" else "stderr"
            for line in s[key].splitlines():
                print(f"      {label} | {line}")


# -- logs -------------------------------------------------------------------------------
def _cmd_logs(args: argparse.Namespace) -> int:
    from flowtaskd.daemon import ops  # noqa: PLC0415 - lazy

    store = _store(args)
    stream = "all" if args.all else ("err" if args.stderr else "out")
    kwargs: dict[str, Any] = {"attempt": args.attempt, "stream": stream, "tail": args.tail}
    out = ops.read_logs(store, args.run_id, args.step, **kwargs)
    if args.json and not args.follow:
        print_json(out)
        return EXIT_OK
    headers = args.step is None or len(out["sections"]) > 1 or args.all
    printed: set[str] = set()
    offsets: dict[str, int] = {}
    while True:
        for sec in out["sections"]:
            offsets[sec["path"]] = sec["offset"]
            if args.json:
                if sec["text"]:
                    sys.stdout.write(json.dumps(sec) + "\n")
                continue
            if sec["path"] not in printed and (sec["text"] or args.follow):
                printed.add(sec["path"])
                if headers:
                    what = "stdout" if sec["stream"] == "out" else "stderr"
                    sys.stdout.write(f"==> {sec['step']} (try {sec['attempt']}, {what}) <==\n")
            sys.stdout.write(sec["text"])
        sys.stdout.flush()
        more = any(sec["more"] for sec in out["sections"])
        if not args.follow or (out["finished"] and not more):
            break
        if not more:
            time.sleep(_FOLLOW_POLL)
        kwargs["tail"] = None
        out = ops.read_logs(store, out["run_id"], args.step, offsets=offsets, **kwargs)
    if not out["sections"] and not args.json:
        where = f" step {args.step}" if args.step else ""
        print(f"run {out['run_id']}{where}: no output recorded", file=sys.stderr)
    return EXIT_OK
