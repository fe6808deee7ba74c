"""``flowtaskd run`` (the daemon) and ``history`` (read the run history directly).

``show`` is in :mod:`flowtaskd.cli.runview`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowtaskd.cli.errors import EXIT_FAILED, EXIT_USAGE, fail

# The daemon, the store and the config models are imported by the commands that use them:
# building the parser (--help, --version, completion) must stay fast.

__all__ = ["history_path", "register", "state_dir_from", "where_options"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon (watch folders, schedules, runs)",
        description="Run the daemon in the foreground until SIGTERM or Ctrl-C.",
        epilog="example:\n  flowtaskd run --config ~/flowtaskd/flowtaskd.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", type=Path, default=None, help="config file, YAML or TOML (default: defaults)"
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "history",
        help="list recent runs from the history",
        epilog="examples:\n  flowtaskd history\n  flowtaskd history nightly -n 5 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", default=None, metavar="TASK", help="only this task's runs")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout")
    _where(p)
    p.set_defaults(handler=cmd_history)


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    p.add_argument("--state-dir", type=Path, default=None, help="the daemon's state dir")


def state_dir_from(args: argparse.Namespace) -> Any:
    """The daemon config implied by ``--config`` / ``--state-dir`` (defaults otherwise)."""
    from flowtaskd.daemon.config.load import load_config  # noqa: PLC0415

    cfg = load_config(args.config)
    if getattr(args, "state_dir", None) is not None:
        cfg = cfg.model_copy(update={"state_dir": args.state_dir.resolve()})
    return cfg


def history_path(args: argparse.Namespace) -> Path:
    cfg = state_dir_from(args)
    path: Path = (
        cfg.history.path
        if cfg.history.path and args.state_dir is None
        else cfg.state_dir / "history.db"
    )
    return path


def _error(exc: Exception) -> int:
    """A config problem is a usage error; anything else (the store, a prefix) a failure."""
    from flowtaskd.errors import ConfigError, TaskParseError  # noqa: PLC0415

    code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    if isinstance(exc, TaskParseError):
        return fail([str(p) for p in exc.problems] or [str(exc)], code)
    return fail(str(exc), code)


def _complete_run_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """Shell completion: recent run ids from the history (quietly nothing on any error)."""
    try:
        from flowtaskd.daemon.runs.store import HistoryStore  # noqa: PLC0415

        store = HistoryStore.open_readonly(history_path(parsed_args))
        return [r.run_id for r in store.list_runs(None, 50) if r.run_id.startswith(prefix)]
    except Exception:
        return []


def cmd_run(args: argparse.Namespace) -> int:
    from flowtaskd.daemon.service import main_run  # noqa: PLC0415
    from flowtaskd.errors import FlowtaskError  # noqa: PLC0415

    try:
        return main_run(args.config)
    except FlowtaskError as exc:
        return _error(exc)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_history(args: argparse.Namespace) -> int:
    from flowtaskd.daemon.runs.store import HistoryStore  # noqa: PLC0415
    from flowtaskd.errors import FlowtaskError  # noqa: PLC0415

    try:
        store = HistoryStore.open_readonly(history_path(args))
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


where_options = _where  # for the other command modules (oncall)
