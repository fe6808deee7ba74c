"""``flowtaskd.cli.live``: ``live_wanted`` (only on a terminal, not with --json, NO_COLOR or
TERM=dumb) and ``RunView`` fed lifecycle events and drawn by rich into a recording console:
step lines, tries, retry countdowns, stderr tails, the summary, step output above the view.
(The view on a real terminal, through tmux, is test_live_view.py's.)"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from flowtaskd.cli.live import RunView, live_wanted
from tests.conftest import wait_for_sync


def _console() -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False)


def _screen(view: RunView) -> list[str]:
    console = _console()
    console.print(view)
    out = console.file
    assert isinstance(out, io.StringIO)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def _printed(view: RunView) -> str:
    out = view.console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def _view(steps: list[str], **kw: Any) -> RunView:
    return RunView(_console(), steps, **kw)


def _line(screen: list[str], label: str) -> str:
    (line,) = [s.strip() for s in screen if s.split()[:1] == [label]]
    return line


# -- live_wanted --------------------------------------------------------------------------
@pytest.fixture
def tty() -> Iterator[io.TextIOWrapper]:
    parent, child = os.openpty()
    stream = open(child, "w")  # noqa: SIM115 - closed below
    try:
        yield stream
    finally:
        stream.close()
        os.close(parent)


def test_live_is_wanted_only_on_a_terminal(
    tty: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert live_wanted(tty) is True
    assert live_wanted(tty, json_output=True) is False
    assert live_wanted(io.StringIO()) is False
    assert live_wanted(object()) is False  # type: ignore[arg-type]  # no isatty at all
    monkeypatch.setenv("TERM", "dumb")
    assert live_wanted(tty) is False
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    assert live_wanted(tty) is False


# -- the view -----------------------------------------------------------------------------
def test_steps_show_once_they_started_in_the_tasks_order_with_a_summary() -> None:
    view = _view(["a", "b", "c"], title="nightly r1")
    view({"event": "step_start", "step": "b", "attempt": 1})
    view({"event": "step_start", "step": "a", "attempt": 1})
    view({"event": "step_done", "step": "a"})
    screen = _screen(view)
    assert [s.split()[0] for s in screen[:-1]] == ["a", "b"]  # c still waits: not shown
    assert re.fullmatch(r"a\s+done\s+\d+\.\ds", _line(screen, "a"))
    assert re.fullmatch(r"b\s+running\s+\d+\.\ds", _line(screen, "b"))
    assert re.fullmatch(
        r"nightly r1  1 done · 1 running · 1 waiting · 0 failed  of 3  \d+\.\ds", screen[-1]
    )


def test_a_retry_shows_the_try_the_countdown_and_the_error() -> None:
    view = _view(["load"], attempts={"load": 3})
    view({"event": "step_start", "step": "load", "attempt": 1})
    view({"event": "step_retry", "step": "load", "delay": 30, "error": "exit 1"})
    line = _line(_screen(view), "load")
    m = re.fullmatch(r"load\s+retrying\s+\d+\.\ds  try 1/3  retrying in (\d+)s  exit 1", line)
    assert m is not None, line
    assert 28 <= int(m.group(1)) <= 30
    view({"event": "step_start", "step": "load", "attempt": 2})
    line = _line(_screen(view), "load")
    assert "try 2/3" in line and "retrying in" not in line and "exit 1" not in line


def test_a_single_try_step_shows_no_try_count_unless_it_retried() -> None:
    view = _view(["a"])
    view({"event": "step_start", "step": "a", "attempt": 1})
    assert "try" not in _line(_screen(view), "a")
    view({"event": "step_start", "step": "a", "attempt": 2})  # more tries than planned
    assert "try 2/1" in _line(_screen(view), "a")


def test_a_failed_step_shows_the_tail_of_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "load.2.err").write_text("".join(f"err {i}\n" for i in range(1, 9)))
    view = _view(["load", "after"], log_dir=tmp_path)
    view({"event": "step_start", "step": "load", "attempt": 2})
    view({"event": "step_error", "step": "load", "status": "failed", "error": "exit 3"})
    view({"event": "step_skipped", "step": "after", "status": "upstream_failed"})
    screen = _screen(view)
    (at,) = [i for i, s in enumerate(screen) if s.split()[:1] == ["load"]]
    assert "failed" in screen[at] and screen[at].endswith("exit 3")
    assert screen[at + 1 : at + 6] == [f"      err {i}" for i in range(4, 9)]
    assert re.search(r"0 done · 0 running · 0 waiting · 1 failed · 1 not run  of 2", screen[-1])


def test_a_missing_log_gives_no_tail_and_a_timeout_counts_as_failed(tmp_path: Path) -> None:
    view = _view(["a"], log_dir=tmp_path)
    view({"event": "step_start", "step": "a", "attempt": 1})
    view({"event": "step_error", "step": "a", "status": "timed_out", "error": "after 5s"})
    screen = _screen(view)
    assert len(screen) == 2 and "timed_out" in screen[0] and "1 failed" in screen[-1]


def test_items_are_lines_of_their_own_counted_under_their_step() -> None:
    view = _view(["each", "end"])
    for i in range(3):
        view({"event": "step_start", "step": "each", "item": i, "attempt": 1})
    view({"event": "step_done", "step": "each", "item": 0})
    screen = _screen(view)
    assert [s.split()[0] for s in screen[:-1]] == ["each[0]", "each[1]", "each[2]"]
    assert "0 done · 1 running · 1 waiting" in screen[-1]
    for i in (1, 2):
        view({"event": "step_done", "step": "each", "item": i})
    assert "1 done · 0 running · 1 waiting" in _screen(view)[-1]


def test_skipped_and_kept_steps_count_as_done_with_their_reason() -> None:
    view = _view(["a", "b"])
    view({"event": "step_skipped", "step": "a", "kept": True, "reason": "kept from run r0"})
    view({"event": "step_skipped", "step": "b", "reason": "precondition false"})
    screen = _screen(view)
    assert re.fullmatch(r"a\s+kept\s+-  kept from run r0", _line(screen, "a"))
    assert re.fullmatch(r"b\s+skipped\s+-  precondition false", _line(screen, "b"))
    assert "2 done" in screen[-1]


def test_the_runs_end_cancels_steps_left_running_and_shows_its_status() -> None:
    view = _view(["a", "b"], title="t r1")
    view({"event": "step_start", "step": "a", "attempt": 1})
    view({"event": "cancelled", "status": "cancelled"})
    screen = _screen(view)
    assert "cancelled" in _line(screen, "a")
    assert screen[-1].endswith("cancelled") and "1 not run" in screen[-1]
    first = re.search(r"(\d+\.\d)s  cancelled$", screen[-1])
    assert first is not None and _screen(view)[-1] == screen[-1]  # the clock stopped


def test_start_gives_an_untitled_view_the_runs_id() -> None:
    view = _view(["a"])
    view({"event": "start", "run_id": "019b"})
    assert _screen(view)[-1].startswith("run 019b  0 done")


def test_only_the_last_twenty_step_lines_are_drawn() -> None:
    steps = [f"s{i:02d}" for i in range(25)]
    view = _view(steps)
    for sid in steps:
        view({"event": "step_done", "step": sid})
    screen = _screen(view)
    assert [s.split()[0] for s in screen[:-1]] == steps[5:]
    assert "25 done" in screen[-1] and "of 25" in screen[-1]


def test_show_output_prints_whole_lines_above_the_view(tmp_path: Path) -> None:
    (tmp_path / "a.1.out").write_text("one\ntwo\npart")
    (tmp_path / "a.1.err").write_text("oops\n")
    (tmp_path / "notes.txt").write_text("not a step log\n")
    view = _view(["a"], log_dir=tmp_path, show_output=True)
    view.pump_output()
    assert _printed(view).splitlines() == ["a | oops", "a | one", "a | two"]
    with open(tmp_path / "a.1.out", "a") as f:
        f.write("ial\n")
    view({"event": "step_done", "step": "a"})  # a step's end pumps too
    assert _printed(view).splitlines()[3:] == ["a | partial"]
    view.pump_output()
    assert len(_printed(view).splitlines()) == 4  # nothing printed twice


def test_without_show_output_nothing_is_pumped(tmp_path: Path) -> None:
    (tmp_path / "a.1.out").write_text("one\n")
    view = _view(["a"], log_dir=tmp_path)
    view.pump_output()
    assert _printed(view) == ""


def test_the_live_view_pumps_while_open_and_draws_its_last_state(tmp_path: Path) -> None:
    out = tmp_path / "a.1.out"
    out.write_text("")
    view = _view(["a"], title="t", log_dir=tmp_path, show_output=True)
    with view:
        view({"event": "step_start", "step": "a", "attempt": 1})
        with open(out, "a") as f:
            f.write("tick\n")
        wait_for_sync(lambda: "a | tick" in _printed(view), what="the pump thread")
        view({"event": "step_done", "step": "a"})
        view({"event": "done", "status": "done"})
        view.print("a log line")
    printed = _printed(view)
    assert printed.count("a | tick") == 1
    assert "a log line" in printed
    assert re.search(r"t  1 done · 0 running · 0 waiting · 0 failed  of 1  \d+\.\ds  done", printed)
