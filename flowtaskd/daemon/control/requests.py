"""The requests of the control socket: parsing, validation and the one-reply handlers.

A request line is one JSON object naming its command in ``"cmd"``; :func:`parse_request`
checks it (a JSON object, a known command, only that command's fields) and raises
:class:`BadRequest` with a message a user can act on (with a did-you-mean where one helps).
:class:`Requests` answers ``status``, ``tasks``, ``trigger``, ``cancel``, ``history`` and
``reload`` against the daemon; ``subscribe`` takes the connection over, so the server in
:mod:`flowtaskd.daemon.control.server` serves it, after :func:`subscribe_filters` has checked it.

This module knows the socket only through two small protocols: a :class:`Session` (the
connection a request came on: it can send a reply early and be marked waiting) and a
:class:`ControlView` (what ``status`` reports about the server, and whether it stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import json
import os
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flowtaskd.daemon.control.host import ControlHost, ControlView, Session
from flowtaskd.daemon.control.oncall import ONCALL_FIELDS, oncall_handlers
from flowtaskd.engine.events import ALL_EVENTS, CATCH_ALL, Payload
from flowtaskd.errors import FlowtaskError

__all__ = [
    "COMMANDS",
    "BadRequest",
    "ControlHost",
    "ControlView",
    "Requests",
    "Session",
    "error_reply",
    "parse_request",
    "subscribe_filters",
]

_FIELDS: dict[str, tuple[str, ...]] = {
    "status": (),
    "tasks": (),
    "trigger": ("task", "params", "wait"),
    "cancel": ("run_id",),
    "history": ("task", "n"),
    "reload": (),
    "runs": ("offset", "limit"),
    "subscribe": ("events", "task"),
    **ONCALL_FIELDS,
}
COMMANDS: tuple[str, ...] = tuple(_FIELDS)
"""Every command the control socket takes."""

_RECHECK = 1.0  # a waiting trigger looks again this often for a run that ended unseen
_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


class BadRequest(Exception):
    """The request is malformed; the message says how."""


def error_reply(message: str) -> Payload:
    """The reply to a request that failed."""
    return {"ok": False, "error": message}


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """The command and the request object of one line; BadRequest if malformed."""
    try:
        req = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest(f"the request is not JSON ({exc})") from None
    if not isinstance(req, dict):
        raise BadRequest(
            f'a request is a JSON object such as {{"cmd": "status"}}, got {_kind(req)}'
        )
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        got = "it is missing" if cmd is None else f"got {_kind(cmd)}"
        raise BadRequest(f'"cmd" names the request ({", ".join(COMMANDS)}); {got}')
    if cmd not in _FIELDS:
        raise BadRequest(
            f"unknown cmd {cmd!r}{_did_you_mean(cmd, COMMANDS)} (valid: {', '.join(COMMANDS)})"
        )
    allowed = ("cmd", *_FIELDS[cmd])
    for key in req:
        if key not in allowed:
            raise BadRequest(
                f"{cmd} takes no field {key!r}{_did_you_mean(key, allowed)}"
                f" (fields: {', '.join(allowed)})"
            )
    return cmd, req


def subscribe_filters(req: dict[str, Any]) -> tuple[tuple[str, ...] | None, str | None]:
    """The event names (None: all) and the task (None: any) of a ``subscribe`` request."""
    task = _text(req, "task")
    events = req.get("events")
    if events is None:
        return None, task
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise BadRequest("subscribe: 'events' must be a non-empty array of event names")
    if CATCH_ALL in events:
        return None, task
    valid = (*ALL_EVENTS, CATCH_ALL)
    for name in events:
        if name not in ALL_EVENTS:
            raise BadRequest(
                f"subscribe: unknown event {name!r}{_did_you_mean(name, valid)}"
                f" (valid: {', '.join(valid)})"
            )
    return tuple(dict.fromkeys(events)), task


def _version() -> str:
    try:
        return version("flowtaskd")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _ended(run_id: str, task: Any, status: Any, error: Any, duration: Any, stats: Any) -> Payload:
    """The second reply of ``trigger`` with ``"wait": true``."""
    return {
        "ok": True,
        "run_id": run_id,
        "task": task,
        "status": status,
        "error": error,
        "duration": duration,
        "stats": stats,
    }


def _kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _text(req: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = req.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        got = "it is missing" if value is None else f"got {_kind(value)}"
        raise BadRequest(f"{req['cmd']}: {key!r} must be a non-empty string; {got}")
    return value


class _RunWatch:
    """A sync bus receiver noting skips (during ``submit``) and completions of one task."""

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake
        self.skip_reason: str | None = None
        self.completed: dict[str, Payload] = {}

    def __call__(self, payload: Payload) -> None:
        if payload.get("event") == "run_skipped":
            self.skip_reason = str(payload.get("reason") or "skipped")
        elif isinstance(run_id := payload.get("run_id"), str):
            self.completed[run_id] = payload
            self.wake.set()


class Requests:
    """Answers the one-reply requests of the control socket for ``daemon``."""

    def __init__(self, daemon: ControlHost, server: ControlView) -> None:
        self.d = daemon
        self.server = server
        self._handlers: dict[str, Callable[[Session, dict[str, Any]], Awaitable[Payload]]] = {
            "status": self._status,
            "tasks": self._tasks,
            "trigger": self._trigger,
            "cancel": self._cancel,
            "history": self._history,
            "runs": self._runs,
            "reload": self._reload,
            **oncall_handlers(self),
        }

    async def answer(self, session: Session, cmd: str, req: dict[str, Any]) -> Payload:
        """The (last) reply to a parsed request; BadRequest or FlowtaskError if refused."""
        handler = self._handlers.get(cmd)
        if handler is None:
            raise BadRequest(f"{cmd} is not a one-reply request")
        return await handler(session, req)

    async def _status(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        now = d.clock.time()
        return {
            "ok": True,
            "pid": os.getpid(),
            "version": _version(),
            "uptime": round(now - d.started_at, 3),
            "started_at": d.started_at,
            "state_dir": str(d.config.state_dir),
            "config": str(d.config_path) if d.config_path is not None else None,
            "tasks": len(d.library.tasks),
            "invalid": len(d.library.invalid),
            "runs": d.runs.snapshot(),
            "next_fire_times": d.scheduler.next_fire_times(),
            "paused": sorted(d.scheduler.paused),
            "control": self.server.summary(),
            "web": d.web.summary() if d.web is not None else {"enabled": False},
            "faults": d.faults.summary(),
        }

    async def _tasks(self, session: Session, req: dict[str, Any]) -> Payload:
        lib = self.d.library
        tasks = [
            {
                "name": name,
                "file": str(t.path),
                "steps": len(t.pile),
                "schedules": list(t.pile.definition.schedules),
                "description": t.pile.definition.header.description,
                "paused": f"task:{name}" in self.d.scheduler.paused,
            }
            for name, t in sorted(lib.tasks.items())
        ]
        invalid = [
            {"file": str(path), "problems": [p.to_dict() for p in problems]}
            for path, problems in sorted(lib.invalid.items())
        ]
        return {"ok": True, "tasks": tasks, "invalid": invalid}

    async def _trigger(self, session: Session, req: dict[str, Any]) -> Payload:
        name = _text(req, "task", required=True)
        assert name is not None
        params = req.get("params", {})
        if not isinstance(params, dict):
            raise BadRequest(f"trigger: 'params' must be an object; got {_kind(params)}")
        wait = req.get("wait", False)
        if not isinstance(wait, bool):
            raise BadRequest(f"trigger: 'wait' must be true or false; got {_kind(wait)}")
        return await self.submit_and_wait(session, name, lambda: self.d.trigger(name, params), wait)

    async def submit_and_wait(
        self,
        session: Session,
        task: str,
        submit: Callable[[], str | None],
        wait: bool,
        extra: Payload | None = None,
    ) -> Payload:
        """Queue a run with ``submit`` (its run id, None if skipped) and reply ``run_id``
        (and ``extra``); with ``wait``, reply again when the run ends."""
        watch = _RunWatch(session.wake)
        disconnect = self.d.bus.connect(("completed", "run_skipped"), watch, task=task)
        try:
            run_id = submit()
            if run_id is None:
                return error_reply(f"run of {task} not started: {watch.skip_reason or 'skipped'}")
            log_dir = str(self.d.runs.log_root / task / run_id)
            first = {"ok": True, "run_id": run_id, "log_dir": log_dir, **(extra or {})}
            if not wait:
                return first
            await session.send(first)
            session.state = "wait"
            return await self._run_end(run_id, watch)
        finally:
            disconnect()

    async def _run_end(self, run_id: str, watch: _RunWatch) -> Payload:
        while True:
            done = watch.completed.get(run_id)
            if done is not None:
                await self.d.runs.recorded(run_id)  # so that a next request reads it ended
                stats = done.get("stats") or {}
                return _ended(
                    run_id,
                    done.get("task"),
                    done.get("status"),
                    stats.get("error"),
                    stats.get("duration"),
                    done.get("stats"),
                )
            if self.server.stopping:
                return error_reply(f"the daemon is stopping; run {run_id} has not finished")
            runs = self.d.runs
            if run_id not in runs.active and all(r.run_id != run_id for r in runs.queue):
                return await self._ended_unseen(run_id)
            watch.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RECHECK):
                    await watch.wake.wait()

    async def _ended_unseen(self, run_id: str) -> Payload:
        """A run that left the manager without ``completed``: ask the history."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            found = await asyncio.to_thread(self.d.store.get_run, run_id)
            if found is None:  # never started: cancelled while queued
                return _ended(run_id, None, "cancelled", "cancelled before it started", None, None)
            run = found[0]
            if run.status not in ("pending", "running") or loop.time() > deadline:
                return _ended(run_id, run.task, run.status, run.error, run.duration, run.stats)
            await asyncio.sleep(0.05)  # the manager records the end right after the run

    async def _cancel(self, session: Session, req: dict[str, Any]) -> Payload:
        prefix = _text(req, "run_id", required=True)
        assert prefix is not None
        try:
            run_id, was = self.d.runs.cancel_one(prefix)
        except FlowtaskError as exc:
            return error_reply(str(exc))
        return {"ok": True, "run_id": run_id, "was": was}

    async def _runs(self, session: Session, req: dict[str, Any]) -> Payload:
        """The queue, one page at a time (``status`` shows only its head)."""
        numbers = {}
        for key, default, least, most in (("offset", 0, 0, 10**9), ("limit", 100, 1, 1000)):
            value = req.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
                raise BadRequest(
                    f"runs: {key!r} must be a whole number from {least} to {most}; got {value!r}"
                )
            numbers[key] = value
        runs = self.d.runs
        offset, limit = numbers["offset"], numbers["limit"]
        return {
            "ok": True,
            "queued": runs.queued_page(offset, limit),
            "queued_count": len(runs.queue),
            "offset": offset,
            "next_offset": offset + limit if offset + limit < len(runs.queue) else None,
        }

    async def _history(self, session: Session, req: dict[str, Any]) -> Payload:
        task = _text(req, "task")
        n = req.get("n", 20)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise BadRequest(f"history: 'n' must be a whole number from 1 to 1000; got {n!r}")
        runs = await asyncio.to_thread(self.d.store.list_runs, task, n)
        out = []
        for run in runs:
            row = dataclasses.asdict(run)
            del row["stats"]
            out.append(row)
        return {"ok": True, "runs": out}

    async def _reload(self, session: Session, req: dict[str, Any]) -> Payload:
        result = await self.d.reload()
        if not result.get("ok"):
            return error_reply(str(result.get("error") or "reload failed"))
        return {**result, "ok": True}
