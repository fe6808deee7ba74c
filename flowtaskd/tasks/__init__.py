"""The task model and the flowtask API: definitions, the TaskPile DAG, and running tasks."""

from __future__ import annotations

from pathlib import Path

from flowtaskd.errors import TaskParseError
from flowtaskd.tasks.loader import load_document
from flowtaskd.tasks.pile import Group, Step, TaskPile
from flowtaskd.tasks.schema import StepSpec, TaskDefinition, validate_definition

__all__ = [
    "Group",
    "Step",
    "StepSpec",
    "TaskDefinition",
    "TaskParseError",
    "TaskPile",
    "check_syntax",
    "load_pile",
    "load_task",
]


def load_task(path: str | Path) -> TaskDefinition:
    """Read a JSON, YAML or TOML task file into a validated definition."""
    doc = load_document(path)
    return validate_definition(doc.data, doc)


def load_pile(path: str | Path) -> TaskPile:
    """Read, validate and build a task file's DAG (every problem reported at once)."""
    return TaskPile(load_task(path))


def check_syntax(task: object) -> bool:
    """True if ``task`` (a dict) is a valid task, else raise :class:`TaskParseError`."""
    TaskPile(validate_definition(task))
    return True
