"""``Step`` and ``TaskPile`` at flowtask's module path, validating against the installed
components (built-ins and plugins).

The model lives in the pure core (:mod:`flowtaskd.core.pile`), which is handed its
components as a catalog; here the catalog is the component registry, so
``TaskPile(task)``, ``load_pile(path)`` and ``check_syntax(task)`` work as in flowtask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowtaskd.components.registry import registry
from flowtaskd.core import pile as core
from flowtaskd.core.catalog import Catalog
from flowtaskd.core.loader import load_document
from flowtaskd.core.pile import Step
from flowtaskd.core.schema import TaskDefinition, validate_definition

__all__ = ["Step", "TaskPile", "check_syntax", "load_pile", "load_task"]


class TaskPile(core.TaskPile):
    """flowtask's ``TaskPile(task, program)``: a task as a DAG of steps."""

    def __init__(
        self,
        task: Mapping[str, Any] | TaskDefinition,
        program: str | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> None:
        super().__init__(task, program, catalog=registry() if catalog is None else catalog)

    @classmethod
    def from_task_pile(
        cls,
        task_pile: Sequence[Mapping[str, Any]],
        name: str = "Generated TaskPile",
        program: str | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> core.TaskPile:
        return super().from_task_pile(
            task_pile, name, program, catalog=registry() if catalog is None else catalog
        )


def load_pile(path: str | Path, program: str | None = None) -> TaskPile:
    """Read, validate and build a task file's DAG (every problem reported at once)."""
    doc = load_document(path)
    return TaskPile(validate_definition(doc.data, doc, catalog=registry()), program)


def load_task(path: str | Path) -> TaskDefinition:
    """Read a JSON, YAML or TOML task file into a validated definition (its graph too)."""
    return load_pile(path).definition


def check_syntax(task: Mapping[str, Any] | TaskDefinition) -> bool:
    """True if ``task`` is a valid task, else raise :class:`~flowtaskd.errors.TaskParseError`."""
    return core.check_syntax(task, catalog=registry())
