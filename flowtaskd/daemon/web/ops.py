"""The one door the web server uses to the daemon's operations: the control requests.

Every operation of the HTTP API (status, tasks, trigger, cancel, reload, and whatever the
control socket learns later: retry, pause, backfill, logs) is answered by the same
:class:`~flowtaskd.daemon.control.requests.Requests` handler the socket and the CLI use;
this module only turns their replies and errors into HTTP statuses. An operation the
control socket does not know (yet) is a 501, not a different implementation.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from flowtaskd.daemon.control.requests import COMMANDS, BadRequest
from flowtaskd.engine.events import Payload
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER

__all__ = ["ApiError", "Ops", "RequestAnswerer"]


class ApiError(Exception):
    """An HTTP error reply: ``{"error": error, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail

    def body(self) -> Payload:
        return {"error": GLOBAL_MASKER.mask(self.error), "detail": self.detail}


class RequestAnswerer(Protocol):
    """What :class:`~flowtaskd.daemon.control.requests.Requests` offers."""

    async def answer(self, session: Any, cmd: str, req: dict[str, Any]) -> Payload: ...


class _HttpSession:
    """The control requests' view of an HTTP request: replies are collected, not sent."""

    def __init__(self) -> None:
        self.state = "busy"
        self.wake = asyncio.Event()
        self.replies: list[Payload] = []

    async def send(self, obj: Payload) -> None:
        self.replies.append(obj)


class Ops:
    """Calls control requests by name; see the module doc."""

    def __init__(self, requests: RequestAnswerer) -> None:
        self.requests = requests

    @staticmethod
    def known(cmd: str) -> bool:
        return cmd in COMMANDS

    async def call(self, cmd: str, **fields: Any) -> Payload:
        """The last reply of ``cmd``; ApiError(400) for a bad request, 501 if unknown, and
        ``conflict`` (default 409) for a refused one (``ok: false``)."""
        if cmd not in COMMANDS:
            raise ApiError(501, f"{cmd} is not available in this flowtaskd", {"operation": cmd})
        req = {"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
        try:
            reply = await self.requests.answer(_HttpSession(), cmd, req)
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        except FlowtaskError as exc:
            text = str(exc)
            raise ApiError(404 if text.startswith("no ") else 400, text) from None
        if not reply.get("ok", True):
            error = str(reply.get("error") or f"{cmd} failed")
            raise ApiError(404 if error.startswith("no such") else 409, error)
        out = {k: v for k, v in reply.items() if k != "ok"}
        masked: Payload = GLOBAL_MASKER.mask_obj(out)
        return masked
