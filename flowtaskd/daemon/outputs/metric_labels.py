"""Label values for metrics that stay bounded whatever is dropped into an inbox.

A Prometheus series per label value: a label fed by the traffic (a task name made up per
dropped file, a free-text reason) grows without end. :class:`LabelBounds` maps a task name
to itself only when it names a loaded task; a run of anything else is labelled by its
inbox (``inbox:<name>``, the names come from the config; every inbox run is, whatever
the file calls itself) or ``other``. A step keeps its
name only when it is a step of the loaded task. :func:`skip_reason` folds
``run_skipped``'s text into a few words.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Protocol

__all__ = ["OTHER", "LabelBounds", "build_info", "skip_reason"]

OTHER = "other"
_INBOXES_MAX = 100_000  # open run -> inbox notes kept; the oldest go first beyond it


class _Tasks(Protocol):
    @property
    def tasks(self) -> Mapping[str, object]: ...


class LabelBounds:
    """Bounded ``task`` and ``step`` label values, read from the library on each event.

    Without a library (tests, ``flowtaskd exec``) names are taken as they are.
    """

    def __init__(self, library: _Tasks | None) -> None:
        self.library = library
        self._inbox: dict[str, str] = {}  # run_id -> inbox, from run_queued

    def note_inbox(self, run_id: str, inbox: Any) -> None:
        if isinstance(inbox, str):
            self._inbox[run_id] = inbox
            if len(self._inbox) > _INBOXES_MAX:
                del self._inbox[next(iter(self._inbox))]

    def forget(self, run_id: str) -> None:
        self._inbox.pop(run_id, None)

    def task(self, name: Any, run_id: Any) -> str:
        if not isinstance(name, str):
            return OTHER
        inbox = self._inbox.get(run_id) if isinstance(run_id, str) else None
        if inbox is not None:  # a dropped file: its name is the sender's to choose
            return f"inbox:{inbox}"
        return name if self.library is None or name in self.library.tasks else OTHER

    def step(self, task: str, step: Any) -> str:
        if not isinstance(step, str):
            return OTHER
        if self.library is None:
            return step
        loaded = self.library.tasks.get(task)
        pile = getattr(loaded, "pile", None)
        try:
            return step if pile is not None and step in pile else OTHER
        except TypeError:
            return OTHER


_REASONS = (
    ("overlap", "overlap"),
    ("queue full", "queue_full"),
    ("paused", "paused"),
    ("stopping", "stopping"),
    ("cancelled", "cancelled"),
)


def skip_reason(payload: Mapping[str, Any]) -> str:
    """``run_skipped``'s reason as one of a few words (``kind`` wins when the event has it)."""
    kind = payload.get("kind")
    if isinstance(kind, str) and kind in {word for _, word in _REASONS}:
        return kind
    text = str(payload.get("reason") or "").lower()
    for needle, word in _REASONS:
        if needle in text:
            return word
    return OTHER


def build_info() -> dict[str, str]:
    """The labels of ``flowtaskd_build_info``."""
    try:
        version = metadata.version("flowtaskd")
    except metadata.PackageNotFoundError:
        version = "0"
    return {"version": version, "python": platform.python_version()}
