"""The run engine: DAG execution semantics with real subprocesses."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.components.base import Component
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.registry import register, registry
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.engine.events import EventBus
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import Command, Task, TaskPile
from flowtaskd.tasks.task import new_run_id
from tests.conftest import FakeClock, pid_alive, wait_for, write

PY = sys.executable


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A LocalCluster of 2 worker processes on 127.0.0.1, shared by this module."""
    pytest.importorskip("distributed")
    from tests.dask_cluster import local_cluster  # noqa: PLC0415 - dask is an optional extra

    with local_cluster(n_workers=2) as address:
        yield address


@pytest.fixture(params=["local", "dask"])
async def executor(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The DAG-semantics tests run against both executors: the same results either way."""
    if request.param == "local":
        yield None  # Task's default: LocalExecutor
        return
    from flowtaskd.execution.dask import DaskExecutor  # noqa: PLC0415 - the optional extra

    ex = DaskExecutor(request.getfixturevalue("dask_address"), connect_timeout=10.0)
    await ex.start()
    try:
        yield ex
    finally:
        await ex.aclose()


async def run_task(definition: Any, tmp_path: Path, **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    bus = kw.pop("events", None) or EventBus()
    bus.connect("*", events.append)
    async with bus, Task(task=definition, events=bus, log_dir=tmp_path / "logs", **kw) as t:
        stats = await t.run()
    return stats, events


def steps(stats: Any) -> dict[str, Any]:
    return stats.to_dict()["steps"]


async def test_independent_branches_overlap(tmp_path: Path, executor: Any) -> None:
    marks = tmp_path / "marks"
    cmd = f"date +%s.%N >> {marks}.$NAME.start; sleep 0.6; date +%s.%N >> {marks}.$NAME.end"
    task = {
        "name": "par",
        "steps": [
            {"RunShell": {"name": "a", "command": cmd, "env": {"NAME": "a"}, "depends": []}},
            {"RunShell": {"name": "b", "command": cmd, "env": {"NAME": "b"}, "depends": []}},
        ],
    }
    stats, _ = await run_task(task, tmp_path, executor=executor)
    assert stats.status is TaskStatus.DONE
    a0, a1 = (float(Path(f"{marks}.a.{x}").read_text()) for x in ("start", "end"))
    b0, b1 = (float(Path(f"{marks}.b.{x}").read_text()) for x in ("start", "end"))
    assert a0 < b1 and b0 < a1, "the two branches did not run at the same time"


async def test_plain_list_is_a_chain_and_outputs_flow(tmp_path: Path, executor: Any) -> None:
    task = {
        "name": "chain",
        "steps": [
            {"Command": {"command": ["echo", "one"]}},
            {"Command": {"command": ["echo", "{steps.Command_1.output}-two"]}},
            {"Dummy": {"message": "{steps.Command_2.output}"}},
        ],
    }
    stats, events = await run_task(task, tmp_path, executor=executor)
    s = steps(stats)
    assert s["Dummy_3"]["output"] == "one-two"
    starts = [e["step"] for e in events if e["event"] == "step_start"]
    assert starts == ["Command_1", "Command_2", "Dummy_3"]
    worker = s["Command_1"]["tries"][0]["worker"]
    if executor is None:
        assert worker is None
    else:  # the Command steps really ran on a Dask worker; Dummy stays in the daemon
        assert str(worker).startswith("tcp://127.0.0.1")
        assert s["Dummy_3"]["tries"][0]["worker"] is None


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [
        ("all_success", ["ok", "ok"], "done"),
        ("all_success", ["ok", "fail"], "upstream_failed"),
        ("all_done", ["fail", "fail"], "done"),
        ("all_failed", ["fail", "fail"], "done"),
        ("all_failed", ["ok", "fail"], "skipped"),
        ("one_success", ["fail", "ok"], "done"),
        ("one_success", ["fail", "fail"], "upstream_failed"),
        ("one_failed", ["ok", "fail"], "done"),
        ("one_failed", ["ok", "ok"], "skipped"),
        ("none_failed", ["ok", "ok"], "done"),
        ("none_failed", ["ok", "fail"], "upstream_failed"),
        ("always", ["fail", "fail"], "done"),
    ],
)
async def test_trigger_rules(tmp_path: Path, rule: str, upstream: list[str], expected: str) -> None:
    ups = [
        {"Dummy": {"name": f"u{i}", "depends": [], "fail": kind == "fail", "skipError": "log"}}
        for i, kind in enumerate(upstream)
    ]
    task = {
        "name": "rules",
        "steps": [*ups, {"Dummy": {"name": "x", "depends": ["u0", "u1"], "trigger_rule": rule}}],
    }
    stats, events = await run_task(task, tmp_path)
    assert steps(stats)["x"]["status"] == expected
    if expected != "done":
        assert steps(stats)["x"]["reason"], "a step that cannot run records why"
        assert any(e["event"] == "step_skipped" and e["step"] == "x" for e in events)


async def test_skip_error_modes(tmp_path: Path, executor: Any) -> None:
    def task(mode: str) -> dict[str, Any]:
        return {
            "name": f"skip-{mode}",
            "steps": [
                {"Command": {"name": "bad", "command": ["false"], "skipError": mode}},
                {"Dummy": {"name": "next"}},
            ],
        }

    enforce, _ = await run_task(task("enforce"), tmp_path, executor=executor)
    assert enforce.status is TaskStatus.FAILED
    assert steps(enforce)["next"]["status"] == "upstream_failed"
    skip, _ = await run_task(task("skip"), tmp_path, executor=executor)
    assert skip.status is TaskStatus.DONE
    assert steps(skip)["bad"]["status"] == "failed"
    assert steps(skip)["next"]["status"] == "done"
    log, _ = await run_task(task("log"), tmp_path, executor=executor)
    assert log.status is TaskStatus.DONE
    assert steps(log)["next"]["status"] == "upstream_failed"


async def test_retry_backoff_uses_the_injected_clock(
    tmp_path: Path, fake_clock: FakeClock, executor: Any
) -> None:
    counter = tmp_path / "count"
    task = {
        "name": "retry",
        "steps": [
            {
                "RunShell": {
                    "command": f"echo x >> {counter}; exit 7",
                    "retry": {
                        "attempts": 4,
                        "delay": 10,
                        "backoff": "exponential",
                        "max_delay": 30,
                    },
                }
            }
        ],
    }
    stats, events = await run_task(task, tmp_path, clock=fake_clock, executor=executor)
    assert len(counter.read_text().splitlines()) == 4
    assert fake_clock.sleeps == [10, 20, 30]
    s = steps(stats)["RunShell_1"]
    assert s["attempts"] == 4 and len(s["tries"]) == 4
    assert [t["exit_code"] for t in s["tries"]] == [7, 7, 7, 7]
    assert [e["attempt"] for e in events if e["event"] == "step_retry"] == [1, 2, 3]


async def test_retry_only_on_listed_exit_codes(
    tmp_path: Path, fake_clock: FakeClock, executor: Any
) -> None:
    task = {
        "name": "codes",
        "steps": [
            {
                "Command": {
                    "command": ["sh", "-c", "exit 2"],
                    "retry": {"attempts": 5, "on_exit_codes": [75]},
                }
            }
        ],
    }
    stats, _ = await run_task(task, tmp_path, clock=fake_clock, executor=executor)
    assert steps(stats)["Command_1"]["attempts"] == 1
    assert fake_clock.sleeps == []


async def test_task_level_retry_is_the_default_for_steps(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    task = {
        "name": "task-retry",
        "retry": {"attempts": 2, "delay": 1},
        "steps": [{"Command": {"command": ["false"]}}],
    }
    stats, _ = await run_task(task, tmp_path, clock=fake_clock)
    assert steps(stats)["Command_1"]["attempts"] == 2


async def test_step_timeout_kills_grandchildren(tmp_path: Path, executor: Any) -> None:
    pidfile = tmp_path / "grandchild.pid"
    task = {
        "name": "timeout",
        "steps": [
            {"RunShell": {"command": f"sleep 300 & echo $! > {pidfile}; wait", "timeout": 0.5}}
        ],
    }
    stats, _ = await run_task(task, tmp_path, kill_grace=0.5, executor=executor)
    assert steps(stats)["RunShell_1"]["status"] == "timed_out"
    assert stats.status is TaskStatus.FAILED
    pid = int(pidfile.read_text())
    await wait_for(lambda: not pid_alive(pid), timeout=5)


async def test_task_timeout_cancels_running_steps(tmp_path: Path, executor: Any) -> None:
    task = {
        "name": "task-timeout",
        "timeout": 0.5,
        "steps": [{"Command": {"command": ["sleep", "30"]}}, {"Dummy": {}}],
    }
    stats, _ = await run_task(task, tmp_path, kill_grace=0.5, executor=executor)
    assert stats.status is TaskStatus.FAILED
    assert "timed out" in (stats.error or "")
    assert steps(stats)["Command_1"]["status"] == "cancelled"
    assert steps(stats)["Dummy_2"]["status"] == "cancelled"


async def test_cancel_stops_the_process_and_reports_cancelled(
    tmp_path: Path, executor: Any
) -> None:
    pidfile = tmp_path / "pid"
    bus = EventBus()
    events: list[dict[str, Any]] = []
    bus.connect("*", events.append)
    async with bus:
        task = Task(
            task={
                "name": "c",
                "steps": [{"RunShell": {"command": f"echo $$ > {pidfile}; exec sleep 60"}}],
            },
            events=bus,
            log_dir=tmp_path,
            kill_grace=0.5,
            executor=executor,
        )
        async with task:
            runner = asyncio.create_task(task.run())
            await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
            task.cancel()
            stats = await runner
    assert stats.status is TaskStatus.CANCELLED
    assert steps(stats)["RunShell_1"]["status"] == "cancelled"
    assert not pid_alive(int(pidfile.read_text()))
    names = [e["event"] for e in events]
    assert names[-2:] == ["cancelled", "completed"]


async def test_secrets_are_masked_everywhere(tmp_path: Path, executor: Any) -> None:
    bus = EventBus()
    task = {
        "name": "secret",
        "secrets": ["TOKEN", "password"],
        "params": {"password": "hunter2-pw"},
        "env": {"TOKEN": "tok-123456"},
        "steps": [
            {"RunShell": {"command": "echo $TOKEN {password}; echo $TOKEN >&2; exit 1"}},
        ],
    }
    stats, events = await run_task(task, tmp_path, events=bus, executor=executor)
    blob = json.dumps(stats.to_dict()) + json.dumps(events)
    assert "tok-123456" not in blob and "hunter2-pw" not in blob
    assert "***" in steps(stats)["RunShell_1"]["output"]
    assert stats.to_dict()["params"]["password"] == "***"


async def test_params_are_arguments_not_shell(tmp_path: Path, executor: Any) -> None:
    evil = "; touch " + str(tmp_path / "pwned")
    task = {
        "name": "inject",
        "params": {"x": "safe"},
        "steps": [
            {
                "Command": {
                    "command": [PY, "-c", "import sys; print(len(sys.argv), sys.argv[1])", "{x}"]
                }
            }
        ],
    }
    stats, _ = await run_task(task, tmp_path, params={"x": evil}, executor=executor)
    assert steps(stats)["Command_1"]["output"] == f"2 {evil}"
    assert not (tmp_path / "pwned").exists()


async def test_unknown_placeholder_fails_before_the_step_starts(
    tmp_path: Path, executor: Any
) -> None:
    marker = tmp_path / "ran"
    task = {"name": "ph", "steps": [{"RunShell": {"command": f"touch {marker} {{nope}}"}}]}
    stats, _ = await run_task(task, tmp_path, executor=executor)
    s = steps(stats)["RunShell_1"]
    assert s["status"] == "failed"
    assert "unknown placeholder {nope}" in s["error"]
    assert not marker.exists()


async def test_masks_today_and_now_format(tmp_path: Path, fake_clock: FakeClock) -> None:
    task = {"name": "masks", "steps": [{"Dummy": {"message": "{today}|{now:%Y}|{yesterday:%d}"}}]}
    stats, _ = await run_task(task, tmp_path, clock=fake_clock)
    assert steps(stats)["Dummy_1"]["output"] == "2027-01-15|2027|14"


async def test_group_fans_out_over_files(tmp_path: Path, executor: Any) -> None:
    data = tmp_path / "data"
    for name in ("a.csv", "b.csv", "c.csv", "skip.txt"):
        write(data / name, name)
    task = {
        "name": "group",
        "max_active_steps": 2,
        "steps": [
            {"FileList": {"path": str(data), "pattern": "*.csv", "to_group": "g"}},
            {"Command": {"name": "cat", "Group": "g", "command": ["cat", "{file}"]}},
            {
                "RunShell": {
                    "name": "mark",
                    "Group": "g",
                    "command": f"echo {{name}} >> {tmp_path}/seen",
                }
            },
            {"Dummy": {"name": "after", "depends": ["mark"]}},
        ],
    }
    stats, events = await run_task(task, tmp_path, executor=executor)
    assert stats.status is TaskStatus.DONE
    assert sorted((tmp_path / "seen").read_text().split()) == ["a.csv", "b.csv", "c.csv"]
    assert steps(stats)["cat"]["items"] == 3
    assert len([e for e in events if e["event"] == "step_done" and e["step"] == "cat"]) == 3
    assert steps(stats)["after"]["status"] == "done"


async def test_group_member_failure_fails_the_group(tmp_path: Path, executor: Any) -> None:
    data = tmp_path / "data"
    write(data / "ok.txt", "1")
    write(data / "bad.txt", "2")
    task = {
        "name": "group-fail",
        "steps": [
            {"FileList": {"path": str(data), "to_group": "g"}},
            {"RunShell": {"name": "check", "Group": "g", "command": "test {stem} = ok"}},
            {"Dummy": {"name": "after", "depends": ["check"]}},
        ],
    }
    stats, _ = await run_task(task, tmp_path, executor=executor)
    assert steps(stats)["check"]["status"] == "failed"
    assert steps(stats)["after"]["status"] == "upstream_failed"
    assert stats.status is TaskStatus.FAILED


async def test_max_active_steps_bounds_concurrency(tmp_path: Path) -> None:
    state = {"now": 0, "peak": 0}

    async def probe(**_: Any) -> None:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1

    sys.modules[__name__].probe = probe  # type: ignore[attr-defined]
    task = {
        "name": "bounded",
        "max_active_steps": 2,
        "steps": [{"Python": {"function": f"{__name__}:probe", "depends": []}} for _ in range(6)],
    }
    stats, _ = await run_task(task, tmp_path)
    assert stats.status is TaskStatus.DONE
    assert state["peak"] == 2


def add(a: int, b: int) -> int:
    return a + b


async def async_double(x: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"double": x * 2}


def explode() -> None:
    raise ValueError("boom")


async def test_python_component(tmp_path: Path, executor: Any) -> None:
    task = {
        "name": "py",
        "steps": [
            {"Python": {"name": "add", "function": f"{__name__}:add", "kwargs": {"a": 2, "b": 3}}},
            {"Python": {"name": "dbl", "function": f"{__name__}:async_double", "kwargs": {"x": 4}}},
            {"Python": {"name": "bad", "function": f"{__name__}:explode", "skipError": "log"}},
        ],
    }
    stats, _ = await run_task(task, tmp_path, executor=executor)
    s = steps(stats)
    assert s["add"]["output"] == "5"
    assert json.loads(s["dbl"]["output"]) == {"double": 8}
    assert s["bad"]["status"] == "failed" and "ValueError: boom" in s["bad"]["error"]


async def test_python_allow_list(tmp_path: Path) -> None:
    task = {"name": "py-allow", "steps": [{"Python": {"function": "os:getcwd"}}]}
    stats, _ = await run_task(task, tmp_path, python_allow=("mypkg",))
    assert "not in the allowed Python modules" in steps(stats)["Python_1"]["error"]


async def test_precondition_skips_the_step(tmp_path: Path, executor: Any) -> None:
    task = {
        "name": "pre",
        "steps": [
            {
                "Command": {
                    "name": "gated",
                    "precondition": ["test", "-e", str(tmp_path / "nope")],
                    "command": ["touch", str(tmp_path / "ran")],
                }
            },
            {
                "Command": {
                    "name": "open",
                    "depends": [],
                    "precondition": "true",
                    "command": ["echo", "ok"],
                }
            },
        ],
    }
    stats, _ = await run_task(task, tmp_path, executor=executor)
    assert steps(stats)["gated"]["status"] == "skipped"
    assert "precondition exited 1" in steps(stats)["gated"]["reason"]
    assert not (tmp_path / "ran").exists()
    assert steps(stats)["open"]["output"] == "ok"


async def test_run_task_sub_run(tmp_path: Path) -> None:
    write(
        tmp_path / "child.yaml",
        "name: child\nparams: {n: 1}\nsteps:\n  - Command: {command: [echo, 'child {n}']}\n",
    )
    write(
        tmp_path / "parent.yaml",
        "name: parent\nsteps:\n  - RunTask: {task: child.yaml, params: {n: 7}}\n",
    )
    events: list[dict[str, Any]] = []
    bus = EventBus()
    bus.connect("completed", events.append)
    stats, _ = await run_task(str(tmp_path / "parent.yaml"), tmp_path, events=bus)
    assert stats.status is TaskStatus.DONE
    child = [e for e in events if e["task"] == "child"]
    assert child and child[0]["stats"]["steps"]["Command_1"]["output"] == "child 7"


async def test_events_are_ordered_and_completed_is_last(tmp_path: Path, executor: Any) -> None:
    task = {
        "name": "ev",
        "steps": [{"Command": {"command": ["true"]}}, {"Command": {"command": ["false"]}}],
    }
    stats, events = await run_task(task, tmp_path, executor=executor)
    names = [e["event"] for e in events]
    assert names == [
        "start",
        "running",
        "step_start",
        "step_done",
        "step_start",
        "step_error",
        "on_error",
        "completed",
    ]
    assert all(e["task"] == "ev" and e["run_id"] == stats.run_id for e in events)
    json.dumps(events)  # every payload is plain JSON
    assert events[-1]["stats"]["status"] == "failed"


async def test_a_raising_receiver_does_not_fail_the_run(tmp_path: Path) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("receiver bug")

    async def slow(_: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    bus.connect("*", broken)
    bus.connect("*", slow)
    bus.connect("*", lambda p: seen.append(p["event"]))
    async with bus:
        async with Task(
            task={"name": "r", "steps": [{"Dummy": {}}]}, events=bus, log_dir=tmp_path
        ) as t:
            stats = await asyncio.wait_for(t.run(), 10)
        await bus.aclose(timeout=0.1)
    assert stats.status is TaskStatus.DONE
    assert seen[-1] == "completed"
    assert bus.receiver_errors >= 5


async def test_events_block_actions(tmp_path: Path) -> None:
    marker = tmp_path / "notified"
    task = {
        "name": "actions",
        "events": {
            "completed": [
                {"Command": {"command": ["sh", "-c", f"echo {{status}} > {marker}"]}},
                {"Log": {"message": "all done: {status}"}},
            ],
        },
        "steps": [{"Dummy": {}}],
    }
    await run_task(task, tmp_path)  # the bus drains its actions before closing
    assert marker.read_text().strip() == "done"


async def test_stats_record_os_accounting(tmp_path: Path, executor: Any) -> None:
    task = {
        "name": "acct",
        "steps": [{"Command": {"command": [PY, "-c", "x = bytearray(60_000_000); print(len(x))"]}}],
    }
    stats, _ = await run_task(task, tmp_path, executor=executor)
    s = steps(stats)["Command_1"]
    assert s["max_rss_kb"] >= 60_000
    assert s["cpu_user"] is not None and s["bytes_out"] == len("60000000\n")
    assert Path(s["tries"][0]["log_path"]).read_text() == "60000000\n"


async def test_command_task(tmp_path: Path) -> None:
    async with Command(
        "hello", command=["sh", "-c", "echo $GREETING"], env={"GREETING": "hi"}, log_dir=tmp_path
    ) as cmd:
        stats = await cmd.run()
    assert stats.status is TaskStatus.DONE
    assert stats.steps["command"].output == "hi"
    assert stats.steps["command"].status is StepStatus.DONE
    assert cmd.stats is stats


async def test_task_by_library_name(tmp_path: Path) -> None:
    write(
        tmp_path / "lib" / "named.toml", 'name = "named"\n[[steps]]\n[steps.Dummy]\nmessage = "x"\n'
    )
    async with Task("named", tasks_dir=str(tmp_path / "lib"), log_dir=tmp_path) as t:
        stats = await t.run()
    assert stats.status is TaskStatus.DONE


class _ShoutParams(StrictModel):
    text: str


class _Shout(Component):
    """A plugin component, registered the way the entry-point group does it."""

    name = "Shout"
    Params = _ShoutParams

    async def run(self, ctx: StepContext) -> StepOutcome:
        return StepOutcome(StepStatus.DONE, output=str(ctx.params["text"]).upper())


async def test_a_plugin_component_validates_and_runs(tmp_path: Path) -> None:
    registry().pop("Shout", None)
    register(_Shout)
    try:
        with pytest.raises(TaskParseError, match="did you mean `text`"):
            TaskPile({"name": "p", "steps": [{"Shout": {"txt": "x"}}]})
        stats, _ = await run_task(
            {"name": "p", "steps": [{"Shout": {"text": "hey {who}"}}], "params": {"who": "you"}},
            tmp_path,
        )
        assert steps(stats)["Shout_1"]["output"] == "HEY YOU"
    finally:
        registry().pop("Shout", None)


async def test_cancel_before_the_run_starts_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with Task(
        task={"name": "early", "steps": [{"Command": {"command": ["touch", str(marker)]}}]},
        log_dir=tmp_path,
    ) as task:
        task.cancel()
        stats = await task.run()
    assert stats.status is TaskStatus.CANCELLED
    assert steps(stats)["Command_1"]["status"] == "cancelled"
    assert not marker.exists()


async def test_a_long_chain_of_instant_steps_still_lets_the_loop_run(tmp_path: Path) -> None:
    """Steps of a chain continue in one task; one that never waits must not hog the loop."""
    ticks, stop = 0, False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    stats, _ = await run_task({"name": "chain", "steps": [{"Dummy": {}}] * 1000}, tmp_path)
    stop = True
    await other
    assert stats.status is TaskStatus.DONE
    assert ticks >= 25  # the chain yields every 32 steps: ~31 chances for the ticker


def test_run_ids_are_unique_and_sorted_in_a_tight_loop_and_across_threads() -> None:
    ids = [new_run_id() for _ in range(300_000)]  # ~100 per millisecond
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [new_run_id() for _ in range(20_000)], range(4)))
    together = [i for batch in batches for i in batch]
    assert len(set(together)) == len(together)
    assert all(batch == sorted(batch) for batch in batches)
