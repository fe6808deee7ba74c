"""What the API returns and the pages show, built once for both (a page is its JSON, drawn).

Each builder starts from the control request of the same name where there is one (``tasks``
through :class:`~flowtaskd.daemon.web.ops.Ops`) and adds what a browser needs: next fire
times, the newest runs per task, a run's steps merged from the history and, for a run still
going, from its live monitor. History reads run in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowtaskd.daemon.web.ops import ApiError, Ops
from flowtaskd.logs import GLOBAL_MASKER

if TYPE_CHECKING:
    from flowtaskd.daemon.control.requests import ControlHost
    from flowtaskd.daemon.runs.records import RunRecord

__all__ = [
    "add_recent",
    "cron_words",
    "problem_text",
    "run_detail",
    "run_row",
    "task_detail",
    "task_list",
]

RECENT = 20
_GOING = ("pending", "running")
_NOT_STARTED: dict[str, Any] = {"status": "pending", "attempts": 0} | dict.fromkeys(
    ("exit_code", "started_at", "finished_at", "duration", "output", "error", "reason", "items",
     "cpu_user", "cpu_system", "max_rss_kb", "bytes_out")
)  # fmt: skip
_RUN_FIELDS = (
    "run_id",
    "task",
    "trigger",
    "status",
    "source",
    "params",
    "queued_at",
    "started_at",
    "finished_at",
    "duration",
    "error",
    "log_dir",
    "inbox_file",
    "schedule_id",
)
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MACROS = {
    "@hourly": "every hour",
    "@daily": "every day at 00:00",
    "@midnight": "every day at 00:00",
    "@weekly": "every Sunday at 00:00",
    "@monthly": "on the 1st of every month at 00:00",
    "@yearly": "every 1 January at 00:00",
    "@annually": "every 1 January at 00:00",
}


def cron_words(expr: str) -> str:
    """A cron expression in words for the common shapes; the expression itself otherwise."""
    if expr in _MACROS:
        return _MACROS[expr]
    parts = expr.split()
    if len(parts) != 5:
        return expr
    minute, hour, dom, month, dow = parts
    if (hour, dom, month, dow) == ("*", "*", "*", "*"):
        if minute == "*":
            return "every minute"
        if minute.startswith("*/") and minute[2:].isdigit():
            return f"every {minute[2:]} minutes"
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}"
    if minute.isdigit() and hour.isdigit() and (dom, month) == ("*", "*"):
        at = f"{int(hour):02d}:{int(minute):02d}"
        if dow == "*":
            return f"every day at {at}"
        if dow.isdigit() and int(dow) <= 7:
            return f"every {_DAYS[int(dow) % 7]} at {at}"
        if dow == "1-5":
            return f"every weekday at {at}"
    return expr


def problem_text(p: Mapping[str, Any]) -> str:
    where = str(p.get("file") or "<task>")
    if p.get("line") is not None:
        where += f":{p['line']}"
    text = f"{where}: {p['path']}: {p['message']}" if p.get("path") else f"{where}: {p['message']}"
    return f"{text} ({p['hint']})" if p.get("hint") else text


def run_row(run: RunRecord) -> dict[str, Any]:
    """A run's columns but its stats (shallow: ``asdict`` would deep-copy the stats too)."""
    return {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name != "stats"}


def _next_fires(d: ControlHost) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for job, when in d.scheduler.next_fire_times().items():
        if job.startswith("task:") and when:
            out.setdefault(job.split(":")[1], []).append(when)
    return out


async def add_recent(d: ControlHost, tasks: list[dict[str, Any]]) -> None:
    """Set each task's ``recent``: its newest runs, as (run_id, status)."""
    names = [t["name"] for t in tasks]
    recent = await asyncio.to_thread(d.store.recent_statuses, RECENT, names)
    for t in tasks:
        t["recent"] = [{"run_id": r, "status": s} for r, s in recent.get(t["name"], [])]


async def task_list(d: ControlHost, ops: Ops, *, recent: bool = True) -> dict[str, Any]:
    """``tasks``, with each task's next fire time and (with ``recent``) newest runs."""
    reply = await ops.call("tasks")
    fires = _next_fires(d)
    for t in reply["tasks"]:
        t["next_fire"] = min(fires.get(t["name"], []), default=None)
        t["schedule_words"] = [cron_words(s) for s in t["schedules"]]
        t.setdefault("paused", False)
    if recent:
        await add_recent(d, reply["tasks"])
    for f in reply["invalid"]:
        f["lines"] = [problem_text(p) for p in f["problems"]]
    return reply


def _steps_of(d: ControlHost, name: str) -> list[dict[str, Any]]:
    loaded = d.library.get(name)
    if loaded is None:
        return []
    pile = loaded.pile
    return [
        {"id": s.step_id, "component": s.step_name, "upstream": sorted(pile.upstream(s.step_id))}
        for s in pile.steps
    ]


async def task_detail(d: ControlHost, ops: Ops, name: str, *, grid: int = 25) -> dict[str, Any]:
    listing = await task_list(d, ops, recent=False)
    found = [t for t in listing["tasks"] if t["name"] == name]
    await add_recent(d, found)
    loaded = d.library.get(name)
    if not found or loaded is None:
        raise ApiError(404, f"no task named {name!r} is loaded", {"task": name})
    task: dict[str, Any] = found[0]
    header = loaded.pile.definition.header
    runs = await asyncio.to_thread(d.store.list_runs, name, grid)
    task.update(
        {
            "steps": _steps_of(d, name),
            "params": GLOBAL_MASKER.mask_obj(_masked_params(header.params, header.secrets)),
            "secrets": list(header.secrets),
            "next_fires": sorted(_next_fires(d).get(name, [])),
            "overlap": str(header.overlap),
            "max_active_runs": header.max_active_runs,
            "timezone": header.timezone or "UTC",
            "problems": [problem_text(p.to_dict()) for p in d.library.invalid.get(loaded.path, [])],
            "runs": [{**run_row(r), "steps": _step_states(r.stats)} for r in runs],
        }
    )
    return task


def _masked_params(params: Mapping[str, Any], secrets: list[str]) -> dict[str, Any]:
    return {k: ("***" if k in secrets else v) for k, v in params.items()}


def _step_states(stats: Mapping[str, Any] | None) -> dict[str, str]:
    steps = (stats or {}).get("steps") or {}
    return {sid: str(s.get("status")) for sid, s in steps.items()}


async def run_detail(d: ControlHost, run_id: str) -> dict[str, Any]:
    """A run from the history, its steps and attempts; live for a run still going."""
    found = await asyncio.to_thread(d.store.get_run, run_id)
    active = d.runs.active.get(found[0].run_id if found else run_id)
    if found is not None and active is None and found[0].status in _GOING:
        await d.runs.recorded(found[0].run_id)  # it has just ended: its end is being written
        found = await asyncio.to_thread(d.store.get_run, found[0].run_id)
    if found is None and active is None:
        queued = [r for r in d.runs.queue if r.run_id.startswith(run_id)]
        if not queued:
            raise ApiError(404, f"no run {run_id!r}", {"run_id": run_id})
        r = queued[0]
        run: dict[str, Any] = dict.fromkeys(_RUN_FIELDS)
        run.update({"run_id": r.run_id, "task": r.task, "status": "queued", "params": {}})
        run.update({"trigger": r.trigger, "queued_at": r.queued_at})
        return {"run": GLOBAL_MASKER.mask_obj(run), "steps": {}, "live": True}
    stats: dict[str, Any] | None = None
    if found is not None:
        record, _ = found
        run = run_row(record)
        stats = record.stats
    if active is not None:
        mon = active.task.stats.to_dict()
        mon.pop("params", None)
        stats = mon
        if found is None:  # started, its row not written yet
            run = dict.fromkeys(_RUN_FIELDS)
            run.update({"run_id": active.request.run_id, "task": active.request.task})
            run.update({"status": "running", "trigger": active.request.trigger, "params": {}})
    steps: dict[str, Any] = dict((stats or {}).get("steps") or {})
    for s in _steps_of(d, run["task"]):
        steps.setdefault(s["id"], {**_NOT_STARTED, "component": s["component"], "tries": []})
    detail = {"run": run, "steps": steps, "live": active is not None}
    masked: dict[str, Any] = GLOBAL_MASKER.mask_obj(detail)
    return masked
