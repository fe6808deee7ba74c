"""The task file's ``events:`` block: actions run when the task's own events fire.

Upstream format: ``events: {on_error: [{Log: {message: ...}}], completed: [...]}``.
Actions: ``Log``, ``Command`` (argv, no shell), ``RunTask`` / ``SubTask`` (a sub-run, by
path, name or ``program`` + ``task``), ``WebHook`` (a JSON POST, signed with ``secret`` or
carrying upstream's ``auth_type`` + ``auth_value``), and upstream's other actions
(:mod:`flowtaskd.engine.upstream_actions`). They run in tasks the Task owns and awaits
at ``close()``, so they never slow the run; a failing action is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from flowtaskd.core.schema import EventAction, TaskDefinition
from flowtaskd.core.values import resolve
from flowtaskd.engine.upstream_actions import UPSTREAM_ACTIONS, perform_upstream
from flowtaskd.errors import FlowtaskError
from flowtaskd.process.spawn import ProcessSpec, run_process

if TYPE_CHECKING:
    from flowtaskd.components.context import SubRun

__all__ = ["ActionRunner", "sign_body"]

_log = structlog.get_logger("flowtaskd.actions")


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-Flowtaskd-Signature`` header value: ``sha256=<hex HMAC of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _values(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in payload.items() if isinstance(v, str | int | float | bool) or v is None
    }


class ActionRunner:
    """Runs a definition's ``events:`` actions for one task's runs.

    Called synchronously with each event the run emits; every action runs in a task this
    runner owns, so the run never waits for it, and :meth:`aclose` awaits them all (for a
    grace period, then cancels the rest). A failing action is logged, never fatal.
    """

    def __init__(self, definition: TaskDefinition, subrun: SubRun) -> None:
        self.actions = definition.events
        self.subrun = subrun
        self._running: set[asyncio.Task[None]] = set()

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        for action in self.actions.get(event, ()):
            job = asyncio.get_running_loop().create_task(self._guarded(action, payload))
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    async def _guarded(self, action: EventAction, payload: dict[str, Any]) -> None:
        try:
            await _perform(action, payload, self.subrun)
        except Exception as exc:  # an action's failure is logged, never fatal to anything
            _log.warning(
                "action_failed",
                action=action.action,
                error=str(exc),
                task=payload.get("task"),
                run_id=payload.get("run_id"),
            )

    async def aclose(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - drain, then cancel
        jobs = list(self._running)
        if not jobs:
            return
        _done, pending = await asyncio.wait(jobs, timeout=timeout)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _perform(action: EventAction, payload: dict[str, Any], subrun: SubRun) -> None:
    p = action.params.model_dump()
    values = _values(payload)
    if action.action == "Log":
        text = str(p["message"])
        with contextlib.suppress(FlowtaskError):  # a message naming an absent field: verbatim
            text = resolve(text, values)
        getattr(_log, p["level"])(
            "task_event_log",
            message=text,
            task=payload.get("task"),
            run_id=payload.get("run_id"),
            on=payload.get("event"),
        )
    elif action.action == "Command":
        command = p["command"]
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        argv = [resolve(a, values) for a in argv]
        with tempfile.TemporaryDirectory(prefix="flowtaskd-action-") as tmp:
            out = Path(tmp) / "out"
            result = await run_process(ProcessSpec(argv, out, out, timeout=p["timeout"]))
        if result.exit_code != 0:
            _log.warning(
                "action_failed",
                action="Command",
                exit_code=result.exit_code,
                task=payload.get("task"),
                run_id=payload.get("run_id"),
            )
    elif action.action in ("RunTask", "SubTask"):
        params = dict(p.get("params") or {})
        outcome = await subrun(str(p["task"]), params, p.get("program"))
        if not outcome.ok:
            _log.warning("action_failed", action=action.action, error=outcome.error)
    elif action.action in UPSTREAM_ACTIONS:
        await perform_upstream(action.action, p, payload, values)
    elif action.action == "WebHook":
        import httpx  # noqa: PLC0415 - 3 MB the daemon only pays for when a task posts one

        body_data = dict(payload)
        if p.get("auth_type") or p.get("message"):  # upstream's fields too
            body_data.update(
                id=payload.get("run_id"), message=p.get("message") or "Task Completed."
            )
        body = json.dumps(body_data, default=str, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", **p.get("headers", {})}
        if p.get("secret"):
            headers["X-Flowtaskd-Signature"] = sign_body(p["secret"], body)
        if p.get("auth_type") and p.get("auth_value"):
            headers["Authorization"] = f"{p['auth_type'].capitalize()} {p['auth_value']}"
        async with httpx.AsyncClient(timeout=p["timeout"]) as client:
            response = await client.post(p["url"], content=body, headers=headers)
            response.raise_for_status()
