"""Upstream flowtask's per-step values: masks, variables, conditions and ``file.value``.

For each step, on top of the run's params and the built-in placeholders:

- ``variables``: the task's, then each step's in upstream's pile order; a value set earlier
  is kept (upstream merges the earlier step's variables over a later step's own).
- ``masks``: the task's, then the step's own (a step's mask of the same name wins), each
  evaluated at the run's logical time in the task's zone; a mask named like a variable or
  param with a value takes that value, as upstream lets a caller override a mask.
- ``conditions``: named values for this step only.
- ``file: {pattern, value}``: ``{value}`` in the pattern is filled by the mask function,
  the variable, or the text that ``value`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowtaskd.core.masks import Masks, evaluate_masks, replace_whole
from flowtaskd.core.pile import TaskPile

__all__ = ["StepValues"]


class StepValues:
    """The upstream values of every step of one pile (worked out once per run)."""

    def __init__(self, pile: TaskPile) -> None:
        d = pile.definition
        self.task_masks = dict(d.header.masks)
        self._variables: dict[str, dict[str, Any]] = {}
        self._masks: dict[str, dict[str, Any]] = {}
        self._conditions: dict[str, dict[str, Any]] = {}
        acc = dict(d.header.variables)
        order = [s.id for s in pile]
        if d.numbering is not None:
            index = {s.spec.index: s.id for s in pile if s.spec is not None}
            order = [index[i] for entry in d.numbering.entries for i in entry if i in index]
        for sid in order:
            opts = pile[sid].spec.options if pile[sid].spec is not None else None  # type: ignore[union-attr]
            own = dict(opts.variables or {}) if opts is not None else {}
            acc = {**own, **acc}
            self._variables[sid] = acc
            if opts is not None and (opts.masks or self.task_masks):
                self._masks[sid] = {**self.task_masks, **(opts.masks or {})}
            if opts is not None and opts.conditions:
                self._conditions[sid] = dict(opts.conditions)
        self.used = bool(acc or self._masks or self._conditions)

    def involved(self, sid: str, params: Mapping[str, Any]) -> bool:
        """Whether the step needs this module at all (most steps don't)."""
        return bool(
            self._variables.get(sid) or sid in self._masks or sid in self._conditions
        ) or isinstance(params.get("file"), dict)

    def values(
        self, sid: str, base: Mapping[str, Any], now: datetime
    ) -> tuple[dict[str, Any], Masks]:
        """The step's extra placeholder values, and its masks (``#name#`` ones apart)."""
        extra: dict[str, Any] = dict(self._variables.get(sid, {}))
        extra.update(self._conditions.get(sid, {}))
        masks = evaluate_masks(self._masks.get(sid, {}), now, {**base, **extra})
        extra.update({k: v for k, v in masks.values.items() if k not in extra})
        return extra, masks

    @staticmethod
    def file_pattern(
        params: Mapping[str, Any], values: Mapping[str, Any], now: datetime
    ) -> Mapping[str, Any]:
        """``params`` with ``{value}`` in ``file: {pattern, value}`` filled in (the mapping
        stays one: each component reads its own ``file`` model, e.g. FTP's regex)."""
        file = params.get("file")
        if not isinstance(file, dict) or "pattern" not in file:
            return params
        value = file.get("value")
        if isinstance(value, list):
            value = evaluate_masks({"value": value}, now, {}).values["value"]
        elif isinstance(value, str) and value in values:
            value = values[value]
        pattern = str(file["pattern"])
        if value is not None:
            pattern = pattern.replace("{value}", str(value))
        return {**params, "file": {**file, "pattern": pattern}}

    @staticmethod
    def whole(params: Any, masks: Masks) -> Any:
        return replace_whole(params, masks.whole) if masks.whole else params
