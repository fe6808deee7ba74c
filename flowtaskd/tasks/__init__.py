"""The task model: definitions, validation and the TaskPile DAG (the pure core's API).

``load_task(path)`` reads a JSON, YAML or TOML task file into a validated definition,
``load_pile(path)`` builds its DAG, ``check_syntax(task)`` checks a task dict. Each raises
:class:`~flowtaskd.errors.TaskParseError` carrying every problem found. Running tasks
(``Task``) lives in :mod:`flowtaskd.tasks.task`, outside this pure API.

Names are imported on first use (PEP 562): importing one module of the package, such as
``flowtaskd.tasks.options`` from a component, does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowtaskd.errors import TaskParseError
    from flowtaskd.tasks.graph import Group
    from flowtaskd.tasks.pile import Step, TaskPile, check_syntax, load_pile, load_task
    from flowtaskd.tasks.schema import StepSpec, TaskDefinition

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

_WHERE = {
    "Group": "flowtaskd.tasks.graph",
    "Step": "flowtaskd.tasks.pile",
    "StepSpec": "flowtaskd.tasks.schema",
    "TaskDefinition": "flowtaskd.tasks.schema",
    "TaskParseError": "flowtaskd.errors",
    "TaskPile": "flowtaskd.tasks.pile",
    "check_syntax": "flowtaskd.tasks.pile",
    "load_pile": "flowtaskd.tasks.pile",
    "load_task": "flowtaskd.tasks.pile",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowtaskd.tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
