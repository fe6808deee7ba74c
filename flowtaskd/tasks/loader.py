"""Read task and config files (JSON, YAML, TOML) into plain data plus a source map.

A :class:`Document` holds the data and ``lines``: each key path (``("steps", 2, "Command")``)
mapped to its 1-based line, so validation can say ``nightly.yaml:9: steps[2].Command.command:
field required``; :meth:`Document.line_of` falls back to the deepest known prefix. A path holds
a mapping key as is if it is a ``str`` or ``int`` (YAML bools too), else ``str(key)``.

- JSON: a position-tracking recursive-descent decoder on ``json``'s ``scanstring`` and number
  pattern; its data equals ``json.loads``, which also reports invalid input.
- YAML: safe only. PyYAML (libyaml) composes nodes; they are built here so each key and item
  has a line, scalars by the ``SafeConstructor`` (types as in ``yaml.safe_load``). An alias
  shares the anchored object like ``safe_load``; paths under it use the alias key's line.
  YAML 1.1 traps that PyYAML converts (plain ``yes/no/on/off`` in any case, as key or value;
  base-60 numbers like ``12:30``) are problems. (PyYAML reads ``y``/``n`` as text.)
- TOML: ``tomllib`` for data; lines by scanning ``[table]``/``[[array]]`` headers (``[steps.x]``
  after the 3rd ``[[steps]]`` is ``("steps", 2, "x")``) and ``key =`` lines, dotted keys too.
  Limit: array items and inline-table keys report the line of their key.

No content (no YAML document, blank JSON, no TOML key) gives ``data is None``. A duplicate key
keeps the later value and adds a problem. Reading the file is the only I/O.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.scanner import NUMBER_RE
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from flowtaskd.errors import Problem, TaskNotFound, TaskParseError, format_path

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["TASK_SUFFIXES", "Document", "format_for", "load_document", "parse_document"]

_KeyPath = tuple[str | int, ...]

TASK_SUFFIXES: frozenset[str] = frozenset({".json", ".yaml", ".yml", ".toml"})
_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def format_for(path: str | Path) -> str | None:
    """``"json"``, ``"yaml"`` or ``"toml"`` by the file's suffix (any case), else ``None``."""
    return _FORMATS.get(Path(path).suffix.lower())


@dataclass
class Document:
    """A parsed file: its data, the line of each key path, and non-fatal problems."""

    data: Any
    file: str | None
    format: str
    lines: dict[tuple[str | int, ...], int] = field(default_factory=lambda: {(): 1})
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of the deepest prefix of `path` that is known (so a missing key reports the
        line of its parent mapping)."""
        key = tuple(path)
        for end in range(len(key), -1, -1):
            if (line := self.lines.get(key[:end])) is not None:
                return line
        return None


def _fail(file: str | None, message: str, line: int | None = None) -> TaskParseError:
    return TaskParseError([Problem(message, file=file, line=line)], file=file)


def _duplicate(file: str | None, path: _KeyPath, line: int, first: int) -> Problem:
    message = f"duplicate key, first defined on line {first}; the later value is used"
    return Problem(message, file, line, format_path(path), "remove one of them")


def _part(key: Any) -> str | int:
    return key if isinstance(key, str | int) else str(key)


# --- JSON -----------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
_KEY = re.compile(r'[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')  # no escapes
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_NEXT = re.compile(r"[ \t\n\r]*([,\]}])[ \t\n\r]*")
_WORDS = ("null", "true", "false", "NaN", "Infinity", "-Infinity")  # json.loads takes NaN too
_VALUES = (None, True, False, *map(float, _WORDS[3:]))
_CONSTANTS: dict[str, Any] = dict(zip(_WORDS, _VALUES, strict=True))


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # `*` always matches


class _JsonReader:
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


def _parse_json(text: str, file: str | None) -> Document:
    if not text.strip(" \t\n\r"):
        return Document(None, file, "json")
    reader = _JsonReader(text)
    try:
        data = reader.read()
    except ValueError:  # bad syntax, a bad string, an integer over Python's digit limit
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            message = f"JSON syntax error: {error.msg} (column {error.colno})"
            raise _fail(file, message, error.lineno) from None
        except ValueError as error:
            raise _fail(file, f"invalid JSON: {str(error).split(';')[0]}") from None
        raise  # pragma: no cover - json.loads accepted what the reader rejected: a bug here
    problems = [_duplicate(file, *entry) for entry in reader.duplicates]
    return Document(data, file, "json", reader.lines, problems)


# --- YAML -----------------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_BOOL, _INT, _FLOAT = _TAG + "bool", _TAG + "int", _TAG + "float"
_MAP, _SEQ, _MERGE, _VALUE = _TAG + "map", _TAG + "seq", _TAG + "merge", _TAG + "value"


class _YamlBuilder:
    """Builds Python data from a composed node tree, recording lines and YAML 1.1 traps."""

    def __init__(self, loader: _Loader, file: str | None) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[_KeyPath, int] = {(): 1}
        self.problems: list[Problem] = []
        self._built: dict[int, Any] = {}  # id(node) -> object, so an alias shares it
        self._building: set[int] = set()

    def build(self, node: yaml.Node, path: _KeyPath) -> Any:
        ident = id(node)
        if ident in self._built:
            return self._built[ident]
        if ident in self._building:
            raise ConstructorError(None, None, "found a recursive alias", node.start_mark)
        self._building.add(ident)
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = self._scalar(node, path, is_key=False)
        elif isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            value = self._mapping(node, path)
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            value = self._sequence(node, path)
        else:  # !!set, !!omap...; an unknown tag raises ConstructorError, as in safe_load
            value = self.loader.construct_object(node, deep=True)
        self._building.discard(ident)
        self._built[ident] = value
        return value

    def _scalar(self, node: yaml.ScalarNode, path: _KeyPath, *, is_key: bool) -> Any:
        value = self.loader.construct_object(node)
        text = node.value
        if node.style not in (None, ""):  # quoted or block scalars are never converted
            return value
        if node.tag == _BOOL and text.lower() not in ("true", "false"):
            what = f"boolean {value}"
        elif node.tag in (_INT, _FLOAT) and ":" in text:
            what = f"the number {value} (base 60)"
        else:
            return value
        message = f"{'key ' if is_key else ''}`{text}` is read as {what} by YAML 1.1"
        hint = f"quote it ('{text}') if you mean text"
        line = node.start_mark.line + 1
        self.problems.append(Problem(message, self.file, line, format_path(path), hint))
        return value

    def _key(self, node: yaml.Node, path: _KeyPath) -> Any:
        key: Any
        if isinstance(node, yaml.ScalarNode):
            text = node.value
            key = text if node.tag == _VALUE else self._scalar(node, (*path, text), is_key=True)
        else:
            key = self.loader.construct_object(node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ConstructorError(None, None, "found unhashable key", node.start_mark) from None
        return key

    def _mapping(self, node: yaml.MappingNode, path: _KeyPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:  # `<<` merges first: explicit keys win
            if key_node.tag == _MERGE:
                self._merge(result, value_node, path, key_node.start_mark.line + 1)
        first_lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            key, line = self._key(key_node, path), key_node.start_mark.line + 1
            child = (*path, _part(key))
            if key in first_lines:
                self.problems.append(_duplicate(self.file, child, line, first_lines[key]))
            else:
                first_lines[key] = line
            self.lines[child] = line
            result[key] = self.build(value_node, child)
        return result

    def _merge(self, result: dict[Any, Any], node: yaml.Node, path: _KeyPath, line: int) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in reversed(sources):  # earlier sources win, as in safe_load
            if not isinstance(source, yaml.MappingNode):
                raise ConstructorError(None, None, "`<<` merges only mappings", source.start_mark)
            for key, value in self.build(source, path).items():
                result[key] = value
                self.lines.setdefault((*path, _part(key)), line)

    def _sequence(self, node: yaml.SequenceNode, path: _KeyPath) -> list[Any]:
        result: list[Any] = []
        for index, item in enumerate(node.value):
            self.lines[(*path, index)] = item.start_mark.line + 1
            result.append(self.build(item, (*path, index)))
        return result


def _parse_yaml(text: str, file: str | None) -> Document:
    loader = _Loader(text)
    builder = _YamlBuilder(loader, file)
    nodes: list[yaml.Node] = []
    try:
        while loader.check_node() and (node := loader.get_node()):
            nodes.append(node)
        data = builder.build(nodes[0], ()) if nodes else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = error.problem or "invalid YAML"
        message = f"{error.context}: {message}" if error.context else message
        kind = "invalid YAML" if isinstance(error, ConstructorError) else "YAML syntax error"
        column = f" (column {mark.column + 1})" if mark else ""
        raise _fail(file, f"{kind}: {message}{column}", mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as error:  # libyaml counts bytes of the UTF-8 text
        line = text.encode()[: error.position].count(b"\n") + 1
        raise _fail(file, f"invalid YAML: {error.reason}", line) from None
    finally:
        loader.dispose()
    if len(nodes) > 1:
        message = f"the file holds {len(nodes)} YAML documents; only the first is read"
        hint = "a task file is one document: remove the `---` separators"
        builder.problems.append(Problem(message, file, nodes[1].start_mark.line + 1, hint=hint))
    return Document(data, file, "yaml", builder.lines, builder.problems)


# --- TOML -----------------------------------------------------------------------------------

_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")
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


def _toml_lines(text: str) -> dict[_KeyPath, int]:
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


def _parse_toml(text: str, file: str | None) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message, line = str(error), None
        if where := _TOML_WHERE.search(message):
            message = message[: where.start()]
            if where[1]:
                line, message = int(where[1]), f"{message} (column {where[2]})"
            else:
                line, message = text.rstrip().count("\n") + 1, f"{message} (at the end)"
        raise _fail(file, f"TOML syntax error: {message}", line) from None
    return Document(data or None, file, "toml", _toml_lines(text))


# --- entry points ---------------------------------------------------------------------------

_PARSERS = {"json": _parse_json, "yaml": _parse_yaml, "toml": _parse_toml}


def parse_document(text: str, fmt: str, file: str | None = None) -> Document:
    """Parse `text` as `fmt` (``"json"``, ``"yaml"`` or ``"toml"``).

    Raises TaskParseError with one problem (file, line, message) if the text is invalid.
    """
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(_PARSERS)}")
    try:
        return parser(text, file)
    except RecursionError:
        raise _fail(file, f"{fmt.upper()} error: the data is nested too deeply") from None


def load_document(path: str | Path) -> Document:
    """Read and parse a task or config file; its suffix picks the format.

    Raises TaskNotFound if there is no such file, and TaskParseError if it cannot be read,
    has an unsupported suffix, is not UTF-8 or is not valid.
    """
    file, target = str(path), Path(path)
    fmt = format_for(target)
    if fmt is None:
        if not target.exists():
            raise TaskNotFound(f"no such file: {file}")
        suffix = repr(target.suffix) if target.suffix else "no suffix"
        supported = ", ".join(sorted(TASK_SUFFIXES))
        raise _fail(file, f"unsupported file type ({suffix}); task files end in {supported}")
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raise TaskNotFound(f"no such file: {file}") from None
    except IsADirectoryError:
        raise _fail(file, "is a directory, not a task file") from None
    except OSError as error:
        raise _fail(file, f"cannot read the file: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        message = f"not UTF-8 text: byte 0x{raw[error.start]:02x} cannot be decoded"
        raise _fail(file, message, line) from None
    return parse_document(text, fmt, file)
