"""What a component is: a small class with a parameter model and one async ``run``.

A task file's step ``- Command: {command: [echo, hi]}`` names the component ``Command``;
its parameters are validated by ``Command.Params`` (unknown keys are errors) together with
the options every step accepts (:class:`~flowtaskd.core.options.StepOptions`).

Validating a task file imports the component modules (for their ``Params``), and
validation is pure: a component module imports what only ``run`` needs (``asyncio``,
``flowtaskd.execution``) inside ``run``, or under ``TYPE_CHECKING`` for annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from flowtaskd.core.options import NoParams, StrictModel

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["Component", "NoParams"]


class Component:
    """Base class of every step kind.

    Subclasses set ``Params`` and implement ``run``. ``iterator`` components (``FileList``)
    produce the items a group fans out over; ``remote`` components may run on a remote
    executor (Dask workers) because they only need their parameters, not this process.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrictModel]] = NoParams
    iterator: ClassVar[bool] = False
    remote: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    needs_env: ClassVar[bool] = False
    """The step reads the environment (credentials named by env var): ``ctx.env`` is filled."""
    wants_input: ClassVar[bool] = False
    """The step reads the output of the step it depends on (``ctx.input``): ``IF``, ``Loop``."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: Mapping[str, Any] = params or {}

    async def run(self, ctx: StepContext) -> StepOutcome:
        raise NotImplementedError(f"component {self.name} cannot run")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "summary": cls.summary, "iterator": cls.iterator}
