"""A step's output: pipes relayed into log files created at the first byte (real processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowtaskd.engine.events import EventBus
from flowtaskd.process.spawn import ProcessSpec, run_process
from flowtaskd.tasks.task import Task
from tests.conftest import open_fds, wait_for


def _spec(tmp_path: Path, *argv: str, **kw: object) -> ProcessSpec:
    return ProcessSpec(
        argv=list(argv),
        stdout_path=tmp_path / "logs" / "s.out",
        stderr_path=tmp_path / "logs" / "s.err",
        **kw,  # type: ignore[arg-type]
    )


async def test_a_silent_command_leaves_no_log_files(tmp_path: Path) -> None:
    result = await run_process(_spec(tmp_path, "/bin/true"))
    assert result.exit_code == 0
    assert (result.stdout_file, result.stderr_file, result.bytes_out) == (None, None, 0)
    assert (result.output, result.stdout_tail, result.stderr_tail) == ("", "", "")
    assert not (tmp_path / "logs").exists()


async def test_only_the_stream_that_printed_gets_a_file(tmp_path: Path) -> None:
    result = await run_process(_spec(tmp_path, "sh", "-c", "echo oops >&2"))
    assert result.stdout_file is None
    assert result.stderr_file == str(tmp_path / "logs" / "s.err")
    assert (tmp_path / "logs" / "s.err").read_text() == "oops\n"
    assert not (tmp_path / "logs" / "s.out").exists()


async def test_output_reaches_the_log_while_the_step_runs(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    script = f"echo started; while [ ! -e {flag} ]; do sleep 0.01; done; echo finished"
    run = asyncio.create_task(run_process(_spec(tmp_path, "sh", "-c", script)))
    log = tmp_path / "logs" / "s.out"
    # the step is still waiting for the flag, and its first line is already in the file
    await wait_for(lambda: log.exists() and log.read_text() == "started\n")
    assert not run.done()
    flag.touch()
    result = await asyncio.wait_for(run, 10)
    assert result.output == "started\nfinished"
    assert log.read_text() == "started\nfinished\n"


async def test_a_process_left_behind_does_not_hold_the_step(tmp_path: Path) -> None:
    """The step ends when its command does; a background process it left keeps logging."""
    flag = tmp_path / "go"
    script = f"echo first; (while [ ! -e {flag} ]; do sleep 0.01; done; echo later) & exit 0"
    await run_process(_spec(tmp_path / "warm", "/bin/true"))  # the loop's pidfd set stays
    before = open_fds()
    # the background process holds stdout open until the flag exists, and the flag is only
    # created below: had the step waited for the pipe to close, this would time out
    result = await asyncio.wait_for(run_process(_spec(tmp_path, "sh", "-c", script)), 10)
    assert result.exit_code == 0
    assert result.output == "first"
    flag.touch()
    log = tmp_path / "logs" / "s.out"
    await wait_for(lambda: log.read_text() == "first\nlater\n")
    await wait_for(lambda: open_fds() == before)  # the follower closed what it held


async def test_an_unwritable_log_still_drains_the_pipe(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    spec = ProcessSpec(
        argv=["head", "-c", "1000000", "/dev/zero"],  # far more than a pipe holds
        stdout_path=blocker / "s.out",
        stderr_path=blocker / "s.err",
    )
    result = await asyncio.wait_for(run_process(spec), 10)  # the child never blocks
    assert result.exit_code == 0
    assert result.stdout_file is None
    assert result.output_error is not None
    assert str(blocker / "s.out") in result.output_error
    assert "output discarded" in result.output_error


async def test_step_stats_name_a_log_only_when_there_is_one(tmp_path: Path) -> None:
    definition = {
        "name": "logs",
        "steps": [
            {"Command": {"name": "quiet", "command": ["/bin/true"]}},
            {"Command": {"name": "loud", "command": ["echo", "hello"]}},
        ],
    }
    bus = EventBus()
    async with bus, Task(task=definition, events=bus, log_dir=tmp_path / "logs") as t:
        stats = (await t.run()).to_dict()
    steps = stats["steps"]
    assert steps["quiet"]["tries"][0]["log_path"] is None
    loud = Path(steps["loud"]["tries"][0]["log_path"])
    assert loud.name == "loud.1.out" and loud.read_text() == "hello\n"


def test_the_ready_set_of_a_closed_loop_is_released() -> None:
    from flowtaskd.process.readyset import ready_set  # noqa: PLC0415

    first = asyncio.new_event_loop()
    old = ready_set(first)
    assert ready_set(first) is old  # one per loop
    first.close()
    second = asyncio.new_event_loop()
    try:
        assert ready_set(second) is not old
        assert old.closed  # released when the next loop made its set
    finally:
        second.close()


async def test_without_epoll_the_loop_watches_each_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off Linux there is no epoll: pidfds and pipes go to the loop's selector instead."""
    import select  # noqa: PLC0415

    monkeypatch.delattr(select, "epoll")
    script = "head -c 300000 /dev/zero; echo done >&2"  # more than a pipe holds: must be pumped
    result = await asyncio.wait_for(run_process(_spec(tmp_path, "sh", "-c", script)), 10)
    assert result.exit_code == 0
    assert result.bytes_out == 300000 + 5
    assert result.stderr_tail == "done\n"
    quiet = await run_process(_spec(tmp_path / "quiet", "/bin/true"))
    assert quiet.stdout_file is None
