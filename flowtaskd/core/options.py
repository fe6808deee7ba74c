"""Pydantic models of what a task file may say, apart from the components' own parameters.

Shared by the task schema (``schema.py``) and the components: durations, argv lists,
environment maps, retry policies and the options every step accepts (``name``, ``depends``,
``trigger_rule``, ...); the ``events:`` block's actions are in ``eventblock.py``. Each
``BeforeValidator`` that accepts more than its output type declares what it accepts
(``json_schema_input_type``), so the exported JSON Schema takes ``timeout: "5m"``.
Pure: validation only.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from flowtaskd.core.cron import CronError, parse_every
from flowtaskd.core.rules import SkipError, TriggerRule

__all__ = [
    "STEP_ID_PATTERN",
    "STEP_OPTION_KEYS",
    "UPSTREAM_VALUE_KEYS",
    "Argv",
    "Backoff",
    "Duration",
    "EnvMap",
    "NoParams",
    "Overlap",
    "PlaceholderMode",
    "RetryPolicy",
    "RunOrder",
    "StepOptions",
    "StrictModel",
    "Timeout",
    "parse_duration",
]

STEP_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""A step id: it appears in ``depends``, ``{steps.<id>.output}`` and log file names."""


class StrictModel(BaseModel):
    """Unknown keys are errors; values are not silently coerced from the wrong type."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class NoParams(StrictModel):
    """A component that takes no parameters of its own."""


_DECIMAL = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d|)")
_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HELP = "a duration is a number of seconds or a string like '30s', '5m', '1h30m'"


def parse_duration(value: Any) -> float:
    """``30``, ``2.5``, ``"30"``, ``"0.5s"``, ``"250ms"``, ``"5m"``, ``"1h30m"`` -> seconds.

    The result is finite and not negative.
    """
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        text = value.strip()
        if match := _DECIMAL.fullmatch(text.lower()):
            value = float(match[1]) * _UNITS[match[2]]
        else:
            try:
                return parse_every(text).total_seconds()
            except CronError as exc:
                raise ValueError(str(exc)) from None
    if not isinstance(value, int | float):
        raise ValueError(_DURATION_HELP)
    if not math.isfinite(value):
        raise ValueError("a duration must be a finite number of seconds")
    if value < 0:
        raise ValueError("a duration cannot be negative")
    return float(value)


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=float | str)]
Timeout = Annotated[float, BeforeValidator(_positive_duration, json_schema_input_type=float | str)]
"""A duration greater than zero (``timeout: 30``, ``timeout: "5m"``)."""


def _argv(value: Any) -> Any:
    if type(value) is list and value and all(type(v) is str for v in value):
        return value  # the usual case, quickly
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("the command is empty")
        if any(not isinstance(v, str | int | float) or isinstance(v, bool) for v in value):
            raise ValueError("every argv element must be a string (or a number)")
        return [str(v) for v in value]
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the command is empty")
        return value
    raise ValueError("a command is a list of arguments or a string")


Argv = Annotated[
    list[str] | str,
    BeforeValidator(_argv, json_schema_input_type=list[str | int | float] | str),
]


def _env_value(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


EnvMap = dict[
    str, Annotated[str, BeforeValidator(_env_value, json_schema_input_type=str | int | float)]
]
"""Environment variables; numbers are taken as their text (``PORT: 8080``)."""


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
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return [value]
    return value


def _skip_error(value: Any) -> Any:
    return "log" if value == "log_only" else value  # upstream's alias


def _no_branch(value: Any) -> Any:
    raise ValueError(
        "`branch` is not supported: upstream flowtask (5.13.8) stores it but never acts on "
        "it; use `Goto`, `OnError` or `trigger_rule`"
    )


class PlaceholderMode(StrEnum):
    """What an unknown ``{name}`` in a parameter does (task-level ``placeholders:``)."""

    STRICT = "strict"  # the step fails before it starts (flowtaskd)
    LENIENT = "lenient"  # left as written (upstream flowtask)


class RunOrder(StrEnum):
    """``order: dag`` schedules by ``depends``; ``order: file`` runs in file order (upstream)."""

    DAG = "dag"
    FILE = "file"


UPSTREAM_VALUE_KEYS: frozenset[str] = frozenset(
    {
        "name",
        "description",
        "comments",
        "masks",
        "variables",
        "conditions",
        "attributes",
        "arguments",
    }
)
"""Step keys that belong to the component when its ``Params`` declares them (upstream passes
every key to the component; flowtaskd reads these itself otherwise)."""


class StepOptions(StrictModel):
    """Options every step accepts, whatever its component."""

    name: str | None = Field(
        default=None,
        pattern=STEP_ID_PATTERN,
        description="The step's id (default <Component>_<N>): letters, digits, _ . -",
    )
    description: str | None = None
    comments: str | None = None
    depends: Annotated[
        list[str | int] | None,
        BeforeValidator(_depends, json_schema_input_type=str | int | list[str | int] | None),
    ] = Field(
        default=None,
        description="Step ids (or upstream pile indexes from 0) this step waits for; "
        "default: the step before it; [] = a root.",
    )
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retry: RetryPolicy | None = None
    timeout: Timeout | None = None
    skipError: Annotated[  # upstream flowtask's key; `log_only` is upstream's alias of `log`
        SkipError, BeforeValidator(_skip_error, json_schema_input_type=str)
    ] = SkipError.ENFORCE
    masks: dict[str, Any] | None = Field(
        default=None, description="Upstream masks: {name: [function, {args}] or text}."
    )
    variables: dict[str, Any] | None = Field(
        default=None, description="Values for this step and every later one (upstream)."
    )
    conditions: dict[str, Any] | None = Field(
        default=None, description="Named values for this step's placeholders (upstream)."
    )
    attributes: dict[str, Any] | None = Field(
        default=None, description="Override the component's parameters (upstream)."
    )
    arguments: list[Any] | None = Field(
        default=None, description="Upstream's argument list (for components that read one)."
    )
    Goto: str | None = Field(
        default=None, min_length=1, description="After success, jump forward to this step."
    )
    OnError: str | None = Field(
        default=None, min_length=1, description="On failure, jump forward to this step."
    )
    branch: Annotated[Any, BeforeValidator(_no_branch)] = Field(
        default=None, description="Upstream's unused key: refused."
    )
    precondition: Argv | None = Field(
        default=None, description="A command; a non-zero exit skips the step."
    )
    env: EnvMap | None = None
    cwd: str | None = Field(default=None, min_length=1)
    to_group: str | None = Field(
        default=None, min_length=1, description="Fan out: this step feeds group G."
    )
    Group: str | None = Field(  # upstream flowtask's key
        default=None, min_length=1, description="This step runs once per group item."
    )
    executor: str | None = Field(default=None, description="'local' keeps the step here.")
    resources: dict[str, float] | None = None


STEP_OPTION_KEYS: frozenset[str] = frozenset(StepOptions.model_fields)
"""Keys every step accepts (a component declaring one of :data:`UPSTREAM_VALUE_KEYS`
takes that key as its own parameter)."""
