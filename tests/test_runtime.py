"""``flowtaskd.components.runtime``: secret masking and a process step's outcome."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.runtime import mask_outcome, mask_text, run_argv
from flowtaskd.core.rules import StepStatus


def ctx(tmp_path: Path | None, **kw: object) -> StepContext:
    return StepContext("t", "r", "s", "Command", {}, log_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_mask_text_longest_secret_first_and_empty_ignored() -> None:
    assert mask_text("user=ab pass=abcd", ["ab", "abcd", ""]) == "user=*** pass=***"
    assert mask_text("abcd", ["ab", "abcd"]) == "***"
    assert mask_text("nothing here", []) == "nothing here"


def test_mask_outcome_masks_every_text_it_reports() -> None:
    o = StepOutcome(
        StepStatus.FAILED,
        output="tok=s3cr3t",
        error="bad s3cr3t",
        stdout_tail="s3cr3t\n",
        stderr_tail="x s3cr3t",
        items=[{"file": "s3cr3t"}],
    )
    m = mask_outcome(o, ["s3cr3t"])
    assert (m.output, m.error, m.stdout_tail, m.stderr_tail) == (
        "tok=***",
        "bad ***",
        "***\n",
        "x ***",
    )
    assert m.items == [{"file": "s3cr3t"}]  # items feed later steps: kept as they are
    assert mask_outcome(o, []) is o
    none = StepOutcome(StepStatus.DONE)
    assert mask_outcome(none, ["x"]).output is None


async def test_run_argv_done_with_output_and_log(tmp_path: Path) -> None:
    out = await run_argv(ctx(tmp_path), [sys.executable, "-c", "print('hello')"])
    assert out.status is StepStatus.DONE and out.error is None and out.exit_code == 0
    assert out.output == "hello"
    assert out.log_path == str(tmp_path / "s.1.out")
    assert Path(out.log_path).read_text() == "hello\n"
    assert out.max_rss_kb is not None and out.max_rss_kb > 0


async def test_run_argv_failure_says_the_exit_code_and_last_stderr_line(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('first\\nlast one\\n'); sys.exit(4)"
    out = await run_argv(ctx(tmp_path), [sys.executable, "-c", code])
    assert out.status is StepStatus.FAILED and out.exit_code == 4
    assert out.error == "exit code 4: last one"
    assert out.log_path == str(tmp_path / "s.1.err")  # no stdout: the stderr log


async def test_run_argv_killed_by_a_signal(tmp_path: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    out = await run_argv(ctx(tmp_path), [sys.executable, "-c", code])
    assert out.status is StepStatus.FAILED and out.exit_code is None
    assert out.error == "killed by SIGKILL"


async def test_run_argv_timed_out(tmp_path: Path) -> None:
    code = "import time; time.sleep(30)"
    out = await run_argv(ctx(tmp_path, timeout=0.2, kill_grace=0.2), [sys.executable, "-c", code])
    assert out.status is StepStatus.TIMED_OUT and out.error == "timed out"


async def test_run_argv_masks_secrets(tmp_path: Path) -> None:
    code = "import sys; print('key=hunter2'); sys.exit('bad hunter2')"
    out = await run_argv(ctx(tmp_path, secrets=("hunter2",)), [sys.executable, "-c", code])
    assert out.output == "key=***"
    assert out.error == "exit code 1: bad ***"


async def test_a_process_step_needs_a_log_dir() -> None:
    with pytest.raises(ValueError, match="a process step needs a log_dir"):
        await run_argv(ctx(None), ["true"])
