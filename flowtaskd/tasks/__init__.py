"""The flowtask task API at its module paths: ``AbstractTask``, ``Task``, ``Command``,
``Step``, ``TaskPile``, ``TaskMonitor``, ``check_syntax``, ``TaskParseError``.

``from flowtaskd.tasks import Task`` is what a flowtask user porting code writes. The
definitions and the DAG are the pure core's (:mod:`flowtaskd.core`); running them is the
engine's (:mod:`flowtaskd.engine`); this package is their public face.
"""

from flowtaskd.core.graph import Group
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks.abstract import AbstractTask
from flowtaskd.tasks.command import Command
from flowtaskd.tasks.pile import Step, TaskPile, check_syntax, load_pile, load_task
from flowtaskd.tasks.task import Task

__all__ = [
    "AbstractTask",
    "Command",
    "Group",
    "Step",
    "Task",
    "TaskMonitor",
    "TaskParseError",
    "TaskPile",
    "check_syntax",
    "load_pile",
    "load_task",
]
