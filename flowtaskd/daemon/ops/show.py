"""``show``: one run, every step of it (those that never started too, with why).

The steps come from the run's stats (every step of the task, in file order, with its
status and reason) or, while the run goes or when it never got stats (interrupted), from
the definition kept for it. Each step lists its tries (a group member's as ``step[i]``)
with exit code, duration, error and log paths, and the head of its output. The run's
``retry_of`` and the runs that retry it link both ways.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowtaskd.daemon.ops.common import UNFINISHED, find_run
from flowtaskd.daemon.runs.records import AttemptRecord, RunStore
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER
from flowtaskd.tasks.pile import TaskPile

__all__ = ["HEAD_LINES", "describe_run"]

HEAD_LINES = 5
"""Lines of a step's output ``show`` includes."""
_HEAD_BYTES = 4096


def _head(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(_HEAD_BYTES)
    except OSError:
        return None
    lines = data.decode(errors="replace").splitlines()
    return GLOBAL_MASKER.mask("\n".join(lines[:HEAD_LINES]))


def _paths(log_dir: str | None, label: str, attempt: int) -> dict[str, str | None]:
    out: dict[str, str | None] = {"stdout": None, "stderr": None}
    if not log_dir:
        return out
    for key, ext in (("stdout", "out"), ("stderr", "err")):
        p = Path(log_dir) / f"{label}.{attempt}.{ext}"
        if p.is_file():
            out[key] = str(p)
    return out


def _try(a: AttemptRecord, log_dir: str | None) -> dict[str, Any]:
    return {
        "label": a.step_id,
        "attempt": a.attempt,
        "status": a.status,
        "exit_code": a.exit_code,
        "started_at": a.started_at,
        "duration": a.duration,
        "error": a.error,
        **_paths(log_dir, a.step_id, a.attempt),
    }


def _step_ids(store: RunStore, run_id: str, stats: Mapping[str, Any] | None) -> list[str]:
    if stats and isinstance(stats.get("steps"), Mapping):
        return list(stats["steps"])
    definition = store.get_definition(run_id)
    if definition is not None:
        with contextlib.suppress(FlowtaskError):
            return [s.id for s in TaskPile(definition)]
    return []


def describe_run(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run (``run``), its ``steps`` and its retry links (``retry_of``, ``retries``)."""
    run, attempts = find_run(store, run_id)
    row = dataclasses.asdict(run)
    stats = row.pop("stats")
    by_step: dict[str, list[AttemptRecord]] = {}
    for a in attempts:
        by_step.setdefault(a.step_id.split("[", 1)[0], []).append(a)
    step_stats: Mapping[str, Any] = (stats or {}).get("steps") or {}
    going = run.status in UNFINISHED
    steps = []
    for sid in _step_ids(store, run.run_id, stats) or list(by_step):
        s = step_stats.get(sid) or {}
        tries = [_try(a, run.log_dir) for a in by_step.get(sid, [])]
        if not tries and run.log_dir:  # running or interrupted: no attempts recorded
            tries = _live_tries(run.log_dir, sid, "running" if going else "unknown")
        last = tries[-1] if tries else None
        status = s.get("status") or ("running" if going and tries else None)
        steps.append(
            {
                "id": sid,
                "component": s.get("component"),
                "status": status or ("pending" if going else "unknown"),
                "reason": s.get("reason"),
                "error": s.get("error"),
                "attempts": s.get("attempts", len({t["attempt"] for t in tries})),
                "items": s.get("items"),
                "exit_code": s.get("exit_code"),
                "duration": s.get("duration"),
                "started": bool(tries),
                "output_head": _head(last["stdout"]) if last else None,
                "stderr_head": _head(last["stderr"]) if last else None,
                "tries": tries,
            }
        )
    return {
        "run": row,
        "steps": steps,
        "retry_of": run.retry_of,
        "retries": store.retries_of(run.run_id),
    }


def _live_tries(log_dir: str, sid: str, status: str) -> list[dict[str, Any]]:
    """Tries of a step whose attempts the history lacks, from its log files (those that
    printed)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        names = sorted(p.name for p in Path(log_dir).iterdir())
    except OSError:
        return []
    for name in names:
        stem, _, ext = name.rpartition(".")
        label, _, attempt = stem.rpartition(".")
        if ext not in ("out", "err") or not attempt.isdigit():
            continue
        if label != sid and not label.startswith(sid + "["):
            continue
        t = found.setdefault(
            (label, int(attempt)),
            {"label": label, "attempt": int(attempt), "status": status, "exit_code": None},
        )
        t.update(_paths(log_dir, label, int(attempt)))
    return list(found.values())
