"""``StepSpec``: one validated step of a task file (what the graph and the engine read)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowtaskd.core.options import StepOptions, StrictModel

__all__ = ["StepSpec"]


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One validated step: its id, component, parameters and options."""

    index: int
    id: str
    component: str
    params: StrictModel
    options: StepOptions
    line: int | None = None
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The step's mapping as written (parameters and options), when it came from data."""
    iterator: bool | None = None
    """Whether the component feeds groups (``None``: an invalid step, not known)."""
