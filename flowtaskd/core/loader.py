"""Read task and config files (JSON, YAML, TOML) into plain data plus a source map.

A :class:`Document` holds the data and ``lines``: each key path (``("steps", 2, "Command")``)
mapped to its 1-based line, so validation can say ``nightly.yaml:9: steps[2].Command.command:
field required``; :meth:`Document.line_of` falls back to the deepest known prefix. A path holds
a mapping key as is if it is a ``str`` or ``int`` (YAML bools too), else ``str(key)``.

- JSON: a position-tracking recursive-descent decoder on ``json``'s ``scanstring`` and number
  pattern (:mod:`flowtaskd.core._jsonpos`); its data equals ``json.loads``, which also reports
  invalid input.
- YAML: safe only. PyYAML (libyaml) composes nodes; they are built here so each key and item
  has a line, scalars by the ``SafeConstructor`` (types as in ``yaml.safe_load``). An alias
  shares the anchored object like ``safe_load``; paths under it use the alias key's line.
  YAML 1.1 traps that PyYAML converts (plain ``yes/no/on/off`` in any case, as key or value;
  base-60 numbers like ``12:30``) are problems. (PyYAML reads ``y``/``n`` as text.)
- TOML: ``tomllib`` for data; lines by scanning ``[table]``/``[[array]]`` headers (``[steps.x]``
  after the 3rd ``[[steps]]`` is ``("steps", 2, "x")``) and ``key =`` lines, dotted keys too
  (:mod:`flowtaskd.core._tomllines`). Limit: array items and inline-table keys report the line
  of their key.

No content (no YAML document, blank JSON, no TOML key) gives ``data is None``. A duplicate key
adds a problem naming both lines (the data keeps the later value, so later checks see what
upstream would have run, but the file is refused). Reading the file is the only I/O.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from flowtaskd.core._jsonpos import JsonReader
from flowtaskd.core._tomllines import toml_lines
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
    key = path[-1] if path else ""
    message = (
        f"duplicate key `{key}` (first on line {first}, again on line {line}): the file is "
        "refused, where upstream flowtask would silently keep the later value"
    )
    return Problem(message, file, line, format_path(path), "remove one of them")


def _part(key: Any) -> str | int:
    return key if isinstance(key, str | int) else str(key)


# --- JSON -----------------------------------------------------------------------------------


def _parse_json(text: str, file: str | None) -> Document:
    if not text.strip(" \t\n\r"):
        return Document(None, file, "json")
    reader = JsonReader(text)
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
    return Document(data or None, file, "toml", toml_lines(text))


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
