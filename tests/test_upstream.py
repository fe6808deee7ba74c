"""Upstream flowtask's task files run on flowtaskd as written (tests/upstream/).

Each file is validated, then run with ``flowtaskd exec --json`` in a scratch folder (a
real process, real files), and the test asserts what upstream would do: the files it
copies, the masks it resolves, the events it fires, the order it runs steps in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

UPSTREAM = Path(__file__).parent / "upstream"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run(
        [sys.executable, "-m", "flowtaskd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _run(name: str, cwd: Path) -> dict[str, Any]:
    """Validate, then exec: the run's stats."""
    file = UPSTREAM / name
    checked = _cli("validate", str(file), cwd=cwd)
    assert checked.returncode == 0, checked.stderr
    done = _cli("exec", "--json", "--log-dir", str(cwd / ".logs"), str(file), cwd=cwd)
    assert done.stdout, done.stderr
    stats: dict[str, Any] = json.loads(done.stdout)
    return stats


def _statuses(stats: dict[str, Any]) -> dict[str, str]:
    return {sid: step["status"] for sid, step in stats["steps"].items()}


def test_every_upstream_file_names_what_it_pins() -> None:
    files = sorted(UPSTREAM.rglob("*.yaml"))
    assert len(files) >= 10
    for file in files:
        assert file.read_text().startswith("# Pins: "), file


def test_filelist_and_filecopy_take_upstreams_parameters(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("b.csv", "a.csv", "r.pdf"):
        (inbox / name).write_text(name)
    stats = _run("filelist_copy.yaml", tmp_path)
    assert stats["status"] == "done"
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["a.csv", "b.csv"]
    assert (tmp_path / "reports" / "r.pdf").read_text() == "r.pdf"  # moved
    assert sorted(p.name for p in inbox.iterdir()) == ["a.csv", "b.csv"]
    listed = stats["steps"]["FileList_1"]["output"].splitlines()
    assert [Path(p).name for p in listed] == ["b.csv", "a.csv"]  # oldest first, as upstream


def test_masks_use_upstreams_date_functions_in_the_tasks_zone(tmp_path: Path) -> None:
    stats = _run("masks_dates.yaml", tmp_path)
    assert stats["status"] == "done"
    got = (tmp_path / "dates.txt").read_text().split()
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    monday = today - timedelta(days=today.weekday())
    month_end = (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    assert got == [
        today.isoformat(),
        (today - timedelta(days=1)).isoformat(),
        (today - timedelta(days=2)).isoformat(),
        (monday - timedelta(days=7)).isoformat(),
        monday.isoformat(),
        today.replace(day=1).isoformat(),
        month_end.isoformat(),
    ]
    assert (tmp_path / "label.txt").read_text().strip() == f"report-{today.isoformat()}"


def test_render_resolves_upstreams_masks_and_variables_as_a_run_would(tmp_path: Path) -> None:
    at = "2026-12-07T10:00:00Z"  # already the 8th in Kiritimati (UTC+14)
    plan = _cli("render", "--json", "--at", at, str(UPSTREAM / "masks_dates.yaml"), cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    (step,) = json.loads(plan.stdout)["steps"]
    assert step["error"] is None
    assert step["params"]["commands"] == [
        'echo "2026-12-08 2026-12-07 2026-12-06 2026-11-30 2026-12-07 2026-12-01 2026-12-31"'
        " > dates.txt",
        'echo "report-2026-12-08" > label.txt',
    ]
    lenient = _cli("render", "--json", str(UPSTREAM / "variables_lenient.yaml"), cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stderr
    later = json.loads(lenient.stdout)["steps"][1]
    assert later["params"]["commands"][1] == 'echo "out {not_a_variable}" > out/v.txt'


def test_step_ids_are_upstreams_around_a_group(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.txt").write_text("x")
    os.utime(inbox / "x.txt", (1_000_000, 1_000_000))
    (inbox / "y.txt").write_text("y")
    stats = _run("group_numbering.yaml", tmp_path)
    assert stats["status"] == "done"
    assert list(stats["steps"]) == [
        "FileList_1",
        "RunShell_2_1",
        "PrintMessage_2_2",
        "RunShell_3",
        "Dummy_4",
    ]
    seen = (tmp_path / "seen.txt").read_text().split()
    # a group's items run concurrently here (upstream: one after the other), so only the
    # set of items is pinned; the step after the group runs once every item is done
    assert sorted(seen[:2]) == ["x.txt", "y.txt"] and seen[2:] == ["end"]


def test_goto_and_onerror_jump_forward(tmp_path: Path) -> None:
    stats = _run("goto_onerror.yaml", tmp_path)
    assert stats["status"] == "done"  # the failure was handled by OnError
    assert _statuses(stats) == {
        "RunShell_1": "failed",
        "RunShell_2": "skipped",
        "RunShell_3": "done",
        "RunShell_4": "skipped",
        "Dummy_5": "done",
    }
    assert (tmp_path / "recovered").exists()
    assert not (tmp_path / "skipped_by_onerror").exists()
    assert not (tmp_path / "skipped_by_goto").exists()


def test_a_filelist_that_finds_nothing_fires_file_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "marker.txt").write_text("m")
    stats = _run("events_not_found.yaml", tmp_path)
    assert stats["status"] == "failed"
    assert _statuses(stats) == {"FileList_1": "failed", "RunShell_2": "upstream_failed"}
    assert (tmp_path / "fired" / "marker.txt").read_text() == "m"  # the event's action ran
    assert not (tmp_path / "not_reached").exists()


def test_order_file_runs_in_file_order(tmp_path: Path) -> None:
    stats = _run("order_file.yaml", tmp_path)
    assert stats["status"] == "done"
    assert (tmp_path / "order.txt").read_text().split() == ["first", "second"]


def test_variables_pass_on_and_lenient_placeholders_stay(tmp_path: Path) -> None:
    stats = _run("variables_lenient.yaml", tmp_path)
    assert stats["status"] == "done"
    assert (tmp_path / "out" / "v.txt").read_text().strip() == "out {not_a_variable}"


def test_subtask_and_nexttask_find_programs_in_upstreams_tree(tmp_path: Path) -> None:
    shutil.copytree(UPSTREAM / "programs", tmp_path / "programs")
    main = tmp_path / "programs" / "etl" / "tasks" / "main.yaml"
    checked = _cli("validate", str(main), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    done = _cli("exec", "--json", "--log-dir", str(tmp_path / ".logs"), str(main), cwd=tmp_path)
    stats = json.loads(done.stdout)
    assert stats["status"] == "done", done.stderr
    assert list(stats["steps"]) == ["SubTask_1", "PrintMessage_3"]  # NextTask_2 is not a step
    assert (tmp_path / "cleaned").exists()  # programs/ops/tasks/cleanup.yaml ran
    assert (tmp_path / "continued").exists()  # programs/etl/tasks/after.yaml ran after


@pytest.mark.parametrize("name", ["goto_onerror.yaml", "filelist_copy.yaml"])
def test_upstream_files_validate_with_no_notes(name: str, tmp_path: Path) -> None:
    got = _cli("validate", str(UPSTREAM / name), cwd=tmp_path)
    assert got.returncode == 0 and "note:" not in got.stdout + got.stderr


def test_an_iterating_filelist_runs_the_next_step_per_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.txt", "b.txt"):
        (inbox / name).write_text(name)
    stats = _run("filelist_iterate.yaml", tmp_path)
    assert stats["status"] == "done"
    assert list(stats["steps"]) == ["FileList_1", "PrintMessage_2", "RunShell_3"]
    assert stats["steps"]["PrintMessage_2"]["items"] == 2
    assert (tmp_path / "listed.txt").read_text().split() == ["a.txt", "b.txt"]


def test_the_daemons_library_can_be_upstreams_program_tree() -> None:
    from tests.daemon_harness import DaemonProcess, short_root  # noqa: PLC0415 - e2e only

    with short_root() as root:
        daemon = DaemonProcess(root)
        try:
            shutil.copytree(UPSTREAM / "programs", daemon.tasks, dirs_exist_ok=True)
            daemon.start()
            reply = daemon.cli("trigger", "main", "--wait")
            assert reply.returncode == 0, reply.stdout + reply.stderr
            runs = daemon.wait_runs(lambda rs: any(r.task == "main" for r in rs))
            assert [(r.task, r.status) for r in runs] == [("main", "done")]  # sub-runs are steps
            assert (root / "cleaned").exists() and (root / "continued").exists()
        finally:
            daemon.close()
