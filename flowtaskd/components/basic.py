"""``Dummy`` (does nothing, or waits, or fails on purpose) and ``RunTask`` (a sub-run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from flowtaskd.components.base import Component
from flowtaskd.core.options import Duration, StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS"]


class DummyParams(StrictModel):
    message: str | None = None
    sleep: Duration = Field(default=0.0, description="Seconds to wait before finishing.")
    fail: bool = Field(default=False, description="Fail on purpose (for testing flows).")


class RunTaskParams(StrictModel):
    task: str = Field(description="A task file path (relative to this file) or a library name.")
    params: dict[str, Any] = Field(default_factory=dict)


class DummyComponent(Component):
    name = "Dummy"
    Params: ClassVar[type[StrictModel]] = DummyParams
    summary = "Do nothing (optionally log a message, wait, or fail)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

        p = ctx.params
        wait = float(p.get("sleep") or 0.0)
        if wait:
            try:
                async with asyncio.timeout(ctx.timeout):
                    await asyncio.sleep(wait)
            except TimeoutError:
                return StepOutcome(StepStatus.TIMED_OUT, error="timed out")
        message = p.get("message")
        if p.get("fail"):
            return StepOutcome(StepStatus.FAILED, output=message, error=message or "failed")
        return StepOutcome(StepStatus.DONE, output=message)


class RunTaskComponent(Component):
    name = "RunTask"
    Params: ClassVar[type[StrictModel]] = RunTaskParams
    summary = "Run another task as a sub-run and wait for it."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

        if ctx.runtime is None:
            return StepOutcome(StepStatus.FAILED, error="RunTask needs the local executor")
        return await ctx.runtime(str(ctx.params["task"]), dict(ctx.params.get("params") or {}))


COMPONENTS: list[type[Component]] = [DummyComponent, RunTaskComponent]
