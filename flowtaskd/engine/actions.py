"""The task file's ``events:`` block: actions run when the task's own events fire.

Upstream format: ``events: {on_error: [{Log: {message: ...}}], completed: [...]}``.
Actions: ``Log``, ``Command`` (argv, no shell), ``RunTask`` / ``SubTask`` (a sub-run, by
path, name or ``program`` + ``task``), ``WebHook`` (a signed JSON POST through the daemon's
webhook dispatcher: the same body, headers, signing and retries as a ``webhooks:`` entry,
:mod:`flowtaskd.engine.hookpost`; upstream's ``auth_type`` + ``auth_value`` become an
``Authorization`` header and its ``message`` a payload field; that form is posted
unwrapped, as with ``signing: github``), and upstream's other actions
(:mod:`flowtaskd.engine.upstream_actions`). They run in tasks the Task owns and awaits at
``close()``, so they never slow the run; a failing action is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from flowtaskd.core.schema import EventAction, TaskDefinition
from flowtaskd.core.values import resolve
from flowtaskd.engine.hookpost import (
    DEFAULT_SCHEDULE,
    Target,
    WebhookSink,
    deliver_inline,
    github_signature,
)
from flowtaskd.engine.upstream_actions import UPSTREAM_ACTIONS, perform_upstream
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER
from flowtaskd.process.spawn import ProcessSpec, run_process

if TYPE_CHECKING:
    from flowtaskd.clock import Clock
    from flowtaskd.components.context import SubRun

__all__ = ["ActionRunner", "sign_body"]

_log = structlog.get_logger("flowtaskd.actions")


sign_body = github_signature
"""The ``X-Flowtaskd-Signature`` header value: ``sha256=<hex HMAC of the body>``."""


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

    def __init__(
        self,
        definition: TaskDefinition,
        subrun: SubRun,
        *,
        clock: Clock,
        webhooks: WebhookSink | None = None,
    ) -> None:
        self.actions = definition.events
        self.subrun = subrun
        self.clock = clock
        self.webhooks = webhooks  # the daemon's dispatcher; None: WebHook posts in place
        self._running: set[asyncio.Task[None]] = set()

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        for action in self.actions.get(event, ()):
            job = asyncio.get_running_loop().create_task(self._guarded(action, event, payload))
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    async def _guarded(self, action: EventAction, event: str, payload: dict[str, Any]) -> None:
        try:
            await _perform(action, event, payload, self)
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


async def _perform(
    action: EventAction, event: str, payload: dict[str, Any], runner: ActionRunner
) -> None:
    p = action.params.model_dump()
    payload = {"event": event, **payload}  # `{event}` in a message, `on` in a log line
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
        outcome = await runner.subrun(str(p["task"]), params, p.get("program"))
        if not outcome.ok:
            _log.warning("action_failed", action=action.action, error=outcome.error)
    elif action.action in UPSTREAM_ACTIONS:
        await perform_upstream(action.action, p, payload, values)
    elif action.action == "WebHook":
        upstream_form = bool(p.get("auth_type") or p.get("message"))
        if upstream_form and "signing" not in action.params.model_fields_set:
            p["signing"] = "github"  # upstream's receivers read the payload itself, unwrapped
        await _webhook(p, payload, runner)


async def _webhook(p: dict[str, Any], payload: dict[str, Any], runner: ActionRunner) -> None:
    """Through the daemon's dispatcher when there is one; else sent here, retried inline."""
    secret = p.get("secret")
    secrets = tuple(secret if isinstance(secret, list) else [secret] if secret else [])
    GLOBAL_MASKER.update(secrets)
    schedule = p.get("retry_schedule")
    headers = dict(p.get("headers") or {})
    if p.get("auth_type") and p.get("auth_value"):  # upstream's: Basic or Bearer <value>
        GLOBAL_MASKER.update([str(p["auth_value"])])
        headers["Authorization"] = f"{p['auth_type'].capitalize()} {p['auth_value']}"
    if p.get("auth_type") or p.get("message"):  # upstream's fields too
        payload = {
            **payload,
            "id": payload.get("run_id"),
            "message": p.get("message") or "Task Completed.",
        }
    target = Target(
        url=p["url"],
        secrets=secrets,
        signing=p.get("signing", "standard"),
        timeout=p["timeout"],
        schedule=tuple(schedule) if schedule is not None else DEFAULT_SCHEDULE,
        headers=headers,
    )
    if runner.webhooks is not None:
        if not runner.webhooks.submit(target, payload):
            raise FlowtaskError("the webhook queue is full")
        return
    await deliver_inline(target, payload, runner.clock)
