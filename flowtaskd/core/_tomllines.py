"""TOML line scanning: the line of each key path in TOML text, without parsing values.

``tomllib`` gives the data but no positions, so :func:`toml_lines` scans the text line by line:
``[table]`` and ``[[array]]`` headers (``[steps.x]`` after the 3rd ``[[steps]]`` is
``("steps", 2, "x")``) and ``key =`` lines, dotted and quoted keys too, skipping the insides of
multi-line strings and arrays. Limit: array items and inline-table keys are not mapped, so
they report the line of their key. Run it only on text ``tomllib`` accepted. Pure: no I/O.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence

__all__ = ["toml_lines"]

_KeyPath = tuple[str | int, ...]

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEYS = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_ARRAY_HEADER = re.compile(rf"[ \t]*\[\[[ \t]*({_KEYS})[ \t]*\]\]")
_TABLE_HEADER = re.compile(rf"[ \t]*\[[ \t]*({_KEYS})[ \t]*\]")
_KEY_LINE = re.compile(rf"[ \t]*({_KEYS})[ \t]*=")
_ONE_KEY = re.compile(_KEY_PART)
_STRING = {'"': re.compile(r'"(?:[^"\\]|\\.)*"?'), "'": re.compile(r"'[^']*'?")}


def _toml_keys(keys: str) -> list[str]:
    parts: list[str] = _ONE_KEY.findall(keys)  # tomllib decodes a quoted key
    return [str(tomllib.loads(f"k = {p}")["k"]) if p[0] in "'\"" else p for p in parts]


def _toml_resolve(keys: Sequence[str], arrays: dict[_KeyPath, int]) -> _KeyPath:
    path: _KeyPath = ()
    for key in keys:
        path = (*path, key)
        if path in arrays:  # a key naming an array of tables means its latest item
            path = (*path, arrays[path])
    return path


def _toml_skip(line: str, pos: int, quote: str | None, depth: int) -> tuple[str | None, int]:
    """Scan the rest of a value on `line`: (open multi-line quote, open bracket depth)."""
    while pos < len(line):
        if quote is not None:
            if (close := line.find(quote, pos)) < 0:
                return quote, depth
            pos, quote = close + 3, None
            continue
        char = line[pos]
        if char == "#":
            break
        if line.startswith(char * 3, pos) and char in "\"'":
            pos, quote = pos + 3, char * 3
        elif char in "\"'":
            pos = _STRING[char].match(line, pos).end()  # type: ignore[union-attr]
        else:
            depth += (char in "[{") - (char in "]}")
            pos += 1
    return quote, depth


def toml_lines(text: str) -> dict[_KeyPath, int]:
    lines: dict[_KeyPath, int] = {(): 1}
    table: _KeyPath = ()
    arrays: dict[_KeyPath, int] = {}  # resolved path of an array of tables -> latest index
    quote: str | None = None  # inside a multi-line string
    depth = 0  # inside a multi-line array
    for number, line in enumerate(text.split("\n"), 1):
        if quote is not None or depth > 0:
            quote, depth = _toml_skip(line, 0, quote, depth)
        elif match := _ARRAY_HEADER.match(line):
            keys = _toml_keys(match[1])
            array = (*_toml_resolve(keys[:-1], arrays), keys[-1])
            arrays[array] = arrays.get(array, -1) + 1
            table = (*array, arrays[array])
            lines[table] = number
        elif match := _TABLE_HEADER.match(line):
            table = _toml_resolve(_toml_keys(match[1]), arrays)
        elif match := _KEY_LINE.match(line):
            keys = _toml_keys(match[1])
            lines[(*table, *keys)] = number
            for end in range(1, len(keys)):  # dotted keys create tables
                lines.setdefault((*table, *keys[:end]), number)
            quote, depth = _toml_skip(line, match.end(), None, 0)
            continue
        else:
            continue
        for end in range(1, len(table) + 1):  # a header and the tables it implies
            lines.setdefault(table[:end], number)
    return lines
