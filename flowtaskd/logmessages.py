"""A short human sentence for each log line: the ``message`` field beside ``event``.

Log shippers and their UIs (Vector, OpenTelemetry, ECS, Loki, journald's ``MESSAGE``) show
``message`` first; ``event`` stays the machine name (the lifecycle event name), so one
line carries both. :func:`add_message` is a structlog processor; a line that already has a
``message`` keeps it. Events without a sentence of their own get one made from their name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from structlog.types import EventDict, WrappedLogger

__all__ = ["add_message", "sentence"]

_RUN = "run {run_id} of {task}"
# each event's templates, tried in order: the first whose fields are all there wins
_SENTENCES: dict[str, str | tuple[str, ...]] = {
    "run_queued": _RUN + " queued",
    "start": _RUN + " started ({trigger})",
    "done": (_RUN + " done in {duration:.3f}s", _RUN + " done"),
    "on_error": _RUN + " failed: {error}",
    "cancelled": _RUN + " cancelled",
    "exception": _RUN + " crashed: {error}",
    "run_skipped": "run of {task} skipped: {reason}",
    "step_start": "step {step} started (attempt {attempt})",
    "step_done": "step {step} done",
    "step_error": (
        "step {step} failed (exit code {exit_code:d}): {error}",
        "step {step} failed: {error}",
        "step {step} failed",
    ),
    "step_retry": "step {step} failed (attempt {attempt}), retrying in {delay:.1f}s",
    "step_skipped": "step {step} skipped: {reason}",
    "task_loaded": "task {task} loaded from {file}",
    "task_invalid": "task file {file} is invalid",
    "daemon_ready": "daemon ready",
    "task_folder_missing": "task folder {folder} does not exist (yet): watching for it",
    "daemon_stopping": "daemon stopping",
    "webhook_failed": "webhook to {url} given up after {attempts} attempt(s): {error}",
}


def sentence(event: str, fields: Mapping[str, Any]) -> str:
    """The sentence for ``event`` with ``fields``; its name made readable as a fallback."""
    templates = _SENTENCES.get(event, ())
    for template in (templates,) if isinstance(templates, str) else templates:
        try:
            return template.format_map(fields)
        except (KeyError, ValueError, TypeError, AttributeError, IndexError):
            continue  # a field is missing or of another type: the next one, or the name
    if " " in event:  # already a sentence (a stdlib logger's message)
        return event
    text = event.replace("_", " ")
    task = fields.get("task")
    return f"{text} ({task})" if isinstance(task, str) and task not in text else text


def add_message(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: set ``message`` from ``event`` and the fields, unless set."""
    if "message" not in event_dict:
        event = event_dict.get("event")
        event_dict["message"] = sentence(str(event), event_dict) if event is not None else ""
    return event_dict
