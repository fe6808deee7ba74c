"""The default executor: runs step attempts in this process with asyncio.

Process steps run as child processes in their own process groups (see ``process.py``);
cancelling the awaiting task stops the group. A step that cannot even start (command not
found, unknown component) becomes a failed outcome, never an exception.
"""

from __future__ import annotations

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.registry import get_component
from flowtaskd.components.runtime import mask_outcome
from flowtaskd.core.rules import StepStatus
from flowtaskd.errors import ExecutionError

__all__ = ["LocalExecutor", "run_component"]


async def run_component(ctx: StepContext) -> StepOutcome:
    """Run one attempt of ``ctx`` here; failures of the step come back as its outcome."""
    cls = get_component(ctx.component)
    if cls is None:
        return StepOutcome(StepStatus.FAILED, error=f"unknown component {ctx.component}")
    try:
        return await cls(ctx.params).run(ctx)
    except ExecutionError as exc:
        return mask_outcome(StepOutcome(StepStatus.FAILED, error=str(exc)), ctx.secrets)


class LocalExecutor:
    """Runs every step in this process's event loop."""

    name = "local"

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await run_component(ctx)

    async def aclose(self) -> None:
        return None
