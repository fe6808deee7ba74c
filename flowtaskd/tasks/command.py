"""``Command``: a task that is one operating-system command (flowtask's ``tasks.command``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowtaskd.tasks.task import Task

__all__ = ["Command"]


class Command(Task):
    """A task that is one operating-system command (argv list, env, cwd, timeout)."""

    def __init__(
        self,
        task_id: str | None = None,
        task: Any = None,
        program: str | None = None,
        loop: Any = None,
        parser: Any = None,
        *,
        command: Sequence[str] | str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        argv = command if command is not None else task
        if argv is None:
            raise ValueError("Command needs a command (argv list or string)")
        step: dict[str, Any] = {
            "command": list(argv) if not isinstance(argv, str) else argv,
            "name": "command",
        }
        if env:
            step["env"] = dict(env)
        if cwd:
            step["cwd"] = cwd
        if timeout:
            step["timeout"] = timeout
        definition = {"name": task_id or "command", "steps": [{"Command": step}]}
        super().__init__(task_id, definition, program, loop, parser, **kwargs)
