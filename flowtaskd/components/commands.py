"""Components that run code: ``Command`` (an argv, no shell), ``RunShell`` (explicitly
``/bin/sh -c``) and ``Python`` (a ``package.module:function``)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from flowtaskd.components.base import Component
from flowtaskd.core.options import Argv, StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "CommandComponent", "PythonComponent", "RunShellComponent"]

_FUNCTION_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class CommandParams(StrictModel):
    command: Argv = Field(description="argv list, or a string split like a shell would (shlex).")
    output_cap: int = Field(default=65536, ge=0, description="Bytes of stdout kept as output.")


class RunShellParams(StrictModel):
    command: str | None = Field(default=None, min_length=1, description="A /bin/sh -c script.")
    commands: list[str] | None = Field(
        default=None, min_length=1, description="Upstream: run in order, stop at a failure."
    )
    output_cap: int = Field(default=65536, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if (self.command is None) == (self.commands is None):
            raise ValueError("give `command` (a script) or `commands` (a list), once")
        return self


def shell_script(params: Mapping[str, Any]) -> str:
    """The script of a ``RunShell`` step: ``commands`` run one after the other, the first
    that fails ends the script with its exit status (upstream's list, without its quirk
    of running only the first)."""
    if params.get("command") is not None:
        return str(params["command"])
    lines = []
    for command in params.get("commands") or ():
        lines.append(str(command))
        lines.append('_rc=$?; [ "$_rc" -eq 0 ] || exit "$_rc"')
    return "\n".join(lines)


class PythonParams(StrictModel):
    function: str = Field(description="'package.module:function' to call.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")

    @field_validator("function")
    @classmethod
    def _function_ok(cls, value: str) -> str:
        if not _FUNCTION_RE.match(value):
            raise ValueError("expected 'package.module:function'")
        return value


class CommandComponent(Component):
    name = "Command"
    Params: ClassVar[type[StrictModel]] = CommandParams
    remote = True
    summary = "Run an operating-system command (argv, no shell)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.runtime import run_argv  # noqa: PLC0415 - keep validation pure

        command = ctx.params["command"]
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        return await run_argv(ctx, argv, int(ctx.params.get("output_cap", 65536)))


class RunShellComponent(Component):
    name = "RunShell"
    Params: ClassVar[type[StrictModel]] = RunShellParams
    remote = True
    summary = "Run a shell script through /bin/sh -c."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.runtime import run_argv  # noqa: PLC0415 - keep validation pure

        argv = ["/bin/sh", "-c", shell_script(ctx.params)]
        return await run_argv(ctx, argv, int(ctx.params.get("output_cap", 65536)))


class PythonComponent(Component):
    name = "Python"
    Params: ClassVar[type[StrictModel]] = PythonParams
    remote = True
    summary = "Call a Python function; coroutine functions are awaited."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure
        from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415 - keep validation pure

        target = str(ctx.params["function"])
        kwargs = dict(ctx.params.get("kwargs") or {})
        try:
            func = load_function(target)
        except (ImportError, AttributeError, ValueError) as exc:
            return StepOutcome(StepStatus.FAILED, error=f"cannot load {target}: {exc}")
        try:
            async with asyncio.timeout(ctx.timeout):
                if inspect.iscoroutinefunction(func):
                    value = await func(**kwargs)
                else:
                    # a thread cannot be killed: on timeout the call is abandoned, not stopped
                    value = await asyncio.to_thread(func, **kwargs)
        except TimeoutError:
            return StepOutcome(StepStatus.TIMED_OUT, error=f"{target} timed out")
        except Exception as exc:  # the step's own failure, reported as its result
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
            error = f"{type(exc).__name__}: {exc}{where}"
            return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
        return mask_outcome(StepOutcome(StepStatus.DONE, output=_as_text(value)), ctx.secrets)


def load_function(target: str) -> Any:
    """``"package.module:function"`` (or ``"module:Class.method"``) -> the callable."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{target} is not callable")
    return obj


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


COMPONENTS: list[type[Component]] = [CommandComponent, RunShellComponent, PythonComponent]
