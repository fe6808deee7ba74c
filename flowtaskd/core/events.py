"""The names of the lifecycle events and the shape of their payloads (pure: no I/O).

:data:`TASK_EVENTS` are the upstream flowtask names (``completed`` is always the last event
of a run and carries the stats), :data:`STEP_EVENTS` describe single steps,
:data:`DAEMON_EVENTS` the daemon around the runs. :mod:`flowtaskd.engine.events` dispatches them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

__all__ = [
    "ALL_EVENTS",
    "CATCH_ALL",
    "DAEMON_EVENTS",
    "FILE_EVENTS",
    "STEP_EVENTS",
    "TASK_EVENTS",
    "UPSTREAM_EVENTS",
    "Payload",
    "Receiver",
    "unknown_event",
]

TASK_EVENTS: tuple[str, ...] = (
    "start",
    "running",
    "done",
    "on_error",
    "exception",
    "completed",
    "cancelled",
)
STEP_EVENTS: tuple[str, ...] = (
    "step_start",
    "step_done",
    "step_error",
    "step_retry",
    "step_skipped",
)
UPSTREAM_EVENTS: tuple[str, ...] = (
    "file_not_found",
    "file_empty",
    "data_not_found",
    "data_error",
)
"""Upstream flowtask's failure events: fired, besides ``step_error``, when a step fails for
the matching reason (a ``FileList`` that finds nothing: ``file_not_found``)."""
DAEMON_EVENTS: tuple[str, ...] = (
    "task_loaded",
    "task_removed",
    "task_invalid",
    "task_rejected",
    "run_queued",
    "run_skipped",
    "schedule_missed",
    "daemon_ready",
    "daemon_reloaded",
    "daemon_stopping",
    "daemon_fault",
    "inbox_ignored",
)
ALL_EVENTS: tuple[str, ...] = TASK_EVENTS + STEP_EVENTS + UPSTREAM_EVENTS + DAEMON_EVENTS
FILE_EVENTS: tuple[str, ...] = TASK_EVENTS + STEP_EVENTS + UPSTREAM_EVENTS
"""The events a task file's ``events:`` block may act on."""
CATCH_ALL = "*"
"""Connect to this name to receive every event."""

Payload = dict[str, Any]
Receiver = Callable[[Payload], object]
"""``receiver(payload)``; a plain function or an ``async def`` coroutine function."""


def unknown_event(name: str) -> ValueError:
    valid = (*ALL_EVENTS, CATCH_ALL)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown event {name!r}{hint} (valid: {', '.join(valid)})")
