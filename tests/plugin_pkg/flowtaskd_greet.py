"""A flowtaskd plugin: the ``Greet`` component (and, for the tests, some broken ones)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

from flowtaskd.components.base import Component
from flowtaskd.core.options import StrictModel

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome


class GreetParams(StrictModel):
    greeting: str = Field(description="What to say.")
    times: int = Field(default=1, ge=1)


class GreetComponent(Component):
    name = "Greet"
    Params: ClassVar[type[StrictModel]] = GreetParams
    summary = "Say something, a few times."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure
        from flowtaskd.core.rules import StepStatus  # noqa: PLC0415

        text = " ".join([str(ctx.params["greeting"])] * int(ctx.params["times"]))
        return StepOutcome(StepStatus.DONE, output=text)


not_a_component = "a string, not a class"


class LooseParams(BaseModel):  # extra keys allowed: typos would pass silently
    greeting: str = "hi"


class LooseComponent(Component):
    name = "Loose"
    Params = LooseParams  # type: ignore[assignment]


class ClashParams(StrictModel):
    timeout: int = 5
    depends: str = ""


class ClashComponent(Component):
    name = "Clash"
    Params: ClassVar[type[StrictModel]] = ClashParams


class ShadowCommand(Component):
    name = "Command"
