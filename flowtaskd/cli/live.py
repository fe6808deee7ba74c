"""The live terminal view of a run (``exec``, ``trigger --wait``, ``retry``, ``backfill``).

:class:`RunView` is fed the run's lifecycle events (from the in-process bus of ``exec`` or
the daemon's event stream) and drawn by ``rich`` (``Live``), which redraws it about five
times a second, so elapsed times and backoff countdowns tick between events. One line per
step that started or ended (state, elapsed, try ``2/4``, ``retrying in 3s``), a summary
line (done / running / waiting / failed, and not run: upstream failed or cancelled, of
total), and the last lines of a failing step's
stderr. Log lines and step output (``--show-output``) are printed above the view, never
through it. :func:`live_wanted` decides whether to draw it at all: only on a terminal,
without ``--json``, ``NO_COLOR`` or ``TERM=dumb``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

__all__ = ["RunView", "live_wanted"]

_STYLE = {
    "done": "green",
    "running": "cyan",
    "retrying": "yellow",
    "failed": "bold red",
    "timed_out": "bold red",
    "cancelled": "magenta",
    "upstream_failed": "red",
    "skipped": "dim",
    "kept": "dim green",
    "waiting": "dim",
}
_FAILED = {"failed", "timed_out"}
_FINAL = {"done", "failed", "timed_out", "cancelled", "upstream_failed", "skipped", "kept"}
_TAIL_LINES = 5
_MAX_LINES = 20  # step lines shown at once (the rest summarised)
_PUMP_EVERY = 0.2  # seconds between looks at the steps' log files (--show-output)


def live_wanted(stream: TextIO, json_output: bool = False) -> bool:
    """Whether to draw the live view on ``stream``."""
    if json_output or os.environ.get("NO_COLOR") or os.environ.get("TERM", "") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


@dataclass(slots=True)
class _Step:
    label: str
    status: str = "waiting"
    started: float | None = None
    ended: float | None = None
    attempt: int = 0
    retry_at: float | None = None
    error: str | None = None
    tail: list[str] = field(default_factory=list)


class RunView:
    """A run's steps as they go; see the module docstring."""

    def __init__(
        self,
        console: Console,
        steps: list[str],
        *,
        title: str = "",
        attempts: Mapping[str, int] | None = None,
        log_dir: Path | None = None,
        show_output: bool = False,
    ) -> None:
        self.console = console
        self.order = list(steps)
        self.title = title
        self.max_attempts = dict(attempts or {})
        self.log_dir = log_dir
        self.show_output = show_output
        self.steps: dict[str, _Step] = {}
        self.t0 = time.monotonic()
        self.ended: float | None = None
        self.status = "running"
        self._lock = threading.Lock()
        self._offsets: dict[Path, int] = {}
        self._live: Live | None = None
        self._stop = threading.Event()
        self._pumper: threading.Thread | None = None
        self._pump_lock = threading.Lock()

    # -- life -------------------------------------------------------------------------
    def __enter__(self) -> RunView:
        self._live = Live(
            self,
            console=self.console,
            refresh_per_second=5,
            redirect_stdout=True,
            redirect_stderr=True,
            transient=False,
        )
        self._live.start()
        if self.show_output:
            self._pumper = threading.Thread(target=self._pump_loop, daemon=True)
            self._pumper.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._pumper is not None:
            self._pumper.join(2)
            self._pumper = None
        if self._live is not None:
            self.pump_output()
            self._live.stop()
            self._live = None

    def _pump_loop(self) -> None:
        while not self._stop.wait(_PUMP_EVERY):
            self.pump_output()

    def print(self, text: str) -> None:
        """A line above the view."""
        self.console.print(Text(text), soft_wrap=True)

    # -- events -----------------------------------------------------------------------
    def __call__(self, p: Mapping[str, Any]) -> None:
        event, sid = p.get("event"), p.get("step")
        with self._lock:
            if sid:
                self._step_event(str(event), str(sid), p)
            elif event in ("done", "on_error", "cancelled"):
                self.status = str(p.get("status") or event)
                self.ended = time.monotonic()
                for st in self.steps.values():  # the run ended them without step events
                    if st.status in ("running", "retrying"):
                        st.status, st.ended = "cancelled", self.ended
            elif event == "start" and p.get("run_id"):
                self.title = self.title or f"run {p['run_id']}"
        if event in ("step_done", "step_error"):
            self.pump_output()

    def _step_event(self, event: str, sid: str, p: Mapping[str, Any]) -> None:
        label = sid if p.get("item") is None else f"{sid}[{p['item']}]"
        st = self.steps.get(label)
        if st is None:
            st = self.steps[label] = _Step(label)
        now = time.monotonic()
        if event == "step_start":
            st.status, st.attempt, st.retry_at = "running", int(p.get("attempt") or 1), None
            st.started = st.started or now
        elif event == "step_retry":
            st.status = "retrying"
            st.retry_at = now + float(p.get("delay") or 0.0)
            st.error = p.get("error")
        elif event == "step_done":
            st.status, st.ended = "done", now
        elif event == "step_error":
            st.status, st.ended = str(p.get("status") or "failed"), now
            st.error = p.get("error")
            if st.status in _FAILED:
                st.tail = self._stderr_tail(label, st.attempt)
        elif event == "step_skipped":
            st.status = "kept" if p.get("kept") else str(p.get("status") or "skipped")
            st.error = p.get("reason")
            st.ended = now

    def _stderr_tail(self, label: str, attempt: int) -> list[str]:
        if self.log_dir is None:
            return []
        path = self.log_dir / f"{label}.{max(attempt, 1)}.err"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        return lines[-_TAIL_LINES:]

    # -- step output ------------------------------------------------------------------
    def pump_output(self) -> None:
        """With ``show_output``: print what the steps printed since last time."""
        if not self.show_output or self.log_dir is None:
            return
        with self._pump_lock:
            self._pump()

    def _pump(self) -> None:
        assert self.log_dir is not None
        try:
            names = sorted(os.listdir(self.log_dir))
        except OSError:
            return
        for name in names:
            path = self.log_dir / name
            stem, _, ext = name.rpartition(".")
            label = stem.rpartition(".")[0]
            if ext not in ("out", "err") or not label:
                continue
            start = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1  # whole lines only; the rest next time
            if not cut:
                continue
            self._offsets[path] = start + cut
            for line in data[:cut].decode(errors="replace").splitlines():
                self.console.print(Text(f"{label} | ", style="dim") + Text(line), soft_wrap=True)

    # -- drawing ----------------------------------------------------------------------
    def _line(self, st: _Step, now: float) -> Text:
        end = st.ended if st.ended is not None else now
        took = f"{end - st.started:6.1f}s" if st.started is not None else "      -"
        text = Text(f"  {st.label:<28} ", no_wrap=True, overflow="ellipsis")
        text.append(f"{st.status:<15}", style=_STYLE.get(st.status, ""))
        text.append(f" {took}")
        most = self.max_attempts.get(st.label.split("[", 1)[0], 1)
        if st.attempt and (most > 1 or st.attempt > 1):
            text.append(f"  try {st.attempt}/{most}")
        if st.status == "retrying" and st.retry_at is not None:
            text.append(f"  retrying in {max(0.0, st.retry_at - now):.0f}s", style="yellow")
        if st.error and st.status not in ("running", "done"):
            text.append(f"  {st.error}"[:120], style="dim")
        return text

    def __rich__(self) -> RenderableType:
        with self._lock:
            now = time.monotonic()
            shown = [
                self.steps[label]
                for label in sorted(self.steps, key=self._rank)
                if self.steps[label].status != "waiting"
            ]
            lines: list[RenderableType] = []
            for st in shown[-_MAX_LINES:]:
                lines.append(self._line(st, now))
                for t in st.tail:
                    lines.append(Text(f"      {t}", style="red"))
            lines.append(self._summary(now))
        return Group(*lines)

    def _rank(self, label: str) -> tuple[int, str]:
        base = label.split("[", 1)[0]
        return (self.order.index(base) if base in self.order else len(self.order), label)

    def _summary(self, now: float) -> Text:
        counts = {"done": 0, "running": 0, "waiting": 0, "failed": 0, "not run": 0}
        for label in self.order:
            states = [s.status for k, s in self.steps.items() if k.split("[", 1)[0] == label]
            if not states:
                counts["waiting"] += 1
            elif any(s in _FAILED for s in states):
                counts["failed"] += 1
            elif any(s in ("upstream_failed", "cancelled") for s in states):
                counts["not run"] += 1
            elif any(s in ("running", "retrying") for s in states):
                counts["running"] += 1
            elif all(s in _FINAL for s in states):
                counts["done"] += 1
            else:
                counts["waiting"] += 1
        elapsed = (self.ended if self.ended is not None else now) - self.t0
        text = Text(f"{self.title}  " if self.title else "", style="bold", no_wrap=True)
        text.append(f"{counts['done']} done", style="green")
        text.append(f" · {counts['running']} running", style="cyan")
        text.append(f" · {counts['waiting']} waiting", style="dim")
        text.append(f" · {counts['failed']} failed", style="red" if counts["failed"] else "")
        if counts["not run"]:
            text.append(f" · {counts['not run']} not run", style="magenta")
        text.append(f"  of {len(self.order)}  {elapsed:.1f}s")
        if self.ended is not None:
            text.append(f"  {self.status}", style=_STYLE.get(self.status, "bold"))
        return text
