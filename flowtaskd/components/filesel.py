"""Which files a file step means: upstream flowtask's ``directory`` + ``filename`` /
``pattern`` / ``file: {pattern, value}`` forms, and flowtaskd's single ``path``.

Shared by ``FileList``, ``FileCopy``, ``FileMove`` and ``FileDelete``: the parameter models
of the upstream forms and the (blocking, run in a thread) helpers that turn them into
paths. ``file.value`` has been filled in before the step runs (a mask function, a variable
or a text: :func:`flowtaskd.core.masks.file_pattern`), so here ``file`` is its pattern.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from flowtaskd.core.options import StrictModel

__all__ = ["FilePattern", "FileRef", "expand", "has_glob", "in_folder", "select"]


class FilePattern(StrictModel):
    """Upstream's ``file: {pattern: "sales_{value}.csv", value: [today, {mask: "%Y%m%d"}]}``."""

    pattern: str
    value: Any = None


class FileRef(StrictModel):
    """Upstream's ``source`` / ``destination`` of ``FileCopy``: a folder and a name (or glob)."""

    directory: str
    filename: str | None = None
    rename: bool | None = Field(default=None, description="Upstream's flag; a filename renames.")


def has_glob(text: str) -> bool:
    return glob.has_magic(text)


def in_folder(base: str | None, value: str) -> Path:
    """``value`` with ``~`` expanded, relative to ``base`` (the step's cwd) when relative."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute() and base:
        path = Path(base) / path
    return path


def expand(folder: Path, names: str | list[str]) -> list[Path]:
    """``folder/<name>`` for each name; a glob expands to its (sorted) matches."""
    out: list[Path] = []
    for name in [names] if isinstance(names, str) else names:
        target = folder / str(name)
        if has_glob(str(name)):
            out.extend(Path(m) for m in sorted(glob.glob(str(target))))
        else:
            out.append(target)
    return out


def select(folder: Path, params: dict[str, Any], *, files_only: bool = True) -> list[Path]:
    """The files of ``folder`` an upstream-style step names: ``pattern`` (a glob), else
    ``file`` (its filled-in pattern), else ``filename`` (names or globs), else all files."""
    pattern = params.get("pattern")
    file = params.get("file")
    if isinstance(file, dict):
        file = file.get("pattern")
    if pattern or file:
        found = [p for p in folder.glob(str(pattern or file)) if not p.name.startswith(".")]
    elif params.get("filename"):
        found = [p for p in expand(folder, params["filename"]) if os.path.lexists(p)]
    else:
        found = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return [p for p in found if p.is_file()] if files_only else found
