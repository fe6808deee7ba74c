"""Follow a daemon run (``trigger --wait``, ``retry``) or a backfill to its end.

On a terminal (see :func:`~flowtaskd.cli.live.live_wanted`) a second connection subscribes
to the daemon's events before the request is sent, and a reader thread feeds the run's
events to the live view while the main thread waits for the request's last reply. Without
a terminal, plain lines. Ctrl-C cancels what was started (the run, or the whole backfill)
and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from flowtaskd.cli.control import Client, CliError, checked, socket_path, span
from flowtaskd.cli.live import RunView, live_wanted

__all__ = ["follow_backfill", "follow_run"]

_LAST_EVENTS = 2.0  # seconds the view waits, after the run's end, for its last events
_STATUS_STYLE = {"done": "green", "failed": "bold red", "cancelled": "magenta", "running": "cyan"}


class _Events(threading.Thread):
    """Reads a subscribed connection, handing each event to ``sink``."""

    def __init__(self, client: Client, sink: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(daemon=True)
        self.client, self.sink = client, sink

    def run(self) -> None:
        with contextlib.suppress(CliError, OSError, ValueError):
            while (event := self.client.receive(follow=True)) is not None:
                self.sink(event)


def _subscribe(path: Path) -> Client:
    client = Client(path)
    client.request({"cmd": "subscribe"})
    return client


def _cancel(path: Path, request: dict[str, Any]) -> None:
    with contextlib.suppress(CliError), Client(path) as client:
        client.request(request)


def _steps_of(path: Path, task: str | None) -> tuple[list[str], dict[str, int]]:
    """Step ids and most tries of a loaded task (``render``), for the view's order."""
    if not task:
        return [], {}
    try:
        with Client(path) as client:
            plan = client.request({"cmd": "render", "task": task})
    except CliError:
        return [], {}
    ids = [s["id"] for s in plan["steps"]]
    tries = {s["id"]: (s.get("retry") or {}).get("attempts", 1) for s in plan["steps"]}
    return ids, tries


class _RunSink:
    """Events of the subscribed connection: held until the view exists, then the run's."""

    def __init__(self) -> None:
        self.run_id = ""
        self.view: RunView | None = None
        self.pending: list[dict[str, Any]] = []
        self.completed = threading.Event()
        self.lock = threading.Lock()

    def attach(self, view: RunView) -> None:
        with self.lock:
            self.view, early, self.pending = view, self.pending, []
        for event in early:
            self._feed(view, event)

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            view = self.view
            if view is None:
                self.pending.append(event)
                return
        self._feed(view, event)

    def _feed(self, view: RunView, event: dict[str, Any]) -> None:
        if event.get("run_id") == self.run_id:
            view(event)
            if event.get("event") == "completed":
                self.completed.set()


def _run_view(
    args: argparse.Namespace, path: Path, first: dict[str, Any], request: dict[str, Any]
) -> RunView:
    task = first.get("task") or request.get("task")
    ids, tries = _steps_of(path, task)
    return RunView(
        Console(stderr=True),
        ids,
        title=f"{task or ''} {first['run_id']}",
        attempts=tries,
        log_dir=Path(first["log_dir"]) if first.get("log_dir") else None,
        show_output=getattr(args, "show_output", False),
    )


def follow_run(
    args: argparse.Namespace,
    request: dict[str, Any],
    *,
    wait: bool,
    describe: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Send ``request`` (``trigger`` or ``retry``); with ``wait`` follow the run to its end.
    Exit 0 done, 1 failed or cancelled, 130 Ctrl-C."""
    path = socket_path(args)
    live = wait and live_wanted(sys.stderr, args.json)
    if wait:
        request = {**request, "wait": True}
    sink = _RunSink()
    events = _subscribe(path) if live else None
    if events is not None:
        _Events(events, sink).start()
    with Client(path) as client:
        first = client.request(request)
        run_id = sink.run_id = first["run_id"]
        if args.json:
            sys.stdout.write(json.dumps(first) + "\n")
        else:
            print(run_id, flush=True)
        if describe is not None and not args.json:
            describe(first)
        if not wait:
            return 0
        try:
            if live:
                view = _run_view(args, path, first, request)
                with view:
                    sink.attach(view)
                    end = client.receive(follow=True)
                    sink.completed.wait(_LAST_EVENTS)  # the stream may trail the reply
            else:
                end = client.receive(follow=True)
        except KeyboardInterrupt:
            _cancel(path, {"cmd": "cancel", "run_id": run_id})
            print(f"flowtaskd: cancelled run {run_id}", file=sys.stderr)
            return 130
        finally:
            if events is not None:
                with contextlib.suppress(OSError):
                    events.sock.close()
    return _run_ended(args, end, run_id)


def _run_ended(args: argparse.Namespace, end: dict[str, Any] | None, run_id: str) -> int:
    if end is None:
        raise CliError(f"the daemon closed the connection before run {run_id} ended")
    end = checked(end)
    status = end.get("status")
    if args.json:
        sys.stdout.write(json.dumps(end) + "\n")
    else:
        error = f": {end['error']}" if end.get("error") else ""
        print(f"run {end['run_id']} {status} in {span(end.get('duration'))}{error}")
    return 0 if status == "done" else 1


class _BackfillView:
    """One line per run of a backfill (logical time, state, elapsed) and a summary."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.id, self.task = reply["backfill_id"], reply["task"]
        self.runs: dict[str, dict[str, Any]] = {
            r["run_id"]: {"at": r["logical_time"], "status": "queued", "t0": None, "t1": None}
            for r in reply["runs"]
        }
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.all_ended = threading.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        run = self.runs.get(str(event.get("run_id")))
        if run is None:
            return
        with self.lock:
            if event.get("event") == "start":
                run["status"], run["t0"] = "running", time.monotonic()
            elif event.get("event") == "completed":
                run["status"], run["t1"] = str(event.get("status")), time.monotonic()
            elif event.get("event") == "run_skipped" and run["status"] == "queued":
                run["status"] = "cancelled"
            if all(r["status"] not in ("queued", "running") for r in self.runs.values()):
                self.all_ended.set()

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        lines: list[RenderableType] = []
        counts: dict[str, int] = {}
        with self.lock:
            for rid, r in self.runs.items():
                counts[r["status"]] = counts.get(r["status"], 0) + 1
                if r["status"] == "queued":
                    continue
                took = f"{(r['t1'] or now) - r['t0']:6.1f}s" if r["t0"] else "      -"
                line = Text(f"  {r['at']:<27} {rid}  ")
                line.append(f"{r['status']:<10}", style=_STATUS_STYLE.get(r["status"], ""))
                lines.append(line + Text(f" {took}"))
        summary = Text(f"backfill {self.id} {self.task}  ", style="bold")
        summary.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        summary.append(f"  of {len(self.runs)}  {now - self.t0:.1f}s")
        return Group(*lines[-20:], summary)


def follow_backfill(args: argparse.Namespace, request: dict[str, Any], *, wait: bool) -> int:
    """Start a backfill; with ``wait`` show its progress until every run ended.
    Exit 0 all done, 1 some failed or were cancelled, 130 Ctrl-C (the backfill is cancelled)."""
    path = socket_path(args)
    live = wait and live_wanted(sys.stderr, args.json)
    view: _BackfillView | None = None
    early: list[dict[str, Any]] = []

    def sink(event: dict[str, Any]) -> None:
        if view is None:
            early.append(event)
        else:
            view(event)

    events = _subscribe(path) if live else None
    if events is not None:
        _Events(events, sink).start()
    with Client(path) as client:
        first = client.request({**request, "wait": True} if wait else request)
        if args.json:
            sys.stdout.write(json.dumps(first) + "\n")
        else:
            print(first["backfill_id"], flush=True)
            print(f"{first['total']} runs of {first['task']} planned", file=sys.stderr)
        if not wait:
            return 0
        try:
            if live:
                view = _BackfillView(first)
                for event in list(early):
                    view(event)
                with Live(view, console=Console(stderr=True), refresh_per_second=5):
                    end = client.receive(follow=True)
                    if end is not None and end.get("state") == "done":
                        view.all_ended.wait(_LAST_EVENTS)  # the stream may trail the reply
            else:
                end = client.receive(follow=True)
        except KeyboardInterrupt:
            _cancel(path, {"cmd": "backfill_cancel", "backfill_id": first["backfill_id"]})
            print(f"flowtaskd: cancelled backfill {first['backfill_id']}", file=sys.stderr)
            return 130
        finally:
            if events is not None:
                with contextlib.suppress(OSError):
                    events.sock.close()
    if end is None:
        raise CliError(
            f"the daemon closed the connection before backfill {first['backfill_id']} ended"
        )
    end = checked(end)
    if args.json:
        sys.stdout.write(json.dumps(end) + "\n")
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(end["finished"].items()))
        print(f"backfill {end['backfill_id']} {end['state']}: {counts}")
    bad = {s: n for s, n in end["finished"].items() if s != "done"}
    return 0 if end["state"] == "done" and not bad else 1
