"""flowtaskd: an event-driven task daemon (watched folders, cron schedules, DAG runs).

The public API. Names are imported on first use (PEP 562), so ``import flowtaskd`` stays
cheap for the CLI and for code that only needs the errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowtaskd.engine.events import EventBus
    from flowtaskd.engine.stats import TaskMonitor
    from flowtaskd.errors import FlowtaskError, Problem, TaskParseError
    from flowtaskd.tasks.abstract import AbstractTask
    from flowtaskd.tasks.command import Command
    from flowtaskd.tasks.pile import Step, TaskPile, check_syntax, load_pile, load_task
    from flowtaskd.tasks.task import Task

__all__ = [
    "AbstractTask",
    "Command",
    "EventBus",
    "FlowtaskError",
    "Problem",
    "Step",
    "Task",
    "TaskMonitor",
    "TaskParseError",
    "TaskPile",
    "check_syntax",
    "load_pile",
    "load_task",
]

_WHERE: dict[str, str] = {
    # errors
    "FlowtaskError": "flowtaskd.errors",
    "Problem": "flowtaskd.errors",
    "TaskParseError": "flowtaskd.errors",
    # the task model
    "Step": "flowtaskd.tasks.pile",
    "TaskPile": "flowtaskd.tasks.pile",
    "check_syntax": "flowtaskd.tasks.pile",
    "load_pile": "flowtaskd.tasks.pile",
    "load_task": "flowtaskd.tasks.pile",
    # running tasks, their stats and events
    "AbstractTask": "flowtaskd.tasks.abstract",
    "Task": "flowtaskd.tasks.task",
    "Command": "flowtaskd.tasks.command",
    "TaskMonitor": "flowtaskd.engine.stats",
    "EventBus": "flowtaskd.engine.events",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowtaskd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
