"""``pause`` / ``unpause``: a task's (or one schedule's) fires are skipped while paused.

A pause is a row in the history database (``task:<name>`` or ``schedule:<id>``), so a
restart keeps it; :func:`set_pause` writes it and, when a daemon is running, tells its
scheduler (``on_change``). While paused, each fire is skipped (``run_skipped``, reason
``paused``) and the schedule's last fire time is not moved, so on unpause the fires missed
meanwhile follow the schedule's ``catchup`` policy as after downtime. Manual triggers,
retries and backfills still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from flowtaskd.daemon.ops.common import OpError, did_you_mean
from flowtaskd.daemon.runs.records import RunStore

__all__ = ["pause_target", "set_pause"]


def pause_target(task: str | None, schedule: str | None) -> str:
    """The target key of ``pause TASK`` or ``pause --schedule ID``."""
    if (task is None) == (schedule is None):
        raise OpError("pause: name a task, or a schedule with --schedule ID (not both)")
    return f"task:{task}" if task is not None else f"schedule:{schedule}"


def _what(target: str) -> str:
    kind, _, name = target.partition(":")
    return f"{kind} {name}"


async def set_pause(
    store: RunStore,
    target: str,
    paused: bool,
    now: float,
    *,
    known: Iterable[str] | None = None,
    on_change: Callable[[str, bool], None] | None = None,
) -> dict[str, Any]:
    """Pause or unpause ``target``; ``known``: the valid targets (a running daemon's loaded
    tasks and schedules), checked when given. Returns ``target``, ``paused``, ``since``."""
    if not target.startswith(("task:", "schedule:")) or not target.partition(":")[2]:
        raise OpError(f"pause: a target is task:<name> or schedule:<id>; got {target!r}")
    if known is not None:
        valid = set(known)
        if target not in valid:
            kind = target.partition(":")[0]
            same = sorted(t.partition(":")[2] for t in valid if t.startswith(kind + ":"))
            name = target.partition(":")[2]
            raise OpError(
                f"no {kind} {name!r} is loaded{did_you_mean(name, same)}"
                + (f" ({kind}s: {', '.join(same)})" if same and kind == "schedule" else "")
            )
    if paused:
        if not await store.add_pause(target, now):
            since = store.paused_targets().get(target)
            when = datetime.fromtimestamp(since, UTC).isoformat() if since else "before"
            raise OpError(f"{_what(target)} is already paused (since {when})")
    elif not await store.remove_pause(target):
        raise OpError(f"{_what(target)} is not paused")
    if on_change is not None:
        on_change(target, paused)
    return {"target": target, "paused": paused, "since": now if paused else None}
