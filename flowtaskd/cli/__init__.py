"""The ``flowtaskd`` command: one sub-command module per area, dispatched here.

Building the parser imports only the ``flowtaskd.cli`` modules, which import nothing heavy
at the top (each command imports the daemon, the engine or the models it needs), so
``--help``, ``--version`` and shell completion answer fast. Exit codes and the error line
format are :mod:`flowtaskd.cli.errors`' (the README's table).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from flowtaskd.cli import control, daemon, execute, init, model, oncall, plan, runview, shell
from flowtaskd.cli.errors import EXIT_INTERRUPTED, EXIT_OK

__all__ = ["build_parser", "main"]

_MODULES = [daemon, init, model, execute, plan, control, runview, oncall, shell]

EPILOG = """\
examples:
  flowtaskd init ~/flowtaskd                 a config, a task folder and an inbox
  flowtaskd run --config ~/flowtaskd/flowtaskd.yaml
  flowtaskd trigger hello --wait             run a loaded task now, wait for its end
  flowtaskd COMMAND --help                   each command's arguments and examples

exit codes: 0 success, 1 failure (a run failed, a file is invalid, not found),
2 usage (bad arguments, invalid config), 3 the daemon cannot be reached, 130 interrupted.
"""


def _version() -> str:
    from importlib import metadata  # noqa: PLC0415 - only for --version

    try:
        return metadata.version("flowtaskd")
    except metadata.PackageNotFoundError:  # a plain checkout, not installed
        return "0+unknown"


class _Version(argparse.Action):
    """``--version``: the installed version, computed only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"flowtaskd {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowtaskd",
        description="An event-driven task daemon: watched folders, cron schedules, DAG runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _MODULES:
        mod.register(sub)
    sub.choices["man"].set_defaults(parser=parser)  # the man page is made from all of it
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer and exit
        import argcomplete  # noqa: PLC0415

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
