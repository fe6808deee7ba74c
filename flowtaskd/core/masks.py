"""Upstream flowtask's ``masks:``: named values computed by date functions, per run.

A task file (or one step) says ``masks: {"{today}": [today, {mask: "%Y-%m-%d"}]}``: the
key names the placeholder (``{today}``, a bare ``today`` or a whole-value ``#name#``), the
value is a function call ``[function, {keyword args}]`` / ``[function, [positional args]]``
/ ``[function]``, or a text (which may use ``{param}``). The functions are upstream's (its
``querysource`` date helpers, with their names, argument names and defaults); their
results were checked against upstream's own, called at fixed dates.

Everything is evaluated against one ``now``: the run's logical time (a scheduled run's fire
time) in the task's time zone, given by the caller, so a run at 23:30 in Berlin gets
Berlin's date. Pure: no clock and no I/O here. Where upstream fails (``date_diff`` with
``mode: months`` raises there; ``date_dow`` with a date string returns nothing), these
functions do what the call plainly asks; the README's "Coming from flowtask" lists it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flowtaskd.core.maskfuncs import MASK_FUNCTIONS, MaskError

__all__ = [
    "MASK_FUNCTIONS",
    "MaskError",
    "Masks",
    "call_problem",
    "evaluate_masks",
    "mask_name",
    "replace_whole",
    "zoned_now",
]


def zoned_now(at: float | datetime, zone: str | None) -> datetime:
    """The run's logical time (epoch seconds, or a datetime) in ``zone`` (UTC if none)."""
    tz = ZoneInfo(zone or "UTC")
    return at.astimezone(tz) if isinstance(at, datetime) else datetime.fromtimestamp(at, tz)


# --- definitions and evaluation ---------------------------------------------------------------


def mask_name(key: str) -> str:
    """``"{today}"`` and ``"today"`` name the placeholder ``today``; ``"#cut#"`` stays whole."""
    key = str(key)
    if key.startswith("{") and key.endswith("}"):
        return key[1:-1]
    return key


def _split_call(definition: list[Any]) -> tuple[str, list[Any], dict[str, Any]]:
    if not definition or not isinstance(definition[0], str):
        raise MaskError("a function mask is [function, {arguments}] with the function's name first")
    if len(definition) > 2:
        raise MaskError("a function mask is [function] or [function, {arguments}]")
    args: Any = definition[1] if len(definition) == 2 else {}
    if args is None:
        args = {}
    if isinstance(args, list):
        return definition[0], args, {}
    if isinstance(args, dict):
        return definition[0], [], {str(k): v for k, v in args.items()}
    raise MaskError("a function's arguments are a mapping {name: value} or a list")


def call_problem(definition: Any) -> str | None:
    """Why a mask definition cannot be evaluated, checked without running it; else None."""
    if isinstance(definition, str | int | float | bool) or definition is None:
        return None
    if not isinstance(definition, list):
        return "a mask is a text or a function call [function, {arguments}]"
    try:
        name, args, kwargs = _split_call(definition)
    except MaskError as exc:
        return str(exc)
    func = MASK_FUNCTIONS.get(name)
    if func is None:
        return f"unknown mask function `{name}`"
    try:
        inspect.signature(func).bind(None, *args, **kwargs)
    except TypeError as exc:
        return f"{name}: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class Masks:
    """Evaluated masks: ``values`` for ``{name}`` placeholders, ``whole`` for ``#name#``
    strings that are replaced as a whole (by a value of any type)."""

    values: dict[str, Any]
    whole: dict[str, Any]


def evaluate_masks(
    definitions: Mapping[str, Any], now: datetime, variables: Mapping[str, Any]
) -> Masks:
    """Evaluate ``definitions`` at ``now``. A mask named like a run variable (or param) that
    has a value takes that value, as upstream lets a caller override a mask; a text mask
    is filled from ``variables`` (``{day}``), unknown names left as written."""
    values: dict[str, Any] = {}
    whole: dict[str, Any] = {}
    for key, definition in definitions.items():
        name = mask_name(key)
        given = variables.get(name)
        if given not in (None, ""):
            value = given
        elif isinstance(definition, list):
            fname, args, kwargs = _split_call(definition)
            func = MASK_FUNCTIONS.get(fname)
            if func is None:
                raise MaskError(f"mask {key}: unknown mask function `{fname}`")
            try:
                value = func(now, *args, **kwargs)
            except MaskError as exc:
                raise MaskError(f"mask {key}: {fname}: {exc}") from None
            except (TypeError, ValueError, OverflowError) as exc:
                raise MaskError(f"mask {key}: {fname}: {exc}") from None
        elif isinstance(definition, str):
            value = _fill(definition, {**variables, **values})
        else:
            value = definition
        if name.startswith("#"):
            whole[name] = value
        else:
            values[name] = value
    return Masks(values, whole)


class _Keep(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(text: str, variables: Mapping[str, Any]) -> str:
    try:
        return text.format_map(_Keep(variables))
    except (ValueError, AttributeError, IndexError, KeyError):
        return text


def replace_whole(obj: Any, whole: Mapping[str, Any]) -> Any:
    """``obj`` with every string that is exactly a ``#name#`` mask replaced by its value
    (of any type), in nested lists and mappings (upstream's whole-value masks)."""
    if isinstance(obj, str):
        return whole.get(obj, obj)
    if isinstance(obj, Mapping):
        return {k: replace_whole(v, whole) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [replace_whole(v, whole) for v in obj]
    return obj
