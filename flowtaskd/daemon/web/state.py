"""What the route handlers see of the web server (so that they need not import it)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from flowtaskd.daemon.web.ops import Ops
from flowtaskd.daemon.web.sse import EventLog

if TYPE_CHECKING:
    from flowtaskd.daemon.control.requests import ControlHost

__all__ = ["WebState"]


class WebState(Protocol):
    @property
    def d(self) -> ControlHost:
        """The daemon."""
        ...

    @property
    def ops(self) -> Ops: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def closing(self) -> asyncio.Event:
        """Set when the server stops: streams end."""
        ...
