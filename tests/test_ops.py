"""The on-call operations over a real history file: retry plans, pauses, backfill times,
next fire times, dry-run plans, the schema upgrade."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.plan import plan_run
from flowtaskd.daemon import ops
from flowtaskd.daemon.runs.extras import SECRET_KEPT
from flowtaskd.daemon.runs.records import RunRecord
from flowtaskd.daemon.runs.store import HistoryStore
from flowtaskd.engine.runner import Kept
from flowtaskd.tasks.pile import TaskPile

CHAIN = {
    "name": "chain",
    "steps": [
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "b"}},
        {"Dummy": {"name": "c"}},
        {"Dummy": {"name": "side", "depends": []}},
    ],
}


async def _record(
    store: HistoryStore, raw: dict[str, Any], statuses: dict[str, str], status: str = "failed"
) -> str:
    run_id = f"run{len(store.list_runs(limit=0)):04d}"
    steps = {sid: {"status": st, "output": f"out-{sid}"} for sid, st in statuses.items()}
    await store.insert_run(
        RunRecord(run_id, raw["name"], "manual", status, stats={"steps": steps}, source="/t.yaml")
    )
    await store.put_definition(run_id, TaskPile(raw))
    return run_id


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = HistoryStore(tmp_path / "history.db")
    await s.open()
    yield s
    await s.close()


async def test_retry_reruns_what_failed_and_downstream_keeping_the_rest(store: Any) -> None:
    rid = await _record(
        store, CHAIN, {"a": "done", "b": "failed", "c": "upstream_failed", "side": "done"}
    )
    plan = ops.plan_retry(store, rid)
    assert plan.rerun == ["b", "c"]
    assert plan.kept == {
        "a": Kept(ops_status("done"), "out-a", rid),
        "side": Kept(ops_status("done"), "out-side", rid),
    }
    assert plan.pile.definition.file == "/t.yaml"
    assert ops.plan_retry(store, rid, from_step="a").rerun == ["a", "b", "c"]


async def test_failed_only_keeps_done_steps_downstream(store: Any) -> None:
    raw = {
        "name": "cleanup",
        "steps": [
            {"Dummy": {"name": "a"}},
            {"Dummy": {"name": "b"}},
            {"Dummy": {"name": "tidy", "trigger_rule": "all_done"}},
        ],
    }
    rid = await _record(store, raw, {"a": "failed", "b": "upstream_failed", "tidy": "done"})
    assert ops.plan_retry(store, rid).rerun == ["a", "b", "tidy"]
    assert ops.plan_retry(store, rid, failed_only=True).rerun == ["a", "b"]


async def test_a_group_runs_again_as_a_whole_with_its_parent(store: Any) -> None:
    raw = {
        "name": "fan",
        "steps": [
            {"FileList": {"name": "list", "path": "/tmp", "to_group": "g"}},
            {"Dummy": {"name": "m1", "Group": "g"}},
            {"Dummy": {"name": "m2", "Group": "g", "depends": ["m1"]}},
            {"Dummy": {"name": "end", "depends": ["m2"]}},
        ],
    }
    rid = await _record(store, raw, {"list": "done", "m1": "done", "m2": "failed", "end": "done"})
    plan = ops.plan_retry(store, rid, failed_only=True)
    assert set(plan.rerun) == {"list", "m1", "m2"} and set(plan.kept) == {"end"}


async def test_retry_refusals_are_one_line(store: Any) -> None:
    done = await _record(store, CHAIN, dict.fromkeys(("a", "b", "c", "side"), "done"), "done")
    with pytest.raises(ops.OpError, match=r"did not fail .*--force"):
        ops.plan_retry(store, done)
    assert ops.plan_retry(store, done, force=True).rerun == ["a", "b", "c", "side"]
    going = await _record(store, CHAIN, {}, "running")
    with pytest.raises(ops.OpError, match="still running"):
        ops.plan_retry(store, going)
    with pytest.raises(ops.OpError, match="no run 'nope'"):
        ops.plan_retry(store, "nope")
    rid = await _record(store, CHAIN, {"a": "done", "b": "failed"})
    with pytest.raises(ops.OpError, match=r"no step 'bb'.*did you mean 'b'"):
        ops.plan_retry(store, rid, from_step="bb")
    renamed = TaskPile({"name": "chain", "steps": [{"Dummy": {"name": "z"}}]})
    with pytest.raises(ops.OpError, match=r"step 'a' .* no longer has it"):
        ops.plan_retry(store, rid, current=lambda name: renamed)


async def test_kept_definitions_hide_secrets(store: Any) -> None:
    raw = {
        "name": "s",
        "secrets": ["token"],
        "params": {"token": "hunter2-secret", "day": "x"},
        "steps": [{"Dummy": {"name": "a"}}],
    }
    rid = await _record(store, raw, {"a": "failed"})
    kept = store.get_definition(rid)
    assert kept is not None and kept["params"] == {"token": SECRET_KEPT, "day": "x"}
    assert "hunter2" not in Path(store.path).read_bytes().decode(errors="replace")
    with pytest.raises(ops.OpError, match="hides the secret token: retry with --current"):
        ops.plan_retry(store, rid)
    current = TaskPile(raw)
    assert ops.plan_retry(store, rid, current=lambda name: current).pile is current


async def test_pause_twice_and_unpause_unknown_are_refused(store: Any) -> None:
    out = await ops.set_pause(store, "task:t", True, 100.0, known={"task:t"})
    assert out == {"target": "task:t", "paused": True, "since": 100.0}
    with pytest.raises(ops.OpError, match="already paused"):
        await ops.set_pause(store, "task:t", True, 101.0)
    with pytest.raises(ops.OpError, match="no task 'u' is loaded"):
        await ops.set_pause(store, "task:u", True, 101.0, known={"task:t"})
    assert store.paused_targets() == {"task:t": 100.0}
    await ops.set_pause(store, "task:t", False, 102.0)
    with pytest.raises(ops.OpError, match="is not paused"):
        await ops.set_pause(store, "task:t", False, 103.0)
    with pytest.raises(ops.OpError, match="name a task, or a schedule"):
        ops.pause_target(None, None)


def test_backfill_times_follow_the_schedule_in_its_zone() -> None:
    start = ops.parse_moment("2026-03-28", "Europe/Berlin")
    end = ops.parse_moment("2026-03-30", "Europe/Berlin", end=True)
    times = ops.backfill_times(["30 2 * * *"], start, end, tz="Europe/Berlin")
    # 2026-03-29 has no 02:30 in Berlin (DST): it fires once at the first instant after
    assert [t.isoformat() for t in times] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    every = ops.backfill_times([], start, start.replace(hour=1), every=1800.0)
    assert len(every) == 3
    with pytest.raises(ops.OpError, match="no schedule; give --every"):
        ops.backfill_times([], start, end)
    with pytest.raises(ops.OpError, match="more than 10000"):
        ops.backfill_times(["* * * * *"], start, ops.parse_moment("2026-12-31"), tz="UTC")


def test_next_reads_intervals_and_cron() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert ops.parse_every("5m") == 300 and ops.parse_every("every:90s") == 90
    assert ops.parse_every("every 2h") == 7200 and ops.parse_every("nightly") is None
    assert [t.minute for t in ops.next_times("every:15m", after, 2)] == [15, 30]
    assert ops.next_times("@hourly", after, 1)[0].hour == 1
    with pytest.raises(ops.OpError, match="minute"):
        ops.next_times("61 * * * *", after)


def test_plan_resolves_masks_at_a_time_and_hides_secrets() -> None:
    pile = TaskPile(
        {
            "name": "p",
            "secrets": ["token"],
            "params": {"token": "hunter2-secret"},
            "steps": [
                {"Command": {"name": "get", "command": ["curl", "-H", "{token}", "{yesterday}"]}},
                {"Command": {"name": "put", "command": ["echo", "{steps.get.output}"]}},
                {"Command": {"name": "bad", "command": ["echo", "{nope}"], "depends": []}},
            ],
        }
    )
    plan = plan_run(pile, {}, datetime(2026, 3, 1, tzinfo=UTC))
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["get"]["params"]["command"] == ["curl", "-H", "***", "2026-02-28"]
    assert steps["put"]["params"]["command"] == ["echo", "<output of get>"]
    assert "unknown placeholder {nope}" in steps["bad"]["error"]
    assert plan["levels"] == [["get", "bad"], ["put"]]
    assert "hunter2" not in repr(plan)


async def test_a_version_1_history_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, task TEXT NOT NULL, trigger TEXT NOT NULL,"
        " source TEXT, params TEXT, status TEXT NOT NULL, queued_at REAL, started_at REAL,"
        " finished_at REAL, duration REAL, error TEXT, stats TEXT, log_dir TEXT,"
        " inbox_file TEXT, schedule_id TEXT)"
    )
    conn.execute(
        "CREATE TABLE step_attempts (run_id TEXT REFERENCES runs ON DELETE CASCADE,"
        " step_id TEXT, attempt INTEGER, status TEXT, started_at REAL, finished_at REAL,"
        " duration REAL, exit_code INTEGER, cpu_user REAL, cpu_system REAL, max_rss_kb INTEGER,"
        " bytes_out INTEGER, error TEXT, log_path TEXT, PRIMARY KEY (run_id, step_id, attempt))"
    )
    conn.execute("CREATE TABLE schedule_state (schedule_id TEXT PRIMARY KEY, last_fire REAL)")
    conn.execute(
        "INSERT INTO runs (run_id, task, trigger, status) VALUES ('old', 't', 'x', 'done')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = HistoryStore(db)
    await store.open()
    await store.close()
    [run] = HistoryStore.open_readonly(db).list_runs()
    assert run.run_id == "old" and run.retry_of is None and run.logical_time is None
    with pytest.raises(ops.OpError, match=r"no definition for run old .*--current"):
        ops.plan_retry(HistoryStore.open_readonly(db), "old", force=True)


def ops_status(name: str) -> Any:
    from flowtaskd.core.rules import StepStatus  # noqa: PLC0415

    return StepStatus(name)


async def test_kept_steps_are_not_run_and_still_feed_placeholders(tmp_path: Path) -> None:
    from flowtaskd.core.rules import StepStatus, TaskStatus  # noqa: PLC0415
    from flowtaskd.tasks.task import Task  # noqa: PLC0415

    seen = tmp_path / "seen"
    raw = {
        "name": "k",
        "steps": [
            {"Command": {"name": "a", "command": ["sh", "-c", f"echo ran >> {tmp_path}/a"]}},
            {
                "Command": {
                    "name": "b",
                    "command": ["sh", "-c", f"echo {{steps.a.output}} > {seen}"],
                }
            },
        ],
    }
    kept = {"a": Kept(StepStatus.DONE, "from-before", "r0")}
    task = Task(task=raw, kept=kept, log_dir=tmp_path / "logs")
    async with task:
        stats = await task.run()
    assert stats.status is TaskStatus.DONE
    assert not (tmp_path / "a").exists() and seen.read_text() == "from-before\n"
    a = stats.steps["a"]
    assert (a.status, a.reason, a.attempts) == (StepStatus.DONE, "kept from run r0", [])


async def test_masks_evaluate_at_the_logical_time(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    from flowtaskd.tasks.task import Task  # noqa: PLC0415

    argv = ["echo", "{today} {yesterday} {logical_time:%H:%M} {now:%Y}"]
    raw = {"name": "m", "steps": [{"Command": {"name": "s", "command": argv}}]}
    at = datetime(2026, 1, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 2025-12-31 in UTC
    task = Task(task=raw, logical_time=at, log_dir=tmp_path / "logs")
    async with task:
        stats = await task.run()
    assert stats.steps["s"].output == "2026-01-01 2025-12-31 00:30 2026"


async def test_logs_and_show_mask_the_secrets_the_process_knows(store: Any, tmp_path: Path) -> None:
    from flowtaskd.logs import GLOBAL_MASKER  # noqa: PLC0415

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.1.out").write_text("token=zq-very-secret-771\nok\n")
    await store.insert_run(
        RunRecord(
            "masked",
            "chain",
            "manual",
            "failed",
            log_dir=str(logs),
            stats={"steps": {"a": {"status": "failed"}}},
        )
    )
    GLOBAL_MASKER.update(["zq-very-secret-771"])  # as a run of the daemon registers them
    out = ops.read_logs(store, "masked", "a")
    assert out["sections"][0]["text"] == "token=***\nok\n"
    [step] = ops.describe_run(store, "masked")["steps"]
    assert step["output_head"] == "token=***\nok"
    with pytest.raises(ops.OpError, match="must be a byte count"):
        ops.read_logs(store, "masked", offsets={str(logs / "a.1.out"): "x"})


async def test_a_definition_is_kept_once_and_goes_with_its_last_run(store: Any) -> None:
    pile = TaskPile(CHAIN)
    for rid in ("r1", "r2"):
        await store.insert_run(RunRecord(rid, "chain", "manual", "done", finished_at=1.0))
        await store.put_definition(rid, pile)
    with store.reading() as conn:
        assert conn.execute("SELECT count(*) FROM definitions").fetchone()[0] == 1
    assert store.get_definition("r2") == CHAIN
    assert await store.prune(10.0, None, 1) == 1  # r1 goes, the definition stays for r2
    with store.reading() as conn:
        assert conn.execute("SELECT count(*) FROM definitions").fetchone()[0] == 1
    assert await store.prune(10.0, None, 0) == 1
    with store.reading() as conn:
        assert conn.execute("SELECT count(*) FROM definitions").fetchone()[0] == 0
