"""Run one operating-system command for a step: its own process group, output to logs, rusage.

A step's command is spawned with :class:`subprocess.Popen` as the leader of a new session
(so of a new process group), with stdin on ``/dev/null`` and stdout/stderr on pipes that an
:class:`~flowtaskd.process.relay.OutputRelay` moves into log files with ``splice(2)``: the
output never passes through this process's memory, so a step printing a gigabyte costs us
nothing, and a step printing nothing creates no file. We do not let anything else reap the
child: a ``pidfd`` (see :mod:`~flowtaskd.process.exitwatch`) tells us when it has exited (it
stays an unreaped zombie meanwhile, so its pid and process group id cannot be reused), then
``os.wait4`` collects the exit status together with the child's resource usage (CPU time,
peak RSS), which ``asyncio.create_subprocess_exec`` would lose.

Stopping is always done to the whole group: SIGTERM, a grace period, SIGKILL; once the leader
has exited after a timeout or a cancellation the group is SIGKILLed once more so no grandchild
survives. Cancelling the awaiting task runs that clean-up to completion (shielded), reaps the
child and re-raises :class:`asyncio.CancelledError`. Every descriptor opened here is closed
on every path.

After exit, the head of stdout (``output_cap`` bytes) and the tails of both logs are read
back through the relays' descriptors; a few KB per run, so this is done on the loop.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flowtaskd.errors import ExecutionError
from flowtaskd.process.exitwatch import ExitWatch
from flowtaskd.process.relay import OutputRelay

__all__ = ["ProcessResult", "ProcessSpec", "kill_process_group", "run_process"]


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """What to run and where its output goes."""

    argv: Sequence[str]
    stdout_path: str | os.PathLike[str]
    stderr_path: str | os.PathLike[str]  # the same path as stdout_path: one combined file
    env: Mapping[str, str] | None = None  # the full environment; None inherits os.environ
    cwd: str | None = None
    timeout: float | None = None
    kill_grace: float = 5.0  # SIGTERM -> wait this long -> SIGKILL
    output_cap: int = 65536  # bytes of the start of stdout kept as `output`
    tail_bytes: int = 4096  # bytes of the end of stdout / stderr kept as tails


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a command ended, what it printed (bounded) and what it cost."""

    exit_code: int | None  # None if killed by a signal
    signal: int | None  # the terminating signal, if any
    timed_out: bool
    cancelled: bool  # always False from run_process: cancellation re-raises
    output: str
    stdout_tail: str
    stderr_tail: str
    bytes_out: int
    cpu_user: float
    cpu_system: float
    max_rss_kb: int
    duration: float
    pid: int
    stdout_file: str | None = None  # the log files, if the command printed anything
    stderr_file: str | None = None
    output_error: str | None = None  # why some output could not be written, if so


def kill_process_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to every process in group ``pgid``; a group that is gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


async def run_process(spec: ProcessSpec) -> ProcessResult:
    """Run ``spec.argv`` to completion (or timeout) and return how it went.

    Raises :class:`ExecutionError` if the command cannot be started. A non-zero exit, a
    signal or a timeout is a result, not an error.
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    out = OutputRelay(spec.stdout_path, loop)
    err = out
    try:
        if os.fspath(spec.stderr_path) != out.path:
            err = OutputRelay(spec.stderr_path, loop)
        popen = _spawn(spec, out, err)
        try:
            status, usage, timed_out = await _wait(popen, spec, loop)
        finally:
            out.finish()
            err.finish()
        duration = time.monotonic() - started
        return _result(spec, popen.pid, status, usage, timed_out, duration, out, err)
    finally:
        out.close()
        err.close()


async def _wait(
    popen: subprocess.Popen[bytes], spec: ProcessSpec, loop: asyncio.AbstractEventLoop
) -> tuple[int, resource.struct_rusage, bool]:
    """Wait for the child (stopping its group on timeout or cancel); reap it on every path."""
    pid = popen.pid
    watch = ExitWatch(pid, loop)
    timed_out = False
    try:
        try:
            if spec.timeout is None:
                await watch.wait()
            else:
                async with asyncio.timeout(spec.timeout):
                    await watch.wait()
        except TimeoutError:
            timed_out = True
            await _terminate(pid, watch, spec.kill_grace)
        except asyncio.CancelledError:
            await _terminate_shielded(pid, watch, spec.kill_grace)
            raise  # the finally below sweeps the group and reaps the child
        status, usage = _reap(popen)
        return status, usage, timed_out
    finally:
        watch.close()
        if popen.returncode is None:  # cancelled, or an unexpected error: never leave a zombie
            kill_process_group(pid, signal.SIGKILL)
            with contextlib.suppress(ExecutionError):
                _reap(popen)


_SILENT = ("", "", "")  # output, stdout tail, stderr tail of a step that printed nothing


def _result(
    spec: ProcessSpec,
    pid: int,
    status: int,
    usage: resource.struct_rusage,
    timed_out: bool,
    duration: float,
    out: OutputRelay,
    err: OutputRelay,
) -> ProcessResult:
    bytes_out = out.size if err is out else out.size + err.size
    if bytes_out == 0:
        output, stdout_tail, stderr_tail = _SILENT
    else:
        head, out_tail = _read_ends(out, spec.output_cap, spec.tail_bytes)
        err_tail = out_tail if err is out else _read_ends(err, 0, spec.tail_bytes)[1]
        output = _decode_head(head, truncated=out.size > len(head)).strip()
        stdout_tail = _decode_tail(out_tail, truncated=out.size > len(out_tail))
        stderr_tail = _decode_tail(err_tail, truncated=err.size > len(err_tail))
    return ProcessResult(
        exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        timed_out=timed_out,
        cancelled=False,
        output=output,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
        bytes_out=bytes_out,
        cpu_user=usage.ru_utime,
        cpu_system=usage.ru_stime,
        max_rss_kb=usage.ru_maxrss,
        duration=duration,
        pid=pid,
        stdout_file=out.path if out.created else None,
        stderr_file=err.path if err.created else None,
        output_error=out.error or err.error,
    )


# -- spawning -------------------------------------------------------------------------------


def _spawn(spec: ProcessSpec, out: OutputRelay, err: OutputRelay) -> subprocess.Popen[bytes]:
    argv = list(spec.argv)
    if not argv:
        raise ExecutionError("empty command")
    env = dict(spec.env) if spec.env is not None else None
    try:
        popen = subprocess.Popen(
            argv,
            stdin=_devnull(),
            stdout=out.child_end,
            stderr=err.child_end,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise ExecutionError(_spawn_failure(argv[0], spec.cwd, exc)) from None
    except ValueError as exc:  # e.g. an embedded NUL byte in an argument
        raise ExecutionError(f"invalid command {argv[0]!r}: {exc}") from None
    # our copies of the write ends are closed only once the child has exited (finish):
    # the moments after a spawn are the child's, and a short step's critical path
    return popen


_DEVNULL: list[int] = []


def _devnull() -> int:
    """One read-only ``/dev/null`` descriptor for every child's stdin (opened once)."""
    if not _DEVNULL:
        _DEVNULL.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _DEVNULL[0]


def _spawn_failure(command: str, cwd: str | None, exc: OSError) -> str:
    about_cwd = cwd is not None and exc.filename == cwd and exc.filename != command
    if about_cwd:
        return f"cannot enter working directory {cwd!r}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {command!r}"
    if isinstance(exc, PermissionError):
        return f"command not executable: {command!r} (permission denied)"
    return f"cannot run {command!r}: {exc.strerror or exc}"


# -- waiting, stopping, reaping -------------------------------------------------------------


async def _terminate(pgid: int, watch: ExitWatch, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` seconds, SIGKILL it; then sweep the survivors."""
    kill_process_group(pgid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await watch.wait()
    except TimeoutError:
        kill_process_group(pgid, signal.SIGKILL)
        await watch.wait()
    # The leader is a zombie we have not reaped, so pgid still names this group: kill any
    # grandchild that ignored SIGTERM or outlived its parent.
    kill_process_group(pgid, signal.SIGKILL)


async def _terminate_shielded(pgid: int, watch: ExitWatch, grace: float) -> None:
    """Run :func:`_terminate` to the end even if we are cancelled again meanwhile."""
    cleanup = asyncio.ensure_future(_terminate(pgid, watch, grace))
    while not cleanup.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(cleanup)
    if not cleanup.cancelled():
        cleanup.result()  # surface an unexpected error from the clean-up


def _reap(popen: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """Collect the exited child's status and rusage; tell Popen it is done (no warning)."""
    try:
        _, status, usage = os.wait4(popen.pid, 0)
    except ChildProcessError:
        popen.returncode = -1
        raise ExecutionError(
            f"process {popen.pid} was reaped by someone else; its exit status is lost"
        ) from None
    popen.returncode = os.waitstatus_to_exitcode(status)
    return status, usage


# -- reading the output back ----------------------------------------------------------------


def _read_ends(relay: OutputRelay, head_bytes: int, tail_bytes: int) -> tuple[bytes, bytes]:
    """The first ``head_bytes`` and the last ``tail_bytes`` of what the relay wrote."""
    size = relay.size
    head = relay.pread(min(head_bytes, size), 0)
    if size <= len(head):
        return head, head[-tail_bytes:] if tail_bytes > 0 else b""
    return head, relay.pread(tail_bytes, max(0, size - tail_bytes))


def _decode_head(data: bytes, *, truncated: bool) -> str:
    """Decode; if the data was cut, drop an incomplete character at the end."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=not truncated)


def _decode_tail(data: bytes, *, truncated: bool) -> str:
    """Decode; if the data was cut, skip the continuation bytes of a character at the start."""
    if truncated:
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace")
