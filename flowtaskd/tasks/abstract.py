"""``AbstractTask``: the async life of a task (flowtask's design).

``async with task:`` starts it (loads and validates the definition, opens the event bus)
and closes it (releases the executor, drains event receivers). ``run()`` runs it;
``stats`` is the run's :class:`~flowtaskd.engine.stats.TaskMonitor`; ``task_events()`` is the
task's event manager with the default list of events.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any

from flowtaskd.engine.events import EventBus
from flowtaskd.engine.stats import TaskMonitor
from flowtaskd.tasks.pile import check_syntax

__all__ = ["AbstractTask"]


class AbstractTask(abc.ABC):
    """Base class of every task. ``loop`` is accepted for flowtask compatibility and unused:
    the running loop is the one ``start()`` is awaited in."""

    def __init__(
        self,
        task_id: str | None = None,
        task: Any = None,
        program: str | None = None,
        loop: Any = None,
        parser: Any = None,
        userid: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.task_id = task_id
        self.task = task
        self.program = program
        self.parser = parser
        self.userid = userid
        self.kwargs = kwargs
        events = kwargs.get("events")
        self._bus: EventBus | None = events if isinstance(events, EventBus) else None
        self._owns_bus = self._bus is None
        self._stats: TaskMonitor | None = None
        self._started = False

    # -- flowtask API -----------------------------------------------------------------
    @property
    def stats(self) -> TaskMonitor:
        """The run's statistics (a :class:`TaskMonitor`); empty before the run starts."""
        if self._stats is None:
            name = str(self.task_id or "task")
            self._stats = TaskMonitor(name, "")
        return self._stats

    def task_events(self) -> EventBus:
        """The task's event manager, created on first use with the default events."""
        if self._bus is None:
            self._bus = EventBus()
        return self._bus

    @staticmethod
    def check_syntax(task: Any) -> bool:
        """True when ``task`` (a dict) is a valid task; raises ``TaskParseError`` otherwise."""
        return check_syntax(task)

    async def __aenter__(self) -> AbstractTask:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None:
        """Load and validate the definition; open what the run needs."""

    @abc.abstractmethod
    async def run(self) -> TaskMonitor:
        """Run the task once; returns its stats."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything the run held."""
