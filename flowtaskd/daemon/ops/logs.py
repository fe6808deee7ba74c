"""``logs``: what a run's steps printed, read from their log files.

A step's output is in ``<log_dir>/<step>.<attempt>.out`` and ``.err`` (``<step>`` is
``name[i]`` for the i-th item of a group member, ``name.precondition`` for a precondition),
created at the step's first byte. The files are found by listing the run's log folder, so
a running run's output can be read (and followed) before the history holds its attempts;
they are ordered by the attempt's start when the history has it, else by the file's
creation. Nothing here needs the daemon. Text is masked with the secrets this process
knows (in the daemon: those of every run since it started).

Follow a run by calling :func:`read_logs` again with the ``offsets`` of the last answer
(path -> bytes read): each call returns only what was written since, at most
:data:`MAX_CHUNK` bytes per file, until ``finished`` is true and nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowtaskd.daemon.ops.common import UNFINISHED, OpError, did_you_mean, find_run
from flowtaskd.daemon.runs.records import RunStore
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER
from flowtaskd.tasks.pile import TaskPile

__all__ = ["MAX_CHUNK", "STREAMS", "read_logs"]

MAX_CHUNK = 1 << 20
"""Most bytes of one file one call returns (a follower asks again for the rest)."""
STREAMS = ("out", "err", "all")
_FILE = re.compile(r"^(?P<label>.+)\.(?P<attempt>\d+)\.(?P<stream>out|err)$")
_ITEM = re.compile(r"^(?P<step>.+)\[(?P<item>\d+)\]$")


@dataclass(frozen=True, slots=True)
class _LogFile:
    label: str  # step id, step[i] or step.precondition
    step: str  # the step id the label belongs to
    attempt: int
    stream: str
    path: Path
    order: float


def _step_of(label: str) -> str:
    label = label.removesuffix(".precondition")
    m = _ITEM.match(label)
    return m.group("step") if m else label


def _files(log_dir: Path, starts: Mapping[tuple[str, int], float]) -> list[_LogFile]:
    try:
        entries = list(os.scandir(log_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise OpError(f"cannot read the log folder {log_dir}: {exc.strerror}") from None
    out = []
    for e in entries:
        m = _FILE.match(e.name)
        if m is None or not e.is_file():
            continue
        label, attempt = m.group("label"), int(m.group("attempt"))
        try:
            made = e.stat().st_ctime
        except OSError:
            continue
        order = starts.get((label, attempt), made)
        out.append(
            _LogFile(label, _step_of(label), attempt, m.group("stream"), Path(e.path), order)
        )
    stream_rank = {"out": 0, "err": 1}
    out.sort(key=lambda f: (f.order, f.label, f.attempt, stream_rank[f.stream]))
    return out


def _read(path: Path, offset: int, tail: int | None) -> tuple[str, int, int, bool]:
    """Text from ``offset`` (the last ``tail`` lines when given), new offset, size, more."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if tail is not None and offset == 0:
                start = max(0, size - MAX_CHUNK)
                f.seek(start)
                data = f.read(size - start)
                lines = data.splitlines(keepends=True)
                kept = lines[-tail:] if tail > 0 else []
                return b"".join(kept).decode(errors="replace"), size, size, False
            f.seek(offset)
            data = f.read(min(MAX_CHUNK, max(0, size - offset)))
    except FileNotFoundError:
        return "", offset, 0, False
    except OSError as exc:
        raise OpError(f"cannot read {path}: {exc.strerror}") from None
    end = offset + len(data)
    return data.decode(errors="replace"), end, size, end < size


def read_logs(
    store: RunStore,
    run_id: str,
    step: str | None = None,
    *,
    attempt: int | None = None,
    stream: str = "out",
    tail: int | None = None,
    offsets: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The output of a run's steps (see the module docstring).

    ``step``: one step (``name`` covers all its group items; ``name[i]`` one item); default
    every step. ``attempt``: that try; default every try, or the last when a step is named.
    ``stream``: ``out`` (stdout), ``err`` (stderr) or ``all``. ``tail``: the last N lines of
    each file. Returns ``run_id``, ``task``, ``status``, ``finished``, ``log_dir`` and
    ``sections``: ``[{step, attempt, stream, path, text, offset, size, more}]``.
    """
    if stream not in STREAMS:
        raise OpError(f"logs: stream must be one of {', '.join(STREAMS)}; got {stream!r}")
    if attempt is not None and attempt < 1:
        raise OpError(f"logs: attempt counts from 1; got {attempt}")
    if tail is not None and tail < 0:
        raise OpError(f"logs: tail must be zero or more lines; got {tail}")
    run, attempts = find_run(store, run_id)
    if step is not None:
        known = _known_steps(store, run.run_id, run.stats, [a.step_id for a in attempts])
        if _step_of(step) not in known and step not in known:
            raise OpError(
                f"run {run.run_id} has no step {step!r}{did_you_mean(step, sorted(known))}"
                f" (steps: {', '.join(sorted(known)) or 'none recorded'})"
            )
    starts = {(a.step_id, a.attempt): a.started_at for a in attempts if a.started_at is not None}
    files = _files(Path(run.log_dir), starts) if run.log_dir else []
    if step is not None:
        files = [f for f in files if step in (f.label, f.step)]
    if stream != "all":
        files = [f for f in files if f.stream == stream]
    if attempt is not None:
        files = [f for f in files if f.attempt == attempt]
    elif step is not None:  # a named step: its last try (per item)
        last: dict[str, int] = {}
        for f in files:
            last[f.label] = max(last.get(f.label, 0), f.attempt)
        files = [f for f in files if f.attempt == last[f.label]]
    offsets = offsets or {}
    for key, value in offsets.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise OpError(f"logs: offsets[{key!r}] must be a byte count; got {value!r}")
    sections = []
    for f in files:
        key = str(f.path)
        text, offset, size, more = _read(f.path, offsets.get(key, 0), tail)
        text = GLOBAL_MASKER.mask(text)  # the secrets of runs this process has seen
        sections.append(
            {
                "step": f.label,
                "attempt": f.attempt,
                "stream": f.stream,
                "path": key,
                "text": text,
                "offset": offset,
                "size": size,
                "more": more,
            }
        )
    return {
        "run_id": run.run_id,
        "task": run.task,
        "status": run.status,
        "finished": run.status not in UNFINISHED,
        "log_dir": run.log_dir,
        "sections": sections,
    }


def _known_steps(
    store: RunStore, run_id: str, stats: Mapping[str, Any] | None, labels: list[str]
) -> set[str]:
    """Every step id the run had: from its attempts, its stats and its kept definition."""
    known = set(labels) | {_step_of(x) for x in labels}
    if stats and isinstance(stats.get("steps"), Mapping):
        known |= set(stats["steps"])
    definition = store.get_definition(run_id)
    if definition is not None:
        with contextlib.suppress(FlowtaskError):
            known |= {s.id for s in TaskPile(definition)}
    return known
