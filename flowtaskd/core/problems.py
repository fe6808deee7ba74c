r"""Pydantic's validation errors as :class:`~flowtaskd.errors.Problem`\ s a user can act on.

Each error becomes ``FILE:LINE: KEY.PATH: message (hint)``: the key path is pydantic's
location under a prefix (``steps[2].Command``) with union tags (``str``, ``list[str]``)
dropped when they name no key of the input; the line comes from the document's source map;
an unknown key gets a did-you-mean hint from the keys of the model it was found in; type
errors say what was given (``got integer 5``). Pure.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from flowtaskd.core.loader import Document
from flowtaskd.core.options import STEP_ID_PATTERN
from flowtaskd.errors import Problem, format_path

__all__ = ["closest", "pydantic_problems", "shown"]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The nearest of ``choices`` to a misspelt ``word``, if any is close."""
    hits = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return hits[0] if hits else None


_Path = tuple[str | int, ...]


_GOT = re.compile(
    r"^(\w+_type|\w+_parsing|enum|literal_error|greater_than\w*|less_than\w*|"
    r"string_too_\w+|string_pattern_mismatch|multiple_of)$"
)


def pydantic_problems(
    exc: ValidationError,
    prefix: _Path,
    doc: Document | None,
    known_keys: Iterable[str] = (),
    data: Any = None,
    models: Sequence[type[BaseModel]] = (),
) -> list[Problem]:
    """Turn pydantic's errors into our problems, with key paths and lines.

    ``data`` is the validated input: union tags in pydantic's locations (``str``,
    ``list[str]``) that name no key of it are dropped from the key path. An unknown key at
    the top is matched against ``known_keys``, one deeper against the fields of the
    sub-model of ``models`` it is in.
    """
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = _real_loc(err["loc"], data, err["type"]) if data is not None else err["loc"]
        known = set(known_keys)
        if err["type"] == "extra_forbidden" and len(loc) > 1 and models:
            known = _fields_at(models, loc[:-1])
        problem = _problem(err, (*prefix, *loc), doc, known)
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            out.append(problem)
    return out


def _fields_at(models: Sequence[type[BaseModel]], loc: _Path) -> set[str]:
    """The field names of the (sub-)models found at ``loc``."""
    here = list(models)
    for part in loc:
        inner = [
            m
            for model in here
            if isinstance(part, str) and part in model.model_fields
            for m in _models_in(model.model_fields[part].annotation)
        ]
        here = inner or here  # a list index, a mapping key: still the same model
    return {name for model in here for name in model.model_fields}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _real_loc(loc: tuple[str | int, ...], data: Any, kind: str) -> _Path:
    out: list[str | int] = []
    node = data
    for n, part in enumerate(loc):
        last = n == len(loc) - 1
        child = _child(node, part)
        if child is not _ABSENT or (last and kind in ("missing", "extra_forbidden")):
            node = child
        else:
            continue  # a union member's tag, not a key of the input
        out.append(part)
    return tuple(out)


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part, _ABSENT)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def _problem(err: ErrorDetails, path: _Path, doc: Document | None, known: Any) -> Problem:
    file = doc.file if doc else None
    line = doc.line_of(path) if doc else None
    kind = err["type"]
    hint = None
    value = err.get("input")
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        message = "unknown key"
        near = closest(str(path[-1]), known) if known else None
        hint = f"did you mean `{near}`?" if near else None
    elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == STEP_ID_PATTERN:
        message = f"a step name is letters, digits, `_`, `.` and `-`, got {_short(value)}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"should be a mapping, got {shown(value)}"
    elif kind == "too_short" and path == ("steps",):
        message = "a task needs at least one step"
    else:
        message = err["msg"].removeprefix("Value error, ").removeprefix("Input ")
        if _GOT.match(kind) and "input" in err:
            message += f", got {shown(value)}"
    return Problem(message, file=file, line=line, path=format_path(path), hint=hint)


def shown(value: Any) -> str:
    """``integer 5``, ``text 'x'``, ``a list``: what a user gave, for a message."""
    kind = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
    if isinstance(value, list | dict):
        return kind
    return f"{kind} {_short(value)}" if value is not None else kind


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
