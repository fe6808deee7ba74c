"""Every error flowtaskd raises, under one root.

Each error a user can cause carries what they need to fix the input: the file, the line
where known, the key path (``steps[2].Command.command``) and why. ``str()`` of an error is
the text a user sees; no user mistake ever surfaces as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ConfigError",
    "ControlError",
    "DaemonError",
    "ExecutionError",
    "FlowtaskError",
    "PlaceholderError",
    "Problem",
    "StoreError",
    "TaskNotFound",
    "TaskParseError",
]


def format_path(parts: Iterable[str | int]) -> str:
    """``("steps", 2, "Command", "command")`` -> ``steps[2].Command.command``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file."""

    message: str
    file: str | None = None
    line: int | None = None
    path: str = ""
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file or "<task>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FlowtaskError(Exception):
    """Root of every flowtaskd error."""


class TaskParseError(FlowtaskError):
    """A task file (or definition) is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem], file: str | None = None) -> None:
        self.problems: list[Problem] = list(problems)
        self.file = file
        super().__init__(self._text())

    def _text(self) -> str:
        if not self.problems:
            return f"{self.file or '<task>'}: invalid task"
        return "\n".join(str(p) for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "problems": [p.to_dict() for p in self.problems]}


class ConfigError(TaskParseError):
    """The daemon's config file is invalid."""


class TaskNotFound(FlowtaskError):
    """A task named by the user (file, library name) does not exist."""


class PlaceholderError(FlowtaskError):
    """A ``{placeholder}`` in a step's parameters has no value."""


class ExecutionError(FlowtaskError):
    """A step could not be started or run (not a non-zero exit: that is a result)."""


class StoreError(FlowtaskError):
    """The run-history database is corrupt, locked or unreadable."""


class DaemonError(FlowtaskError):
    """The daemon cannot start or keep running (lock held, state dir unusable)."""


class ControlError(FlowtaskError):
    """The control socket cannot be reached or answered with an error."""
