"""Position-tracking JSON: decode JSON text and record the line of every key and item.

:class:`JsonReader` is a recursive-descent decoder built on ``json``'s ``scanstring`` and
number pattern, so its data equals ``json.loads``. Alongside the data it records ``lines`` (each
key path, such as ``("steps", 2, "Command")``, mapped to its 1-based line) and every duplicate
key (the later value is kept). On invalid input it raises a bare ``ValueError``: the caller
asks ``json.loads`` for the message and position. Pure: no I/O.
"""

from __future__ import annotations

import re
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.scanner import NUMBER_RE
from typing import Any

__all__ = ["JsonReader"]

_KeyPath = tuple[str | int, ...]

_WS = re.compile(r"[ \t\n\r]*")
_KEY = re.compile(r'[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')  # no escapes
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_NEXT = re.compile(r"[ \t\n\r]*([,\]}])[ \t\n\r]*")
_WORDS = ("null", "true", "false", "NaN", "Infinity", "-Infinity")  # json.loads takes NaN too
_VALUES = (None, True, False, *map(float, _WORDS[3:]))
_CONSTANTS: dict[str, Any] = dict(zip(_WORDS, _VALUES, strict=True))


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # `*` always matches


class JsonReader:
    """Recursive descent over JSON text, recording the line of every key and item."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[_KeyPath, int] = {(): 1}
        self.duplicates: list[tuple[_KeyPath, int, int]] = []
        self._cursor = 0  # the newlines before _cursor are counted in _line
        self._line = 1

    def read(self) -> Any:
        data, end = self._value(_skip(self.text, 0), ())
        if _skip(self.text, end) != len(self.text):
            raise ValueError  # json.loads says what and where
        return data

    def _line_at(self, pos: int) -> int:  # positions only grow, so this is linear overall
        self._line += self.text.count("\n", self._cursor, pos)
        self._cursor = pos
        return self._line

    def _value(self, pos: int, path: _KeyPath) -> tuple[Any, int]:
        text = self.text
        char = text[pos : pos + 1]
        if char == '"':
            return scanstring(text, pos + 1)  # type: ignore[no-any-return]
        if char == "{":
            return self._mapping(pos + 1, path)
        if char == "[":
            return self._sequence(pos + 1, path)
        if match := NUMBER_RE.match(text, pos):
            integer, fraction, exponent = match.groups()
            return (float(match[0]) if fraction or exponent else int(integer)), match.end()
        for word, constant in _CONSTANTS.items():
            if text.startswith(word, pos):
                return constant, pos + len(word)
        raise ValueError

    def _mapping(self, pos: int, path: _KeyPath) -> tuple[dict[str, Any], int]:
        text, lines, result = self.text, self.lines, dict[str, Any]()
        if (match := _NEXT.match(text, pos)) and match[1] == "}":
            return result, match.end()
        while True:
            if match := _KEY.match(text, pos):
                key, start, pos = match[1], match.start(1), match.end()
            else:
                start = _skip(text, pos)
                if text[start : start + 1] != '"':
                    raise ValueError
                key, pos = scanstring(text, start + 1)
                if not (match := _COLON.match(text, pos)):
                    raise ValueError
                pos = match.end()
            child, line = (*path, key), self._line_at(start)
            if key in result:
                self.duplicates.append((child, line, lines[child]))
            lines[child] = line
            result[key], pos = self._value(pos, child)
            if not (match := _NEXT.match(text, pos)) or match[1] == "]":
                raise ValueError
            if match[1] == "}":
                return result, match.end()
            pos = match.end()

    def _sequence(self, pos: int, path: _KeyPath) -> tuple[list[Any], int]:
        text, lines, result = self.text, self.lines, list[Any]()
        pos = _skip(text, pos)
        if text[pos : pos + 1] == "]":
            return result, pos + 1
        while True:
            child = (*path, len(result))
            lines[child] = self._line_at(pos)
            item, pos = self._value(pos, child)
            result.append(item)
            if not (match := _NEXT.match(text, pos)) or match[1] == "}":
                raise ValueError
            if match[1] == "]":
                return result, match.end()
            pos = match.end()
