"""The exit codes every ``flowtaskd`` command uses, and its one-line error format.

===  =====================================================================================
0    success
1    failure: a run failed or was cancelled, a task file is invalid, what was named does
     not exist or is ambiguous (a task, a run id prefix), the daemon refused the request
2    usage: wrong arguments or options, an invalid config file
3    the daemon cannot be reached (not running, no permission, the connection was lost)
130  interrupted (Ctrl-C)
===  =====================================================================================

Every error is one line on stderr starting with ``flowtaskd: `` (problems in a file: one
line each, ``flowtaskd: FILE:LINE: KEY: message``); never a traceback for a user mistake.
Imports nothing heavy: ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from flowtaskd.errors import FlowtaskError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "fail",
    "guarded",
    "plural",
    "print_json",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

PREFIX = "flowtaskd: "


class CliError(Exception):
    """One line for stderr (without the prefix) and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str | Iterable[str], code: int = EXIT_FAILED, out: TextIO | None = None) -> int:
    """Print ``message`` (one line, or each of several) after the prefix; return ``code``."""
    stream = sys.stderr if out is None else out
    for line in [message] if isinstance(message, str) else message:
        stream.write(f"{PREFIX}{line}\n")
    return code


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 step``, ``2 steps``, ``0 groups``; ``many`` for irregular plurals."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def guarded(command: Callable[[Any], int]) -> Callable[[Any], int]:
    """``command`` with its errors as one line and an exit code: a :class:`CliError` with
    its own, a refusal of the daemon's operations (unknown run or step, paused twice: a
    :class:`~flowtaskd.errors.FlowtaskError`) with 1."""

    def handler(args: Any) -> int:
        try:
            return command(args)
        except CliError as exc:
            return fail(str(exc), exc.code)
        except FlowtaskError as exc:
            return fail(str(exc), EXIT_FAILED)

    return handler


def print_json(obj: Any) -> None:
    """One indented JSON document on stdout (``--json``); what JSON lacks as its text."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
