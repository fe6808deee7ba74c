"""``Dummy`` (does nothing, or waits, or fails on purpose), ``PrintMessage`` (logs a
message), ``RunTask`` (a sub-run) and ``SubTask`` (upstream's name for it, by ``program``
and ``task``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

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


class PrintMessageParams(StrictModel):
    message: str = ""
    color: str | None = None
    level: Literal["INFO", "DEBUG", "WARN", "ERROR", "CRITICAL"] = "INFO"
    condition: str | None = Field(
        default=None, description="Accepted as upstream does, and likewise not evaluated."
    )
    first: str | None = None
    last: str | None = None


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


_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARN": "warning", "ERROR": "error"}


class PrintMessageComponent(Component):
    name = "PrintMessage"
    Params: ClassVar[type[StrictModel]] = PrintMessageParams
    summary = "Log a message (placeholders filled) at a level; the message is the output."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import structlog  # noqa: PLC0415 - keep validation pure

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

        message = str(ctx.params.get("message") or "")
        level = _LEVELS.get(str(ctx.params.get("level", "INFO")), "critical")
        log = structlog.get_logger("flowtaskd.step")
        getattr(log, level)("print_message", message=message, step=ctx.step_id, task=ctx.task)
        return StepOutcome(StepStatus.DONE, output=message)


COMPONENTS: list[type[Component]] = [
    DummyComponent,
    RunTaskComponent,
    SubTaskComponent,
    PrintMessageComponent,
]
