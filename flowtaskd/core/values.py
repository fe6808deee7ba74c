"""Placeholders in step parameters: ``{name}``, ``{now:%Y-%m-%d}``, ``{steps.<id>.output}``.

Substitution happens inside each string value (an argv element stays one argument: a
parameter holding ``; rm -rf ~`` is never re-split or passed through a shell). ``{{`` and
``}}`` stand for literal braces. An unknown placeholder is an error before the step
starts, never an empty string. Pure: the caller passes the values and the clock's now.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flowtaskd.errors import PlaceholderError

__all__ = ["has_braces", "mask_values", "placeholders", "resolve"]

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w.\-]*)(?::([^{}]*))?\}")


def mask_values(now: datetime) -> dict[str, Any]:
    """The built-in masks: ``today``, ``yesterday`` (dates), ``now`` (a datetime).

    Each takes a strftime format: ``{today:%Y%m%d}``; bare they render ISO 8601.
    """
    return {"today": now.date(), "yesterday": (now - timedelta(days=1)).date(), "now": now}


def has_braces(value: Any) -> bool:
    """Whether any string in ``value`` (nested lists and mappings) holds ``{`` or ``}``."""
    if isinstance(value, str):
        return "{" in value or "}" in value
    if isinstance(value, Mapping):
        return any(has_braces(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_braces(v) for v in value)
    return False


def placeholders(text: str) -> list[str]:
    """The placeholder names used in ``text`` (escaped braces ignored)."""
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1)]


def _render(value: Any, spec: str | None) -> str:
    if spec:
        return format(value, spec)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resolve_str(text: str, values: Mapping[str, Any], where: str, lenient: bool = False) -> str:
    if "{" not in text and "}" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        name, spec = m.group(1), m.group(2)
        if name not in values:
            if lenient:  # `placeholders: lenient`: upstream leaves it as written
                return tok
            near = difflib.get_close_matches(name, list(values), n=1)
            hint = f" (did you mean {{{near[0]}}}?)" if near else ""
            raise PlaceholderError(f"{where}: unknown placeholder {{{name}}}{hint}")
        try:
            return _render(values[name], spec)
        except (ValueError, TypeError) as exc:
            raise PlaceholderError(f"{where}: bad format in {tok}: {exc}") from None

    return _TOKEN.sub(sub, text)


def resolve(
    obj: Any, values: Mapping[str, Any], where: str = "params", lenient: bool = False
) -> Any:
    """Return ``obj`` with placeholders in every string replaced (new containers).

    ``lenient``: an unknown placeholder is left as written instead of an error."""
    if isinstance(obj, str):
        return _resolve_str(obj, values, where, lenient)
    if isinstance(obj, Mapping):
        return {k: resolve(v, values, f"{where}.{k}", lenient) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [resolve(v, values, f"{where}[{i}]", lenient) for i, v in enumerate(obj)]
    return obj
