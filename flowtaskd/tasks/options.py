"""Pydantic models of what a task file may say, apart from the components' own parameters.

Shared by the task schema (``schema.py``) and the components: durations, retry policies,
the options every step accepts (``name``, ``depends``, ``trigger_rule``, ...), and the
task file's ``events:`` actions. Pure: validation only.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from flowtaskd.tasks.cron import CronError, parse_every
from flowtaskd.tasks.rules import SkipError, TriggerRule

__all__ = [
    "Argv",
    "Backoff",
    "Duration",
    "Overlap",
    "RetryPolicy",
    "StepOptions",
    "StrictModel",
    "parse_duration",
]


class StrictModel(BaseModel):
    """Unknown keys are errors; values are not silently coerced from the wrong type."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_duration(value: Any) -> float:
    """``30``, ``2.5``, ``"30s"``, ``"5m"``, ``"1h30m"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return parse_every(text).total_seconds()
        except CronError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _argv(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("the command is empty")
        bad = [v for v in value if not isinstance(v, str | int | float) or isinstance(v, bool)]
        if bad:
            raise ValueError("every argv element must be a string")
        return [str(v) for v in value]
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the command is empty")
        return value
    raise ValueError("a command is a list of arguments or a string")


Argv = Annotated[list[str] | str, BeforeValidator(_argv)]


class Backoff(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class Overlap(StrEnum):
    """What a new run of a task does while another run of it is still going."""

    SKIP = "skip"
    QUEUE = "queue"
    CANCEL = "cancel"
    ALLOW = "allow"


class RetryPolicy(StrictModel):
    """How often a failed step is tried again, and how long to wait between tries."""

    attempts: int = Field(default=1, ge=1, le=100, description="Total tries, the first included.")
    delay: Duration = Field(default=0.0, description="Wait before the second try.")
    backoff: Backoff = Backoff.FIXED
    max_delay: Duration | None = Field(default=None, description="Cap on any one wait.")
    jitter: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Fraction of each wait that is randomised."
    )
    on_exit_codes: list[int] | None = Field(
        default=None, description="Retry only these exit codes (default: any failure)."
    )

    def delay_before(self, attempt: int, rand: float = 0.0) -> float:
        """Seconds to wait before try ``attempt`` (2 = the first retry); ``rand`` in [0, 1)."""
        n = max(attempt - 2, 0)
        base = self.delay * (2**n) if self.backoff is Backoff.EXPONENTIAL else self.delay
        if self.max_delay is not None:
            base = min(base, self.max_delay)
        return base * (1.0 - self.jitter * rand)

    def should_retry(self, attempt: int, exit_code: int | None) -> bool:
        """Whether a failure of try ``attempt`` (1-based) is tried again."""
        if attempt >= self.attempts:
            return False
        return self.on_exit_codes is None or exit_code in self.on_exit_codes


def _depends(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return value


class StepOptions(StrictModel):
    """Options every step accepts, whatever its component."""

    name: str | None = Field(default=None, min_length=1, description="The step's id.")
    description: str | None = None
    comments: str | None = None
    depends: Annotated[list[str] | None, BeforeValidator(_depends)] = Field(
        default=None,
        description="Step ids this step waits for; default: the step before it; [] = a root.",
    )
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    skipError: SkipError = SkipError.ENFORCE  # noqa: N815 - upstream flowtask's key
    precondition: Argv | None = Field(
        default=None, description="A command; a non-zero exit skips the step."
    )
    env: dict[str, str] | None = None
    cwd: str | None = None
    to_group: str | None = Field(default=None, description="Fan out: this step feeds group G.")
    Group: str | None = Field(default=None, description="This step runs once per group item.")  # noqa: N815
    executor: str | None = Field(default=None, description="'local' keeps the step here.")
    resources: dict[str, float] | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in " \t\n{}"):
            raise ValueError("a step name cannot contain spaces or braces")
        return value


STEP_OPTION_KEYS = frozenset(StepOptions.model_fields)
