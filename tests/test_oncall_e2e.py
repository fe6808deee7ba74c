"""On call against a real daemon: show, logs, retry, pause, backfill, next (the CLI)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import wait_for_sync
from tests.daemon_harness import FLOWTASKD, DaemonProcess, event, short_root

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with short_root() as root:
        proc = DaemonProcess(root)
        try:
            yield proc
        finally:
            proc.close()


def _task(name: str, *steps: dict[str, Any], **header: Any) -> str:
    return yaml.safe_dump({"name": name, **header, "steps": list(steps)}, sort_keys=False)


def _sh(name: str, script: str, **opts: Any) -> dict[str, Any]:
    return {"Command": {"name": name, "command": ["sh", "-c", script], **opts}}


def _json(done: Any) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _one_line_error(done: Any, code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_a_failed_run_show_logs_fix_retry(daemon: DaemonProcess) -> None:
    root = daemon.root
    counter, marker, seen = root / "a-runs", root / "fixed", root / "seen"
    daemon.put_task(
        "nightly.yaml",
        _task(
            "nightly",
            _sh("extract", f"echo run >> {counter}; echo rows-42"),
            _sh("load", f"echo loading; echo 'disk full' >&2; test -e {marker}"),
            _sh("report", f"echo 'got {{steps.extract.output}}' > {seen}"),
        ),
    )
    daemon.start()
    failed = daemon.cli("trigger", "nightly", "--wait")
    assert failed.returncode == 1, failed.stderr
    run_id = failed.stdout.split()[0]

    shown = _json(daemon.cli("show", run_id[:12], "--json"))
    steps = {s["id"]: s for s in shown["steps"]}
    assert [s["id"] for s in shown["steps"]] == ["extract", "load", "report"]
    assert steps["extract"]["status"] == "done" and steps["extract"]["output_head"] == "rows-42"
    assert steps["load"]["status"] == "failed" and steps["load"]["exit_code"] == 1
    assert steps["load"]["stderr_head"] == "disk full"
    assert steps["load"]["tries"][0]["stderr"].endswith("load.1.err")
    assert steps["report"]["status"] == "upstream_failed" and not steps["report"]["started"]
    text = daemon.cli("show", run_id).stdout
    assert "never started: upstream failed" in text and "stderr | disk full" in text

    err = daemon.cli("logs", run_id, "load", "--stderr")
    assert err.returncode == 0 and err.stdout == "disk full\n", err.stderr
    everything = daemon.cli("logs", run_id).stdout
    assert everything.index("==> extract (try 1, stdout) <==") < everything.index("rows-42")
    assert "==> load (try 1, stdout) <==\nloading\n" in everything
    _one_line_error(daemon.cli("logs", run_id, "lod"), 1, "no step 'lod'", "did you mean 'load'")
    _one_line_error(daemon.cli("logs", "zzzz"), 1, "no run 'zzzz'")
    _one_line_error(daemon.cli("show", "zzzz"), 1, "no run 'zzzz'")

    marker.write_text("")  # the fix
    retried = daemon.cli("retry", run_id[:12])
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stdout.split()[0]
    assert "keeps extract; runs load, report" in retried.stderr
    assert counter.read_text() == "run\n"  # extract was kept, not run again
    assert seen.read_text() == "got rows-42\n"  # its recorded output still fed report
    again = _json(daemon.cli("show", new_id, "--json"))
    assert again["retry_of"] == run_id and again["run"]["trigger"] == "retry"
    kept = next(s for s in again["steps"] if s["id"] == "extract")
    assert kept["status"] == "done" and kept["reason"] == f"kept from run {run_id}"
    assert _json(daemon.cli("show", run_id, "--json"))["retries"] == [new_id]
    history = {r["run_id"]: r for r in daemon.history()}
    assert history[new_id]["retry_of"] == run_id
    assert f"retry of {run_id}" in daemon.cli("history").stdout
    _one_line_error(daemon.cli("retry", new_id), 1, "did not fail", "--force")
    _one_line_error(daemon.cli("retry", run_id, "--from", "lood"), 1, "no step 'lood'")

    assert daemon.stop() == 0  # the history and the logs are read with the daemon stopped
    assert daemon.cli("logs", run_id, "load", "--stderr").stdout == "disk full\n"
    assert _json(daemon.cli("show", new_id, "--json"))["run"]["status"] == "done"
    tail = daemon.cli("logs", run_id, "--all", "--tail", "1")
    assert "==> load (try 1, stderr) <==\ndisk full\n" in tail.stdout


def test_retry_keeps_the_definition_the_run_used(daemon: DaemonProcess) -> None:
    out = daemon.root / "out"
    daemon.put_task("t.yaml", _task("t", _sh("only", f"echo v1 > {out}; exit 1")))
    daemon.start()
    run_id = daemon.cli("trigger", "t", "--wait").stdout.split()[0]
    mark = daemon.mark()
    daemon.put_task("t.yaml", _task("t", _sh("only", f"echo v2 > {out}")))
    daemon.wait_log(event("task_loaded", task="t", reloaded=True), since=mark)
    assert daemon.cli("retry", run_id).returncode == 1  # the kept v1 fails again
    assert out.read_text() == "v1\n"
    assert daemon.cli("retry", run_id, "--current").returncode == 0
    assert out.read_text() == "v2\n"
    daemon.put_task("t.yaml", _task("t", _sh("other", "true")))
    done = daemon.cli("trigger", "t", "--wait")
    assert done.returncode == 0
    daemon.put_task("t.yaml", _task("t", _sh("only", "true"), _sh("more", "false")))
    mark = daemon.mark()
    daemon.wait_log(event("task_loaded", task="t", reloaded=True), since=mark)
    bad = daemon.cli("trigger", "t", "--wait").stdout.split()[0]
    daemon.put_task("t.yaml", _task("t", _sh("renamed", "true"), _sh("more", "true")))
    mark = daemon.mark()
    daemon.wait_log(event("task_loaded", task="t", reloaded=True), since=mark)
    _one_line_error(daemon.cli("retry", bad, "--current"), 1, "'only'", "no longer has it")


def test_pause_skips_fires_survives_a_restart_and_catches_up(daemon: DaemonProcess) -> None:
    daemon.put_task("tick.yaml", _task("tick", _sh("s", "true")))
    daemon.write_config(
        schedules=[{"id": "tick-1s", "task": "tick", "every": "1s", "catchup": "latest"}]
    )
    daemon.start()
    paused = daemon.cli("pause", "tick")
    assert paused.returncode == 0 and paused.stdout.strip() == "task tick paused", paused.stderr
    _one_line_error(daemon.cli("pause", "tick"), 1, "task tick is already paused")
    _one_line_error(daemon.cli("pause", "tikc"), 1, "no task 'tikc'", "did you mean 'tick'")
    mark = daemon.mark()
    daemon.wait_log(event("run_skipped", task="tick", reason="paused"), since=mark, count=2)
    assert _json(daemon.cli("status", "--json"))["paused"] == ["task:tick"]
    assert "paused: task:tick" in daemon.cli("status").stdout
    assert _json(daemon.cli("tasks", "--json"))["tasks"][0]["paused"] is True
    nxt = daemon.cli("next", "tick")
    assert "tick-1s" in nxt.stdout and "(paused: fires are skipped)" in nxt.stdout, nxt.stderr

    assert daemon.stop() == 0
    daemon.start()
    assert _json(daemon.cli("status", "--json"))["paused"] == ["task:tick"]
    runs_before = len(daemon.history())
    mark = daemon.mark()
    daemon.wait_log(event("run_skipped", task="tick", reason="paused"), since=mark)
    assert len(daemon.history()) == runs_before  # nothing ran while paused

    assert daemon.cli("unpause", "tick").returncode == 0
    wait_for_sync(
        lambda: any(r["trigger"] == "catchup" for r in daemon.history()), timeout=10
    )  # the fires missed while paused follow catchup: latest
    assert all(r["logical_time"] for r in daemon.history() if r["trigger"] == "catchup")
    assert "paused: task:tick" not in daemon.cli("status").stdout
    _one_line_error(daemon.cli("unpause", "tick"), 1, "task tick is not paused")

    assert daemon.stop() == 0  # with the daemon stopped, a pause goes straight to the history
    offline = daemon.cli("pause", "tick")
    assert offline.returncode == 0 and "next start" in offline.stdout, offline.stderr
    daemon.start()
    assert _json(daemon.cli("status", "--json"))["paused"] == ["task:tick"]


def test_backfill_runs_each_day_at_its_logical_time(daemon: DaemonProcess) -> None:
    out = daemon.root / "days"
    daemon.put_task(
        "daily.yaml",
        _task(
            "daily",
            _sh("d", f"echo '{{today}} {{yesterday}} {{logical_time:%H:%M}}' >> {out}"),
            schedule="30 2 * * *",
        ),
    )
    daemon.start()
    dry = daemon.cli("backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-03", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == [
        "2026-01-01T02:30:00+00:00",
        "2026-01-02T02:30:00+00:00",
        "2026-01-03T02:30:00+00:00",
    ]
    done = daemon.cli(
        "backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-03", "--max-active", "2"
    )
    assert done.returncode == 0, done.stderr
    assert "3 done" in done.stdout
    assert sorted(out.read_text().splitlines()) == [
        "2026-01-01 2025-12-31 02:30",
        "2026-01-02 2026-01-01 02:30",
        "2026-01-03 2026-01-02 02:30",
    ]
    runs = [r for r in daemon.history() if r["trigger"] == "backfill"]
    assert len(runs) == 3 and len({r["backfill_id"] for r in runs}) == 1
    assert sorted(r["logical_time"] for r in runs)[0] == 1767234600.0  # 2026-01-01T02:30Z
    _one_line_error(
        daemon.cli("backfill", "daily", "--from", "2026-01-05", "--to", "2026-01-01"),
        1,
        "before --from",
    )
    _one_line_error(daemon.cli("backfill", "--cancel", "bf-nope"), 1, "unknown backfill")


def test_backfill_cancelled_as_a_whole(daemon: DaemonProcess) -> None:
    daemon.put_task("slow.yaml", _task("slow", _sh("s", "sleep 30"), schedule="0 * * * *"))
    daemon.start()
    planned = daemon.cli(
        "backfill", "slow", "--from", "2026-01-01", "--to", "2026-01-01", "--no-wait", "--json"
    )
    first = _json(planned)
    assert first["total"] == 24
    daemon.wait_log(event("start", task="slow", trigger="backfill"))
    cancelled = _json(daemon.cli("backfill", "--cancel", first["backfill_id"], "--json"))
    assert cancelled["state"] == "cancelled"
    wait_for_sync(
        lambda: (
            [r["status"] for r in daemon.history() if r["trigger"] == "backfill"] == ["cancelled"]
        ),
        timeout=15,
    )  # only the one that had started was run at all, and it was stopped


def test_next_takes_intervals_and_task_names(daemon: DaemonProcess, tmp_path: Path) -> None:
    r = daemon.cli("next", "5m", "--after", "2026-01-01T00:00:00+00:00", "-n", "2")
    assert r.stdout.split() == ["2026-01-01T00:05:00+00:00", "2026-01-01T00:10:00+00:00"]
    daemon.put_task("n.yaml", _task("n", _sh("s", "true"), schedule="0 3 * * *"))
    daemon.start()
    reply = _json(daemon.cli("next", "n", "-n", "1", "--json"))
    [sched] = reply["schedules"]
    assert sched["id"] == "task:n:0" and sched["paused"] is False
    assert sched["next"][0].endswith("T03:00:00+00:00")
    _one_line_error(daemon.cli("next", "nope"), 1, "no task named 'nope'")


def test_logs_follow_a_running_run_to_its_end(daemon: DaemonProcess) -> None:
    gate = daemon.root / "gate"
    daemon.put_task(
        "talk.yaml",
        _task(
            "talk",
            _sh("one", f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"),
            _sh("two", "echo third"),
        ),
    )
    daemon.start()
    run_id = daemon.cli("trigger", "talk").stdout.strip()
    daemon.wait_log(event("start", task="talk", run_id=run_id))
    follower = subprocess.Popen(
        [FLOWTASKD, "logs", run_id, "-f", "--config", str(daemon.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "==> one (try 1, stdout) <==\n"
        assert follower.stdout.readline() == "first\n"  # while the step still runs
        gate.write_text("")
        rest, err = follower.communicate(timeout=20)  # ends by itself once the run is over
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert rest == "second\n==> two (try 1, stdout) <==\nthird\n"
