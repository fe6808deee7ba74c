"""A subscriber plugin for tests: ``setup(events)`` connects a sync and an async receiver."""

from __future__ import annotations

from typing import Any

import structlog

SEEN: list[tuple[str, str]] = []
"""(receiver kind, event name) in arrival order; tests clear it."""


def _sync(payload: dict[str, Any]) -> None:
    SEEN.append(("sync", payload["event"]))


async def _async(payload: dict[str, Any]) -> None:
    SEEN.append(("async", payload["event"]))


def _explodes(payload: dict[str, Any]) -> None:
    raise RuntimeError("a plugin receiver bug")


def setup(events: Any) -> None:
    events.connect("*", _sync)
    events.connect("*", _async)
    events.connect("done", _explodes)  # isolated: the others still get every event


def setup_from_entry_point(events: Any) -> None:
    events.connect("daemon_ready", lambda payload: SEEN.append(("entry_point", payload["event"])))


def broken_setup(events: Any) -> None:
    events.connect("*", _sync)
    raise RuntimeError("setup is broken")


def misspelled_setup(events: Any) -> None:
    events.connect("task_lodaed", _sync)


def setup_logging(events: Any) -> None:
    """For a daemon in a subprocess: each event becomes a ``plugin_saw`` log line."""
    log = structlog.get_logger("tests.subscriber_plugin")

    async def saw(payload: dict[str, Any]) -> None:
        log.info("plugin_saw", signal=payload["event"], task=payload.get("task"))

    events.connect("*", saw)


NOT_CALLABLE = 42
