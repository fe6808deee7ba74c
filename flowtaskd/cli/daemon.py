"""``flowtaskd run`` (the daemon) and ``history`` (read the run history directly).

``show`` is in :mod:`flowtaskd.cli.oncall`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowtaskd.errors import FlowtaskError, TaskParseError

__all__ = ["history_path", "register", "state_dir_from", "where_options"]


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon (watch folders, schedules, runs)")
    p.add_argument("--config", type=Path, default=None, help="config file (YAML or TOML)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("history", help="list recent runs from the history")
    p.add_argument("task", nargs="?", default=None)
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true")
    _where(p)
    p.set_defaults(handler=cmd_history)


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    p.add_argument("--state-dir", type=Path, default=None, help="the daemon's state dir")


def state_dir_from(args: argparse.Namespace) -> Any:
    """The daemon config implied by ``--config`` / ``--state-dir`` (defaults otherwise)."""
    from flowtaskd.daemon.config.load import load_config  # noqa: PLC0415 - lazy

    cfg = load_config(args.config)
    if getattr(args, "state_dir", None) is not None:
        cfg = cfg.model_copy(update={"state_dir": args.state_dir.resolve()})
    return cfg


def _history_path(args: argparse.Namespace) -> Path:
    cfg = state_dir_from(args)
    path: Path = (
        cfg.history.path
        if cfg.history.path and args.state_dir is None
        else cfg.state_dir / "history.db"
    )
    return path


def _error(exc: Exception) -> int:
    if isinstance(exc, TaskParseError):
        for p in exc.problems:
            print(f"error {p}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    try:
        from flowtaskd.daemon.service import main_run  # noqa: PLC0415 - lazy

        return main_run(args.config)
    except FlowtaskError as exc:
        return _error(exc)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_history(args: argparse.Namespace) -> int:
    try:
        from flowtaskd.daemon.runs.store import HistoryStore  # noqa: PLC0415 - lazy

        store = HistoryStore.open_readonly(_history_path(args))
        runs = store.list_runs(args.task, args.n)
    except FlowtaskError as exc:
        return _error(exc)
    if args.json:
        json.dump([_run_dict(r) for r in runs], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    if not runs:
        print("no runs recorded")
        return 0
    print(
        f"{'RUN ID':<20} {'TASK':<24} {'STATUS':<12} {'TRIGGER':<9} {'STARTED (UTC)':<19} DURATION"
    )
    for r in runs:
        dur = f"{r.duration:.2f}s" if r.duration is not None else "-"
        started = _when(r.started_at)
        link = f"  retry of {r.retry_of}" if r.retry_of else ""
        print(
            f"{r.run_id:<20} {r.task[:24]:<24} {r.status:<12} {r.trigger:<9} {started:<19} {dur}"
            f"{link}"
        )
    return 0


def _run_dict(r: Any) -> dict[str, Any]:
    return {f: getattr(r, f) for f in r.__dataclass_fields__}


history_path = _history_path  # for the other command modules (oncall)
where_options = _where
