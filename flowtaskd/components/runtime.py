"""Shared pieces of component ``run`` methods: process outcomes and secret masking."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import replace

import structlog

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.core.rules import StepStatus
from flowtaskd.process.spawn import ProcessResult, ProcessSpec, run_process

_log = structlog.get_logger("flowtaskd.step")

__all__ = ["mask_outcome", "mask_text", "run_argv"]


def mask_text(text: str, secrets: Sequence[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text


def mask_outcome(outcome: StepOutcome, secrets: Sequence[str]) -> StepOutcome:
    """The outcome with every secret value replaced by ``***`` in what it reports."""
    if not secrets:
        return outcome
    items = outcome.items
    return replace(
        outcome,
        output=mask_text(outcome.output, secrets) if outcome.output else outcome.output,
        error=mask_text(outcome.error, secrets) if outcome.error else outcome.error,
        stdout_tail=mask_text(outcome.stdout_tail, secrets),
        stderr_tail=mask_text(outcome.stderr_tail, secrets),
        items=items,
    )


def _log_paths(ctx: StepContext) -> tuple[str, str]:
    if ctx.log_dir is None:
        raise ValueError("a process step needs a log_dir")
    stem = os.path.join(ctx.log_dir, ctx.log_stem)
    return stem + ".out", stem + ".err"


async def run_argv(ctx: StepContext, argv: Sequence[str], output_cap: int = 65536) -> StepOutcome:
    """Run ``argv`` as the step's process (own process group, output to log files)."""
    out, err = _log_paths(ctx)
    spec = ProcessSpec(
        argv=list(argv),
        stdout_path=out,
        stderr_path=err,
        env=ctx.env,
        cwd=ctx.cwd,
        timeout=ctx.timeout,
        kill_grace=ctx.kill_grace,
        output_cap=output_cap,
    )
    result = await run_process(spec)
    return mask_outcome(_outcome(result), ctx.secrets)


def _outcome(r: ProcessResult) -> StepOutcome:
    if r.timed_out:
        status, error = StepStatus.TIMED_OUT, "timed out"
    elif r.exit_code == 0:
        status, error = StepStatus.DONE, None
    elif r.signal is not None:
        status, error = StepStatus.FAILED, f"killed by {signal.Signals(r.signal).name}"
    else:
        status, error = StepStatus.FAILED, f"exit code {r.exit_code}"
    if error and r.stderr_tail and status is StepStatus.FAILED:
        last = r.stderr_tail.strip().splitlines()
        if last:
            error += f": {last[-1][:300]}"
    stderr_tail = r.stderr_tail
    if r.output_error:  # the step ran; what it printed could not all be kept
        _log.warning("output_lost", error=r.output_error)
        stderr_tail += f"\n[flowtaskd] {r.output_error}\n"
    # the log a user opens: stdout's, else stderr's; none when the step printed nothing
    log_file = r.stdout_file or r.stderr_file
    return StepOutcome(
        status=status,
        output=r.output,
        exit_code=r.exit_code,
        error=error,
        stdout_tail=r.stdout_tail,
        stderr_tail=stderr_tail,
        cpu_user=r.cpu_user,
        cpu_system=r.cpu_system,
        max_rss_kb=r.max_rss_kb,
        bytes_out=r.bytes_out,
        log_path=log_file,
    )
