"""Upstream flowtask's event actions, for the task file's ``events:`` block.

``Dummy``, ``LogEvent`` and ``LogError`` log (upstream's ``LogError`` publishes to a Redis
channel; here it is an error-level log line, which journald and the event stream carry);
``Notify`` / ``SendNotify`` / ``SendFile`` run the ``SendNotify`` component found in the
registry at that moment (upstream's ``type`` is its ``via``; ``SendFile``'s
``directory``/``filename`` become its ``attachments``), and say so clearly when it is not
installed; ``TeamsMessage`` posts a MessageCard to a Teams incoming webhook; ``FileCopy``
and ``FileDelete`` act on ``directory``/``filename`` (names, lists or globs; a missing file
is a warning, as upstream's). Each failure raises; the caller logs it, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from flowtaskd.components.context import StepContext
from flowtaskd.components.filesel import expand
from flowtaskd.components.registry import get_component
from flowtaskd.core.values import resolve
from flowtaskd.errors import FlowtaskError

__all__ = ["UPSTREAM_ACTIONS", "perform_upstream"]

_log = structlog.get_logger("flowtaskd.actions")

UPSTREAM_ACTIONS = frozenset(
    {"Dummy", "LogEvent", "LogError", "Notify", "SendNotify", "SendFile", "TeamsMessage"}
    | {"FileCopy", "FileDelete"}
)
_STATUS_ICON = {"done": "\u2705", "failed": "\U0001f6d1", "cancelled": "\u26a0\ufe0f"}


def _text(text: str | None, values: Mapping[str, Any], default: str) -> str:
    out = text if text is not None else default
    with contextlib.suppress(FlowtaskError):
        out = resolve(out, values, "message", lenient=True)
    return str(out)


async def perform_upstream(
    name: str, p: dict[str, Any], payload: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    task, run_id, event = payload.get("task"), payload.get("run_id"), payload.get("event")
    if name in ("Dummy", "LogEvent"):
        message = _text(p.pop("message", None), values, "task {task} {event}")
        extra = {k: v for k, v in p.items() if k != "use_notice"}
        fields = {"params": extra} if extra else {}
        _log.info("task_event_log", message=message, task=task, run_id=run_id, on=event, **fields)
    elif name == "LogError":
        message = _text(p.get("message"), values, "task {task} {event}: {status}")
        _log.error("task_event_error", message=message, task=task, run_id=run_id, on=event)
    elif name in ("Notify", "SendNotify", "SendFile"):
        await _notify(name, p, payload, values)
    elif name == "TeamsMessage":
        await _teams(p, payload, values)
    elif name == "FileCopy":
        await asyncio.to_thread(_copy, p)
    elif name == "FileDelete":
        await asyncio.to_thread(_delete, p)
    else:  # pragma: no cover - the schema allows no other name here
        raise FlowtaskError(f"unknown action {name}")


async def _notify(
    name: str, p: dict[str, Any], payload: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    comp = get_component("SendNotify")
    if comp is None:
        raise FlowtaskError(
            f"action {name} needs the SendNotify component, which is not installed "
            "(a plugin in the flowtaskd.components entry-point group can provide it)"
        )
    params = dict(p)
    if "type" in params and "via" not in params:
        params["via"] = params.pop("type")
    if name == "SendFile":
        folder, names = params.pop("directory", None), params.pop("filename", None)
        if folder and names:
            params.setdefault("attachments", [str(f) for f in expand(Path(folder), names)])
        if "credentials" in params and "account" not in params:
            params["account"] = params.pop("credentials")
    params = resolve(params, values, f"events.{name}", lenient=True)
    try:
        checked = comp.Params.model_validate(params).model_dump()
    except Exception as exc:  # pydantic's error: the parameters do not fit the component
        raise FlowtaskError(f"action {name}: parameters do not fit SendNotify: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="flowtaskd-action-") as tmp:
        ctx = StepContext(
            task=str(payload.get("task")),
            run_id=str(payload.get("run_id")),
            step_id=f"events.{payload.get('event')}.{name}",
            component="SendNotify",
            params=checked,
            log_dir=Path(tmp),
        )
        outcome = await comp(checked).run(ctx)
    if not outcome.ok:
        raise FlowtaskError(f"action {name}: {outcome.error}")


async def _teams(p: dict[str, Any], payload: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    import httpx  # noqa: PLC0415 - 3 MB the daemon only pays for when a task posts one

    status = str(payload.get("status") or payload.get("event") or "")
    icon = _STATUS_ICON.get(status, "\U0001f4c4")
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": f"Task Summary: {payload.get('task')}",
        "title": f"{icon} {_text(p.get('title'), values, 'Task Info:')}",
        "text": _text(p.get("text"), values, f"Task {payload.get('task')}: {status}"),
        "themeColor": "2EB886" if status == "done" else "D00000",
    }
    if p.get("with_stats") and isinstance(payload.get("stats"), dict):
        steps = payload["stats"].get("steps") or {}
        card["sections"] = [
            {"facts": [{"name": sid, "value": str(st.get("status"))} for sid, st in steps.items()]}
        ]
    async with httpx.AsyncClient(timeout=p.get("timeout", 10.0)) as client:
        response = await client.post(str(p["webhook"]), json=card)
        response.raise_for_status()


def _files(p: Mapping[str, Any]) -> list[Path]:
    found = expand(Path(str(p["directory"])), p["filename"])
    missing = [f for f in found if not f.exists()]
    for f in missing:
        _log.warning("action_file_missing", file=str(f))
    return [f for f in found if f.exists()]


def _copy(p: Mapping[str, Any]) -> None:
    dest = Path(str(p["destination"]))
    if p.get("create_destination", True):
        dest.mkdir(parents=True, exist_ok=True)
    for f in _files(p):
        if p.get("move"):
            shutil.move(f, dest / f.name)
        else:
            shutil.copy2(f, dest / f.name)


def _delete(p: Mapping[str, Any]) -> None:
    for f in _files(p):
        f.unlink(missing_ok=True)
