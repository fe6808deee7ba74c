"""Tests for flowtaskd.execution.dask: a real LocalCluster with two worker processes.

Every test connects its own executor (its own asynchronous client) to one module-wide
cluster; the scheduler-loss tests run their own in-process scheduler on a fixed port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from distributed import Client, Scheduler, Worker

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.core.rules import StepStatus
from flowtaskd.errors import ExecutionError
from flowtaskd.execution.dask import DaskExecutor
from flowtaskd.execution.dask_worker import NOT_RERUN_ERROR, run_on_worker
from flowtaskd.execution.local import LocalExecutor
from flowtaskd.process.spawn import kill_process_group
from tests.conftest import pid_alive, wait_for
from tests.dask_cluster import local_cluster

pytestmark = [pytest.mark.dask]

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with local_cluster(n_workers=2) as addr:
        yield addr


@pytest.fixture
async def executor(address: str) -> AsyncIterator[DaskExecutor]:
    ex = DaskExecutor(address, connect_timeout=5.0)
    await ex.start()
    try:
        yield ex
    finally:
        await ex.aclose()


def ctx(tmp_path: Path, component: str, params: dict[str, Any], **kw: Any) -> StepContext:
    base: dict[str, Any] = {
        "task": "t",
        "run_id": "r1",
        "step_id": "s",
        "component": component,
        "params": params,
        "env": ENV,
        "log_dir": tmp_path / "logs",
    }
    base.update(kw)
    return StepContext(**base)


def sh(script: str) -> dict[str, Any]:
    return {"command": ["/bin/sh", "-c", script]}


async def worker_addresses(address: str) -> set[str]:
    async with Client(address, asynchronous=True, set_as_default=False) as c:  # type: ignore[no-untyped-call]
        return set(await c.run(os.getpid))


def parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- what a step gives back -------------------------------------------------------------------


async def test_command_runs_on_a_worker_with_the_local_executors_fields(
    executor: DaskExecutor, address: str, tmp_path: Path
) -> None:
    c = ctx(tmp_path, "Command", sh("echo hello; echo oops >&2; head -c 100000 /dev/zero | wc -c"))
    remote = await executor.run(c)
    here = await LocalExecutor().run(ctx(tmp_path / "here", c.component, dict(c.params)))

    assert remote.status is StepStatus.DONE and remote.exit_code == 0
    assert remote.output == "hello\n100000"
    assert remote.stderr_tail == "oops\n"
    assert remote.worker in await worker_addresses(address)
    assert remote.cpu_user is not None and remote.cpu_system is not None
    assert remote.max_rss_kb is not None and remote.max_rss_kb > 0
    assert remote.bytes_out == len("hello\n100000\noops\n")
    assert remote.log_path == str(tmp_path / "logs" / "s.1.out")
    assert Path(remote.log_path).read_text() == "hello\n100000\n"
    for field in ("status", "output", "exit_code", "error", "stdout_tail", "stderr_tail"):
        assert getattr(remote, field) == getattr(here, field), field
    assert here.worker is None


async def test_failing_exit_code(executor: DaskExecutor, tmp_path: Path) -> None:
    out = await executor.run(ctx(tmp_path, "Command", sh("echo broken >&2; exit 3")))
    assert out.status is StepStatus.FAILED
    assert out.exit_code == 3
    assert out.error == "exit code 3: broken"


async def test_run_shell_with_env(executor: DaskExecutor, tmp_path: Path) -> None:
    c = ctx(
        tmp_path,
        "RunShell",
        {"command": "echo $GREETING | tr a-z A-Z"},
        env={**ENV, "GREETING": "hi"},
    )
    out = await executor.run(c)
    assert out.status is StepStatus.DONE
    assert out.output == "HI"


async def test_python_steps_run_in_the_worker_process(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    added, who, failed, napped = await asyncio.gather(
        executor.run(
            ctx(
                tmp_path, "Python", {"function": "tests.dask_funcs:add", "kwargs": {"a": 2, "b": 3}}
            )
        ),
        executor.run(ctx(tmp_path, "Python", {"function": "tests.dask_funcs:whoami"})),
        executor.run(
            ctx(
                tmp_path,
                "Python",
                {"function": "tests.dask_funcs:fail", "kwargs": {"message": "nope"}},
            )
        ),
        executor.run(
            ctx(
                tmp_path,
                "Python",
                {"function": "tests.dask_funcs:nap", "kwargs": {"seconds": 5}},
                timeout=0.3,
            )
        ),
    )
    assert added.status is StepStatus.DONE and added.output == "5"
    assert who.status is StepStatus.DONE and who.output is not None
    assert f'"pid": {os.getpid()}' not in who.output  # not this process: a worker
    assert failed.status is StepStatus.FAILED and failed.error is not None
    assert failed.error.startswith("ValueError: nope")
    assert napped.status is StepStatus.TIMED_OUT


async def test_a_timed_out_sync_python_step_is_abandoned_not_waited_for(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    params = {"function": "tests.dask_funcs:block", "kwargs": {"seconds": 8}}
    out = await executor.run(ctx(tmp_path, "Python", params, timeout=0.3))
    assert out.status is StepStatus.TIMED_OUT
    assert loop.time() - began < 5


async def test_a_step_that_cannot_be_sent_fails(executor: DaskExecutor, tmp_path: Path) -> None:
    params = {"command": ["true"], "lock": threading.Lock()}
    out = await executor.run(ctx(tmp_path, "Command", params))
    assert out.status is StepStatus.FAILED
    assert out.error is not None and out.error.startswith("dask: cannot submit the step")


async def test_non_remote_components_run_here(address: str, tmp_path: Path) -> None:
    ex = DaskExecutor(address, connect_timeout=5.0, local_components=frozenset({"RunShell"}))
    await ex.start()
    try:
        dummy = await ex.run(ctx(tmp_path, "Dummy", {"message": "hi"}))
        shell = await ex.run(ctx(tmp_path, "RunShell", {"command": "echo $PPID"}))
        unknown = await ex.run(ctx(tmp_path, "Nope", {}))
    finally:
        await ex.aclose()
    assert dummy.status is StepStatus.DONE and dummy.output == "hi" and dummy.worker is None
    assert shell.worker is None and shell.output == str(os.getpid())
    assert unknown.status is StepStatus.FAILED and unknown.error == "unknown component Nope"


async def test_secrets_are_masked_before_they_leave_the_worker(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    secret = "s3cr3t-t0ken"
    c = ctx(
        tmp_path,
        "Command",
        sh(f"echo token={secret}; echo bad {secret} >&2; exit 1"),
        secrets=(secret,),
    )
    out = await executor.run(c)
    assert out.status is StepStatus.FAILED
    assert out.output == "token=***"
    assert out.stderr_tail == "bad ***\n"
    assert out.error == "exit code 1: bad ***"
    assert secret not in repr(out)


async def test_unwritable_log_dir_falls_back_to_the_workers_temp_dir(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    out = await executor.run(ctx(tmp_path, "Command", sh("echo hi"), log_dir=Path("/proc/no/logs")))
    assert out.status is StepStatus.DONE and out.output == "hi"
    expected = Path(tempfile.gettempdir(), "flowtaskd-worker-logs", "proc", "no", "logs", "s.1.out")
    assert out.log_path == str(expected)
    assert expected.read_text() == "hi\n"


async def test_two_identical_submissions_both_run(executor: DaskExecutor, tmp_path: Path) -> None:
    lines = tmp_path / "lines"
    c = ctx(tmp_path, "RunShell", {"command": f"echo ran >> {lines}"})
    first, second = await asyncio.gather(executor.run(c), executor.run(c))
    assert first.ok and second.ok
    assert lines.read_text() == "ran\nran\n"


# -- stopping a step --------------------------------------------------------------------------


async def test_timeout_kills_the_process_on_the_worker(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    c = ctx(tmp_path, "RunShell", {"command": f"echo $$ > {pidfile}; exec sleep 300"}, timeout=0.5)
    out = await executor.run(c)
    assert out.status is StepStatus.TIMED_OUT
    pid = int(pidfile.read_text())
    assert not pid_alive(pid)


async def test_cancel_from_the_daemon_kills_the_process_on_the_worker(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    c = ctx(tmp_path, "RunShell", {"command": f"echo $$ > {pidfile}; exec sleep 300"})
    task = asyncio.create_task(executor.run(c))
    await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
    pid = int(pidfile.read_text())
    assert pid_alive(pid) and parent_pid(pid) != os.getpid()  # it runs under a worker
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not pid_alive(pid)  # as locally: the cancelled run returns once the group is gone
    finally:
        kill_process_group(pid, signal.SIGKILL)


def _scheduler_state(dask_scheduler: Any) -> dict[str, Any]:
    ext = dask_scheduler.extensions["events"]
    return {
        "tasks": list(dask_scheduler.tasks),
        "flags": [n for n in ext._events if ext._events[n].is_set()],
    }


async def test_cancelling_a_step_no_worker_has_started(address: str, tmp_path: Path) -> None:
    ex = DaskExecutor(address, connect_timeout=5.0)  # no resource_timeout: it would wait forever
    await ex.start()
    c = ctx(
        tmp_path, "RunShell", {"command": f"touch {tmp_path / 'ran'}"}, resources={"unobtainium": 1}
    )
    async with Client(address, asynchronous=True, set_as_default=False) as client:  # type: ignore[no-untyped-call]

        async def state() -> dict[str, Any]:
            return dict(await client.run_on_scheduler(_scheduler_state))

        try:
            task = asyncio.create_task(ex.run(c))
            await wait_for(
                lambda: holds(
                    state, lambda st: any(k.startswith("flowtaskd-t-r1-s-1-") for k in st["tasks"])
                )
            )
            began = asyncio.get_running_loop().time()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert asyncio.get_running_loop().time() - began < 2  # nothing to wait for
            await wait_for(lambda: holds(state, lambda st: not st["tasks"]))
            assert any(f.startswith("flowtaskd-cancel-") for f in (await state())["flags"])
        finally:
            await ex.aclose()
        assert not any(f.startswith("flowtaskd-") for f in (await state())["flags"])  # swept
    assert not (tmp_path / "ran").exists()


async def holds(get: Any, cond: Any) -> bool:
    """Whether ``cond`` holds of what ``get()`` gives (a :func:`wait_for` condition)."""
    return bool(cond(await get()))


async def test_a_worker_dying_mid_step_fails_the_attempt_and_does_not_rerun_it(
    executor: DaskExecutor, address: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    c = ctx(tmp_path, "RunShell", {"command": f"echo $$ >> {runs}; exec sleep 30"})
    task = asyncio.create_task(executor.run(c))
    await wait_for(lambda: runs.exists() and runs.read_text().strip(), timeout=10)
    pid = int(runs.read_text())
    worker_pid = parent_pid(pid)
    try:
        assert worker_pid not in (os.getpid(), 1)
        os.kill(worker_pid, signal.SIGKILL)
        out = await asyncio.wait_for(task, timeout=20)
    finally:
        kill_process_group(pid, signal.SIGKILL)  # a SIGKILLed worker cannot stop its step
    assert out.status is StepStatus.FAILED
    assert out.error is not None and out.error.startswith("worker died mid-step (tcp://127.0.0.1:")
    assert out.error.endswith(" lost)")
    assert runs.read_text().split() == [str(pid)]
    # the nanny brings the worker back; the cluster keeps working
    await wait_for_workers(address, 2)
    assert (await executor.run(ctx(tmp_path, "Command", sh("echo back")))).output == "back"


@pytest.fixture(scope="module")
def rerunning_address() -> Iterator[str]:
    """A cluster that re-runs a task whose worker died, as Dask does by default."""
    with local_cluster(n_workers=2, threads_per_worker=1, allowed_failures=3) as addr:
        yield addr


async def test_a_scheduler_rerun_after_a_worker_death_is_refused(
    rerunning_address: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    c = ctx(tmp_path, "RunShell", {"command": f"echo $$ >> {runs}; exec sleep 30"})
    ex = DaskExecutor(rerunning_address, connect_timeout=5.0)
    await ex.start()
    try:
        task = asyncio.create_task(ex.run(c))
        await wait_for(lambda: runs.exists() and runs.read_text().strip(), timeout=10)
        pid = int(runs.read_text())
        try:
            os.kill(parent_pid(pid), signal.SIGKILL)
            out = await asyncio.wait_for(task, timeout=20)
        finally:
            kill_process_group(pid, signal.SIGKILL)
    finally:
        await ex.aclose()
    assert out.status is StepStatus.FAILED
    assert out.error == NOT_RERUN_ERROR  # the other worker got it again, and said no
    assert runs.read_text().split() == [str(pid)]


async def wait_for_workers(address: str, n: int) -> None:
    async with Client(address, asynchronous=True, set_as_default=False) as c:  # type: ignore[no-untyped-call]
        await c.wait_for_workers(n, timeout=20)


async def test_a_second_start_of_the_same_attempt_is_refused(address: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    c = ctx(tmp_path, "RunShell", {"command": f"echo ran >> {runs}"})
    async with Client(address, asynchronous=True, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        first = await client.submit(run_on_worker, c, "same-key", key="k1", pure=False)
        second = await client.submit(run_on_worker, c, "same-key", key="k2", pure=False)
        await client.scheduler.event_clear(name="flowtaskd-started-same-key")
    assert isinstance(first, StepOutcome) and first.ok
    assert isinstance(second, StepOutcome) and second.status is StepStatus.FAILED
    assert second.error == NOT_RERUN_ERROR
    assert runs.read_text() == "ran\n"


# -- resources --------------------------------------------------------------------------------


async def test_resources_pick_a_worker_that_has_them(address: str, tmp_path: Path) -> None:
    ex = DaskExecutor(address, connect_timeout=5.0, resource_timeout=0.5)
    await ex.start()
    try:
        async with Worker(address, resources={"gpu": 1}, nthreads=1) as w:
            gpu = await ex.run(ctx(tmp_path, "Command", sh("echo on-gpu"), resources={"gpu": 1}))
            tpu = await ex.run(ctx(tmp_path, "Command", sh("echo never"), resources={"tpu": 1}))
            gpu_address = w.address
    finally:
        await ex.aclose()
    assert gpu.status is StepStatus.DONE and gpu.output == "on-gpu"
    assert gpu.worker == gpu_address
    assert tpu.status is StepStatus.FAILED
    assert tpu.error is not None and "no dask worker" in tpu.error and "tpu" in tpu.error


# -- the scheduler going away -----------------------------------------------------------------


async def test_start_against_an_unreachable_scheduler_fails_clearly() -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    ex = DaskExecutor(addr, connect_timeout=1.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ExecutionError, match=f"dask scheduler at {addr} unreachable"):
        await ex.start()
    assert loop.time() - began < 5


async def test_waiting_executor_starts_without_its_scheduler_and_steps_wait(tmp_path: Path) -> None:
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    ex = DaskExecutor(addr, connect_timeout=1.0, on_unreachable="wait")
    await ex.start()
    try:
        assert ex.unreachable is not None and ex.unreachable.startswith(f"dask scheduler at {addr}")
        step = asyncio.create_task(ex.run(ctx(tmp_path, "Command", sh("echo late"))))
        await wait_for(lambda: ex._attempts >= 2, timeout=10)  # the step has tried, and waits
        assert not step.done()
        async with (
            Scheduler(host="127.0.0.1", port=port, dashboard_address="127.0.0.1:0"),
            Worker(addr, nthreads=1),
        ):
            out = await asyncio.wait_for(step, timeout=30)
            assert ex.unreachable is None
        assert out.status is StepStatus.DONE and out.output == "late"
    finally:
        await ex.aclose()


async def test_scheduler_lost_then_back(tmp_path: Path) -> None:
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    step = ctx(tmp_path, "Command", sh("echo up"))

    async def cluster() -> tuple[Scheduler, Worker]:
        s = await Scheduler(host="127.0.0.1", port=port, dashboard_address="127.0.0.1:0")
        w = await Worker(addr, nthreads=1)
        return s, w

    s, w = await cluster()
    failing = DaskExecutor(addr, connect_timeout=1.0)
    waiting = DaskExecutor(addr, connect_timeout=1.0, on_unreachable="wait")
    await failing.start()
    await waiting.start()
    try:
        assert (await failing.run(step)).output == "up"
        await w.close()
        await s.close()

        down = await failing.run(step)
        assert down.status is StepStatus.FAILED
        assert down.error is not None and down.error.startswith(
            f"dask scheduler at {addr} unreachable"
        )

        patient = asyncio.create_task(waiting.run(step))
        await wait_for(lambda: waiting.unreachable, timeout=10)
        assert not patient.done()
        s, w = await cluster()
        assert (await asyncio.wait_for(patient, timeout=30)).output == "up"
        again = await failing.run(step)
        assert again.status is StepStatus.DONE and again.output == "up"
    finally:
        await failing.aclose()
        await waiting.aclose()
        await w.close()
        await s.close()


def test_the_executor_must_be_told_where_to_run() -> None:
    with pytest.raises(ExecutionError):
        DaskExecutor()
    with pytest.raises(ExecutionError, match="unknown dask local option"):
        DaskExecutor(local={"n_wrokers": 2})
    with pytest.raises(ExecutionError, match="on_unreachable"):
        DaskExecutor("tcp://127.0.0.1:1", on_unreachable="retry")
    assert DaskExecutor.name == "dask"
