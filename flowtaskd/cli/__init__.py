"""The ``flowtaskd`` command: one sub-command module per area, dispatched here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowtaskd.cli import control, daemon, execute, model, oncall, plan

__all__ = ["main"]

_MODULES = [daemon, model, execute, plan, control, oncall]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowtaskd",
        description="An event-driven task daemon: watched folders, cron schedules, DAG runs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _MODULES:
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
