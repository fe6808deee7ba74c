"""Tests for flowtaskd.process.spawn: real processes, real files."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowtaskd.errors import ExecutionError
from flowtaskd.process.exitwatch import ExitWatch
from flowtaskd.process.spawn import (
    ProcessResult,
    ProcessSpec,
    kill_process_group,
    run_process,
)
from tests.conftest import open_fds, wait_for

PY = sys.executable


def _spec(tmp_path: Path, *argv: str, **kw: object) -> ProcessSpec:
    return ProcessSpec(
        argv=list(argv),
        stdout_path=tmp_path / "out" / "stdout.log",
        stderr_path=tmp_path / "out" / "stderr.log",
        **kw,  # type: ignore[arg-type]
    )


def _gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie waiting for init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in group ``pgid``; a zombie awaiting init is dead enough."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


# -- exit status and output -----------------------------------------------------------------


async def test_exit_codes_and_reaped(tmp_path: Path) -> None:
    ok = await run_process(_spec(tmp_path, "/bin/true"))
    bad = await run_process(_spec(tmp_path, "sh", "-c", "exit 7"))
    assert (ok.exit_code, ok.signal, ok.timed_out, ok.cancelled) == (0, None, False, False)
    assert (bad.exit_code, bad.signal) == (7, None)
    for result in (ok, bad):
        with pytest.raises(ChildProcessError):  # already reaped: no zombie left behind
            os.waitpid(result.pid, os.WNOHANG)
    assert ok.duration > 0


async def test_killed_by_signal(tmp_path: Path) -> None:
    result = await run_process(_spec(tmp_path, "sh", "-c", "kill -USR1 $$"))
    assert result.exit_code is None
    assert result.signal == signal.SIGUSR1


async def test_output_captured_stripped_and_tails(tmp_path: Path) -> None:
    script = "printf '\\n  hello world  \\n\\n'; printf 'oops\\n' >&2"
    result = await run_process(_spec(tmp_path, "sh", "-c", script))
    assert result.output == "hello world"
    assert result.stdout_tail == "\n  hello world  \n\n"
    assert result.stderr_tail == "oops\n"
    assert result.bytes_out == len("\n  hello world  \n\n") + len("oops\n")
    assert (tmp_path / "out" / "stderr.log").read_bytes() == b"oops\n"


async def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    result = await run_process(_spec(tmp_path, "printf", "ok \\377 done"))
    assert result.output == "ok \ufffd done"


async def test_output_cap_and_tail_bytes(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('a' * 5000 + 'é' + 'b' * 5000 + 'END')"
    spec = _spec(tmp_path, PY, "-c", code, output_cap=5001, tail_bytes=5004)
    result = await run_process(spec)
    # the cap cuts 'é' (2 bytes) in half: the partial character is dropped, not garbled
    assert result.output == "a" * 5000
    # the tail starts on the second byte of 'é': skipped likewise
    assert result.stdout_tail == "b" * 5000 + "END"
    assert result.bytes_out == 10005


async def test_combined_stdout_and_stderr(tmp_path: Path) -> None:
    path = tmp_path / "both.log"
    spec = ProcessSpec(
        argv=["sh", "-c", "echo one; echo two >&2; echo three"],
        stdout_path=path,
        stderr_path=path,
    )
    result = await run_process(spec)
    assert path.read_text() == "one\ntwo\nthree\n"
    assert result.output == "one\ntwo\nthree"
    assert result.stderr_tail == result.stdout_tail == "one\ntwo\nthree\n"
    assert result.bytes_out == 14


async def test_big_output_goes_to_file_not_memory(tmp_path: Path) -> None:
    size = 200_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await run_process(_spec(tmp_path, "head", "-c", str(size), "/dev/zero"))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.exit_code == 0
    assert result.bytes_out == size
    assert (tmp_path / "out" / "stdout.log").stat().st_size == size
    assert after - before < 50 * 1024  # KB
    assert len(result.output) == 65536  # NULs are valid UTF-8; capped at output_cap


async def test_env_and_cwd(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "FLOWTASKD_PROBE": "xyz"}
    spec = _spec(tmp_path, "sh", "-c", 'echo "$FLOWTASKD_PROBE $HOME"; pwd', env=env, cwd=str(work))
    result = await run_process(spec)
    assert result.output.splitlines() == ["xyz ", str(work)]  # HOME not inherited


async def test_env_none_inherits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWTASKD_INHERITED", "yes")
    result = await run_process(_spec(tmp_path, "sh", "-c", "echo $FLOWTASKD_INHERITED"))
    assert result.output == "yes"


# -- resource usage -------------------------------------------------------------------------


async def test_cpu_time_of_busy_loop(tmp_path: Path) -> None:
    code = (
        "import time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end:\n"
        "    sum(range(10000))\n"
    )
    result = await run_process(_spec(tmp_path, PY, "-c", code))
    assert result.exit_code == 0
    assert result.cpu_user + result.cpu_system > 0.25
    assert result.cpu_user > 0.1


async def test_max_rss_of_child(tmp_path: Path) -> None:
    code = "b = b'x' * (100 * 1024 * 1024)"  # written, so resident
    result = await run_process(_spec(tmp_path, PY, "-c", code))
    assert result.exit_code == 0
    assert result.max_rss_kb >= 90 * 1024


# -- timeout and cancellation ---------------------------------------------------------------


async def test_timeout_kills_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; sleep 300"
    spec = _spec(tmp_path, "sh", "-c", script, timeout=0.5, kill_grace=2.0)
    started = time.monotonic()
    result = await run_process(spec)
    assert time.monotonic() - started < 2.5
    assert result.timed_out
    assert result.exit_code is None
    assert result.signal == signal.SIGTERM  # sh died of the TERM, no KILL needed
    grandchild = int(pidfile.read_text())
    await wait_for(lambda: _gone(grandchild), what="the grandchild to die")
    await wait_for(lambda: not _group_members(result.pid), what="the group to die")


async def test_timeout_sweeps_grandchild_that_ignores_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = (
        f"(trap '' TERM; exec sleep 300) & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile};"
        " sleep 300"
    )
    spec = _spec(tmp_path, "sh", "-c", script, timeout=0.3, kill_grace=5.0)
    result = await run_process(spec)
    assert result.signal == signal.SIGTERM  # the leader died of TERM well within the grace
    assert result.duration < 2.0
    grandchild = int(pidfile.read_text())
    await wait_for(lambda: _gone(grandchild), what="the TERM-immune grandchild to die")


async def test_timeout_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap '' TERM; touch {ready}; sleep 300 & wait; sleep 300"
    spec = _spec(tmp_path, "sh", "-c", script, timeout=0.3, kill_grace=0.3)
    result = await run_process(spec)
    assert ready.exists()
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert 0.6 <= result.duration < 3.0
    await wait_for(lambda: not _group_members(result.pid), what="the group to die")


async def test_cancel_kills_group_and_reraises(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 300 & echo $$ $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; sleep 300"
    task = asyncio.create_task(run_process(_spec(tmp_path, "sh", "-c", script, kill_grace=2.0)))
    await wait_for(pidfile.exists, what="the shell to start")
    leader, grandchild = (int(p) for p in pidfile.read_text().split())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ChildProcessError):  # reaped by run_process
        os.waitpid(leader, os.WNOHANG)
    await wait_for(lambda: _gone(grandchild), what="the grandchild to die")
    await wait_for(lambda: not _group_members(leader), what="the group to die")


async def test_cancel_during_grace_still_completes_cleanup(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; sleep 300"
    task = asyncio.create_task(run_process(_spec(tmp_path, "sh", "-c", script, kill_grace=0.5)))
    await wait_for(pidfile.exists, what="the shell to start")
    leader = int(pidfile.read_text())
    started = time.monotonic()
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second cancel during the grace period must not abandon the child
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started >= 0.45  # it waited out the grace, then killed
    with pytest.raises(ChildProcessError):
        os.waitpid(leader, os.WNOHANG)
    await wait_for(lambda: not _group_members(leader), what="the group to die")
    assert not any(p.isdigit() and _is_our_zombie(int(p)) for p in os.listdir("/proc"))


def _is_our_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()


# -- failures -------------------------------------------------------------------------------


async def test_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError) as info:
        await run_process(_spec(tmp_path, "flowtaskd-no-such-command"))
    assert str(info.value) == "command not found: 'flowtaskd-no-such-command'"
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(ExecutionError, match="not executable"):
        await run_process(_spec(tmp_path, str(script)))


async def test_missing_cwd(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ExecutionError, match="working directory"):
        await run_process(_spec(tmp_path, "/bin/true", cwd=missing))


async def test_empty_argv(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match="empty command"):
        await run_process(_spec(tmp_path))


async def test_no_fd_leaks_on_any_path(tmp_path: Path) -> None:
    await run_process(_spec(tmp_path, "/bin/true"))  # the loop's own pidfd set stays open
    before = open_fds()
    await run_process(_spec(tmp_path, "/bin/true"))
    await run_process(_spec(tmp_path, "sleep", "10", timeout=0.05, kill_grace=1.0))
    with pytest.raises(ExecutionError):
        await run_process(_spec(tmp_path, "flowtaskd-no-such-command"))
    task = asyncio.create_task(run_process(_spec(tmp_path, "sleep", "10")))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_fds() == before


async def test_kill_process_group_ignores_missing_group(tmp_path: Path) -> None:
    result = await run_process(_spec(tmp_path, "/bin/true"))
    kill_process_group(result.pid, signal.SIGTERM)  # group is gone: no error


async def test_polling_fallback_without_pidfd(tmp_path: Path) -> None:
    """The watch used when pidfd_open is unavailable tells exit without reaping."""
    loop = asyncio.get_running_loop()
    proc = subprocess.Popen(["sh", "-c", "exit 3"], stdin=subprocess.DEVNULL)
    watch = ExitWatch(proc.pid, loop, use_pidfd=False)
    try:
        async with asyncio.timeout(10):
            await watch.wait()
        _, status = os.waitpid(proc.pid, 0)  # still ours to reap
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watch.close()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3


async def test_many_concurrent_runs(tmp_path: Path) -> None:
    specs = [
        ProcessSpec(["/bin/true"], tmp_path / f"{i}.out", tmp_path / f"{i}.err") for i in range(200)
    ]
    results: list[ProcessResult] = await asyncio.gather(*(run_process(s) for s in specs))
    assert [r.exit_code for r in results] == [0] * 200
    assert len({r.pid for r in results}) == 200
