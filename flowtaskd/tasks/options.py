"""``TaskOptions``: the keyword options of :class:`~flowtaskd.tasks.task.Task` beyond
flowtask's positional signature, typed so that mypy checks every caller."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from os import PathLike
from typing import Any, TypedDict

from flowtaskd.clock import Clock
from flowtaskd.components.context import Executor
from flowtaskd.engine.events import EventBus
from flowtaskd.engine.hookpost import WebhookSink
from flowtaskd.engine.runner import Kept

__all__ = ["TaskOptions", "inherited"]


class TaskOptions(TypedDict, total=False):
    """Every option is optional; see :class:`~flowtaskd.tasks.task.Task`."""

    params: Mapping[str, Any]
    """Per-run values of the task's params (overriding its defaults)."""
    executor: Executor
    """Where steps run (default: a local executor the task owns)."""
    events: EventBus
    """A bus to share (the daemon's); default: one the task owns."""
    clock: Clock
    trigger: str
    """Why the run happens: manual, schedule, inbox, catchup, exec, subrun, retry, backfill."""
    run_id: str
    log_dir: str | PathLike[str]
    """Where step logs go (default ``<tmp>/flowtaskd-logs``)."""
    kill_grace: float
    """Seconds between SIGTERM and SIGKILL when a step is stopped."""
    python_allow: tuple[str, ...] | None
    """Module prefixes a ``Python`` step may import from (None: any)."""
    resolve_task: Callable[[str], Any] | None
    """A library name -> its file (for names and ``RunTask``)."""
    tasks_dir: str | PathLike[str]
    """Where names are looked up without ``resolve_task``."""
    base_env: Mapping[str, str]
    """The environment steps start from (default: this process's)."""
    depth: int
    """How deep in sub-runs this run is (the engine refuses past a limit)."""
    logical_time: datetime | None
    """An aware time the masks evaluate at (a schedule's fire time, a backfill's date)."""
    kept: Mapping[str, Kept] | None
    """Step id -> how it ended in the run retried: the steps a retry does not run again."""
    caller_file: str | None
    """The file of the task that started this sub-run (upstream's program tree is read
    from its place)."""
    webhooks: WebhookSink | None
    """Where ``WebHook`` actions go (the daemon's dispatcher); None: posted in place."""


def inherited(options: TaskOptions) -> TaskOptions:
    """The options a sub-run (``RunTask``) takes over from its parent."""
    keep = TaskOptions()
    for key in ("log_dir", "kill_grace", "python_allow", "resolve_task", "tasks_dir", "webhooks"):
        if key in options:
            keep[key] = options[key]
    if "base_env" in options:
        keep["base_env"] = options["base_env"]
    return keep
