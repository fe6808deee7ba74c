"""``flowtaskd.execution.local``: attempts run here; a step that cannot start is a failed
outcome, never an exception."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from flowtaskd.components.context import StepContext
from flowtaskd.core.rules import StepStatus
from flowtaskd.execution.local import LocalExecutor, run_component


def ctx(component: str, params: dict[str, Any], tmp_path: Path, **kw: Any) -> StepContext:
    return StepContext("t", "r", "s", component, params, log_dir=tmp_path, **kw)


async def test_runs_a_component_here(tmp_path: Path) -> None:
    executor = LocalExecutor()
    assert executor.name == "local"
    out = await executor.run(
        ctx("Command", {"command": [sys.executable, "-c", "print(1)"]}, tmp_path)
    )
    assert out.status is StepStatus.DONE and out.output == "1"
    await executor.aclose()


async def test_an_unknown_component_is_a_failed_outcome(tmp_path: Path) -> None:
    out = await run_component(ctx("NoSuchThing", {}, tmp_path))
    assert out.status is StepStatus.FAILED
    assert out.error == "unknown component NoSuchThing"


async def test_a_command_that_cannot_start_is_a_masked_failed_outcome(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-program-s3cr3t")
    out = await run_component(ctx("Command", {"command": [missing]}, tmp_path, secrets=("s3cr3t",)))
    assert out.status is StepStatus.FAILED
    assert out.error is not None and "no-such-program-***" in out.error
    assert "s3cr3t" not in out.error
