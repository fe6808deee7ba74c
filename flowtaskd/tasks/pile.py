"""``Step`` and ``TaskPile`` at flowtask's module path; they live in the pure core,
:mod:`flowtaskd.core.pile`."""

from flowtaskd.core.pile import Step, TaskPile, check_syntax, load_pile, load_task

__all__ = ["Step", "TaskPile", "check_syntax", "load_pile", "load_task"]
