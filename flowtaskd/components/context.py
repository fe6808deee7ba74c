"""What an executor is given to run one attempt of a step, and what it gives back.

A :class:`StepContext` is plain, picklable data (component name, resolved parameters,
environment, limits, log paths), so the same attempt can run in this process or on a
Dask worker. A :class:`StepOutcome` is the result either way. ``runtime`` is the one
in-process extra (sub-runs for ``RunTask``); it is never shipped to a worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from flowtaskd.core.rules import StepStatus

__all__ = ["Executor", "StepContext", "StepOutcome", "SubRun"]


class SubRun(Protocol):
    """Runs another task (by path, library name, or ``program`` + name) and waits for it."""

    def __call__(
        self, ref: str, params: Mapping[str, Any], program: str | None = None
    ) -> Awaitable[StepOutcome]: ...


@dataclass(frozen=True, slots=True)
class StepContext:
    """One attempt of one step, fully resolved."""

    task: str
    run_id: str
    step_id: str
    component: str
    params: Mapping[str, Any]
    attempt: int = 1
    env: Mapping[str, str] | None = None  # the full environment of a process step
    cwd: str | None = None
    timeout: float | None = None
    kill_grace: float = 5.0
    log_dir: Path | None = None
    secrets: tuple[str, ...] = ()  # values to mask in anything the step reports
    item: Mapping[str, Any] | None = None  # the group item this attempt runs for
    base_dir: str | None = None  # the task file's folder (relative paths in RunTask)
    resources: Mapping[str, float] | None = None
    input: str | None = None  # the upstream step's output, for ``wants_input`` components
    timezone: str | None = None  # the task's zone (``Wait: {until: ...}``)
    runtime: SubRun | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Unique per task, run, step, item and attempt (a Dask key, a log file name)."""
        return f"{self.task}-{self.run_id}-{self.step_id}-{self.attempt}"

    @property
    def log_stem(self) -> str:
        return f"{self.step_id}.{self.attempt}"

    def shippable(self) -> StepContext:
        """A copy that can cross a process boundary."""
        return replace(self, runtime=None)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one attempt ended, and what the OS says it cost."""

    status: StepStatus
    output: str | None = None
    exit_code: int | None = None
    error: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss_kb: int | None = None
    bytes_out: int | None = None
    log_path: str | None = None
    items: list[dict[str, Any]] | None = None  # what an iterator step produced
    worker: str | None = None  # where it ran, when not here
    event: str | None = None  # upstream's failure event for it (``file_not_found``, ...)
    skip: tuple[str, ...] = ()  # steps a branching step (IF, Switch) did not choose
    variables: Mapping[str, Any] | None = None  # placeholders set for later steps (SetVariables)
    retry_after: float | None = None  # seconds a server asked to wait before a retry

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.DONE


class Executor(Protocol):
    """Runs step attempts. Cancelling the awaiting task cancels the attempt."""

    name: str

    async def run(self, ctx: StepContext) -> StepOutcome:
        """Run one attempt; never raises for a failure of the step itself."""
        ...

    async def aclose(self) -> None: ...
