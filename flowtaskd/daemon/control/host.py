"""What the control socket's request handlers know of the daemon and of a connection:
:class:`ControlHost` (the composition root is one), :class:`ControlView` (the server) and
:class:`Session` (the connection a request came on). Small protocols, so the handlers of
:mod:`flowtaskd.daemon.control.requests` and :mod:`flowtaskd.daemon.control.oncall` (and
the HTTP API) depend on no concrete class."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from flowtaskd.engine.events import Payload

if TYPE_CHECKING:
    from pathlib import Path

    from flowtaskd.clock import Clock
    from flowtaskd.daemon.config.load import DaemonConfig
    from flowtaskd.daemon.faults import Faults
    from flowtaskd.daemon.intake.library import Library
    from flowtaskd.daemon.ops.backfill import Backfills
    from flowtaskd.daemon.runs.manager import RunManager
    from flowtaskd.daemon.runs.records import RunStore
    from flowtaskd.daemon.schedule.scheduler import Scheduler
    from flowtaskd.engine.events import EventBus

__all__ = ["ControlHost", "ControlView", "Session"]


class Session(Protocol):
    """The connection a request came on."""

    state: str
    """``busy`` while a request is served; a handler sets ``wait`` while it waits for a run."""
    wake: asyncio.Event
    """Set by the server at stop, so that a waiting handler looks again."""

    async def send(self, obj: Payload) -> None:
        """Write one reply now (before the handler returns its last one)."""


class WebView(Protocol):
    """The web server, as ``status`` reports it."""

    def summary(self) -> Payload: ...


class ControlHost(Protocol):
    """What the control socket reads and does of the daemon (the composition root is one)."""

    @property
    def config(self) -> DaemonConfig: ...

    @property
    def config_path(self) -> Path | None: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def started_at(self) -> float: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def library(self) -> Library: ...

    @property
    def runs(self) -> RunManager: ...

    @property
    def store(self) -> RunStore: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def backfills(self) -> Backfills: ...

    @property
    def web(self) -> WebView | None: ...

    @property
    def faults(self) -> Faults: ...

    def trigger(self, name: str, params: Mapping[str, Any]) -> str | None:
        """Start a run of a loaded task now; its run id, or None when it was skipped."""
        ...

    async def reload(self) -> dict[str, Any]: ...


class ControlView(Protocol):
    """What the request handlers need to know about the control server."""

    @property
    def stopping(self) -> bool: ...

    def summary(self) -> Payload:
        """The ``control`` section of ``status``: socket, connections, subscribers, drops."""
