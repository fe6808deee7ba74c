"""``flowtaskd completion SHELL`` (bash, zsh, fish) and ``flowtaskd man`` (the man page).

Completion is argcomplete's: the shell runs ``flowtaskd`` itself to complete, so command
names, options and choices come from the parser, and task names (``trigger``) and run ids
(``cancel``, ``show``) from the running daemon or the history. The man page is generated
from the same parser (:func:`manpage`); a copy ships as ``flowtaskd/data/flowtaskd.1``
(installed as ``share/man/man1/flowtaskd.1``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["manpage", "register"]

SHELLS = ("bash", "zsh", "fish")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print the shell completion script (bash, zsh, fish)",
        epilog='examples:\n  eval "$(flowtaskd completion bash)"      # in ~/.bashrc\n'
        "  flowtaskd completion fish > ~/.config/fish/completions/flowtaskd.fish",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(handler=cmd_completion)

    p = sub.add_parser(
        "man",
        help="print the man page (roff), generated from this parser",
        epilog="example:\n  flowtaskd man | man -l -",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=cmd_man)


def cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete  # noqa: PLC0415

    sys.stdout.write(argcomplete.shellcode(["flowtaskd"], shell=args.shell))
    return 0


def cmd_man(args: argparse.Namespace) -> int:
    sys.stdout.write(manpage(args.parser))  # the whole parser, set by build_parser
    return 0


def _roff(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-")
    lines = out.split("\n")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                names += f" {action.metavar or action.dest.upper()}"
        else:
            names = str(action.metavar or action.dest)
        lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(action.help or "")]
    return lines


def manpage(parser: argparse.ArgumentParser) -> str:
    """``flowtaskd.1`` in roff (man(7)): every command, its arguments and its examples."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    lines = [
        '.TH FLOWTASKD 1 "" "flowtaskd" "User Commands"',
        ".SH NAME",
        "flowtaskd \\- an event\\-driven task daemon: watched folders, cron schedules, DAG runs",
        ".SH SYNOPSIS",
        "\\fBflowtaskd\\fR [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".SH COMMANDS",
    ]
    for name, command in sub.choices.items():
        usage = command.format_usage().removeprefix("usage: ").strip()
        lines += [".SS " + _roff(name), _roff(helps.get(name, "")), ".PP", _roff(usage)]
        lines += _options(command)
        if command.epilog:
            lines += [".PP", ".nf", _roff(command.epilog), ".fi"]
    lines += [".SH EXAMPLES", ".nf", _roff((parser.epilog or "").strip()), ".fi"]
    lines += [".SH SEE ALSO", "The README of flowtaskd: task files, the config, the events."]
    return "\n".join(lines) + "\n"
