"""``Dummy`` (does nothing, or waits, or fails on purpose), ``RunTask`` (a sub-run) and
``SubTask`` (upstream's name for it, by ``program`` and ``task``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, Field

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
    program: str | None = Field(
        default=None, description="Upstream's program: <tasks root>/<program>/tasks/<task>."
    )
    params: dict[str, Any] = Field(default_factory=dict)


class SubTaskParams(RunTaskParams):
    """Upstream's ``SubTask``: other keys become the sub-run's params, as upstream's do."""

    model_config = ConfigDict(extra="allow", frozen=True)
    pass_input: bool = Field(default=False, description="Accepted; outputs flow by placeholders.")
    conditions: dict[str, Any] | None = None


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
            return StepOutcome(StepStatus.FAILED, error=f"{self.name} needs the local executor")
        p = dict(ctx.params)
        params = dict(p.pop("params", None) or {})
        for key in ("task", "program", "pass_input", "conditions"):
            p.pop(key, None)
        params.update(p)  # SubTask: every other key is a param of the sub-run
        program = ctx.params.get("program")
        return await ctx.runtime(str(ctx.params["task"]), params, program)


class SubTaskComponent(RunTaskComponent):
    name = "SubTask"
    Params: ClassVar[type[StrictModel]] = SubTaskParams
    summary = "Upstream's name for RunTask: run program/task as a sub-run and wait for it."


COMPONENTS: list[type[Component]] = [
    DummyComponent,
    RunTaskComponent,
    SubTaskComponent,
]
