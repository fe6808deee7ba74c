"""Files and waiting: ``FileExists`` (a check, or a sensor that pokes until the file comes),
``FileRename``, ``FileRead`` / ``FileOpen`` (content as output, size-capped), ``Wait``
(a duration, or until a time of day in the task's zone) and ``PrintMessage``."""

from __future__ import annotations

import glob
import json
import os
import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.support import AnyCase
from flowtaskd.core.options import Duration, StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS"]

_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class FilePattern(StrictModel):
    pattern: str = Field(description="A glob, e.g. 'orders_*.csv'.")


class FileSelect(StrictModel):
    directory: str | None = Field(default=None, description="Folder of the file(s).")
    filename: str | None = Field(default=None, description="A name or a glob.")
    pattern: str | None = Field(default=None, description="A glob (upstream's other key).")
    file: FilePattern | None = None

    def target(self) -> str:
        name = self.filename or self.pattern or (self.file.pattern if self.file else None)
        if name is None:
            raise ValueError("name the file: `filename`, `pattern` or `file: {pattern: ...}`")
        return os.path.join(self.directory, name) if self.directory else name

    @model_validator(mode="after")
    def _named(self) -> FileSelect:
        self.target()
        return self


class FileExistsParams(FileSelect):
    poke_interval: Duration | None = Field(
        default=None, description="Wait for the file, looking again this often."
    )
    max_wait: Duration | None = Field(
        default=None, description="Give up waiting after this long (default: step timeout)."
    )
    first_file: bool = False
    last_file: bool = False


class FileRenameParams(StrictModel):
    directory: str | None = None
    source: str = Field(description="The file to rename (no wildcards).")
    destination: str = Field(description="Its new name; an existing file is not replaced.")
    ignore_missing: bool = False


class FileReadParams(FileSelect):
    is_json: bool = Field(default=False, description="Decode the content as JSON.")
    max_size: int = Field(default=1 << 20, ge=1, description="Bytes read at most; larger fails.")
    encoding: str = "utf-8"


class WaitParams(StrictModel):
    wait: Duration | None = Field(default=None, description="Seconds, or '5m', '1h30m'.")
    until: str | None = Field(
        default=None, pattern=_TIME_OF_DAY.pattern, description="HH:MM[:SS], the task's zone."
    )

    @model_validator(mode="after")
    def _one(self) -> WaitParams:
        if (self.wait is None) == (self.until is None):
            raise ValueError("give one of `wait` (a duration) or `until` (HH:MM)")
        return self


class PrintMessageParams(StrictModel):
    message: str = ""
    level: Annotated[str, AnyCase("debug", "info", "warn", "warning", "error", "critical")] = "INFO"
    color: str | None = Field(default=None, description="Accepted for upstream; not used.")
    condition: str | None = Field(default=None, description="Accepted for upstream; not used.")


def _matches(ctx: StepContext, select: FileSelect) -> list[Path]:
    from flowtaskd.components.support import local_path  # noqa: PLC0415

    path = str(local_path(ctx, select.target()))
    if glob.has_magic(path):
        found = [Path(m) for m in glob.glob(path) if os.path.isfile(m)]
        return sorted(found, key=lambda f: (f.stat().st_mtime_ns, str(f)))
    return [Path(path)] if os.path.isfile(path) else []


class FileExistsComponent(Component):
    name = "FileExists"
    Params: ClassVar[type[StrictModel]] = FileExistsParams
    summary = "Check that a file exists, or wait for it (poke_interval)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

        p = FileExistsParams.model_validate(ctx.params)
        loop = asyncio.get_running_loop()
        limit = p.max_wait if p.max_wait is not None else ctx.timeout
        deadline = None if limit is None else loop.time() + limit
        while True:
            found = await asyncio.to_thread(_matches, ctx, p)
            if found:
                break
            if p.poke_interval is None:
                return StepOutcome(StepStatus.FAILED, error=f"no file at {p.target()}")
            if deadline is not None and loop.time() + p.poke_interval > deadline:
                waited = f"{limit:g}s"
                return StepOutcome(
                    StepStatus.TIMED_OUT, error=f"no file at {p.target()} after {waited}"
                )
            await asyncio.sleep(p.poke_interval)
        if p.first_file:
            found = found[:1]
        elif p.last_file:
            found = found[-1:]
        first = found[0]
        variables = {
            f"{ctx.step_id}_FILEPATH": str(first),
            f"{ctx.step_id}_FILENAME": first.name,
            f"{ctx.step_id}_DIRECTORY": str(first.parent),
        }
        return StepOutcome(StepStatus.DONE, output="\n".join(map(str, found)), variables=variables)


class FileRenameComponent(Component):
    name = "FileRename"
    Params: ClassVar[type[StrictModel]] = FileRenameParams
    summary = "Rename a file; never replaces an existing one."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
        from flowtaskd.components.support import local_path  # noqa: PLC0415

        p = FileRenameParams.model_validate(ctx.params)
        base = local_path(ctx, p.directory) if p.directory else None
        src = base / p.source if base else local_path(ctx, p.source)
        dst = base / p.destination if base else local_path(ctx, p.destination)
        if glob.has_magic(p.source):
            return StepOutcome(StepStatus.FAILED, error="FileRename takes no wildcards")
        if not src.exists():
            if p.ignore_missing:
                return StepOutcome(StepStatus.DONE, output="{}")
            return StepOutcome(StepStatus.FAILED, error=f"no such file: {src}")
        try:
            await asyncio.to_thread(_rename, src, dst)
        except OSError as exc:
            return StepOutcome(StepStatus.FAILED, error=f"cannot rename: {exc}")
        return StepOutcome(StepStatus.DONE, output=json.dumps({str(src): str(dst)}))


def _rename(src: Path, dst: Path) -> None:
    if dst.exists():
        raise FileExistsError(f"destination exists: {dst}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)


def _read(paths: list[Path], cap: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read(cap - total + 1)
        total += len(data)
        if total > cap:
            raise ValueError(f"{path} makes the content larger than max_size ({cap} bytes)")
        out[str(path)] = data
    return out


class FileReadComponent(Component):
    name = "FileRead"
    Params: ClassVar[type[StrictModel]] = FileReadParams
    summary = "Read a file (or the matches of a glob, joined) as the step's output."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _read_step(ctx, joined=True)


class FileOpenComponent(Component):
    name = "FileOpen"
    Params: ClassVar[type[StrictModel]] = FileReadParams
    summary = "Read files as a JSON object of file name to content."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _read_step(ctx, joined=False)


async def _read_step(ctx: StepContext, *, joined: bool) -> StepOutcome:
    import asyncio  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    p = FileReadParams.model_validate(ctx.params)
    paths = await asyncio.to_thread(_matches, ctx, p)
    if not paths:
        return StepOutcome(StepStatus.FAILED, error=f"no file at {p.target()}")
    try:
        raw = await asyncio.to_thread(_read, paths, p.max_size)
        texts = {k: v.decode(p.encoding) for k, v in raw.items()}
        if p.is_json:
            values: dict[str, Any] = {k: json.loads(v) for k, v in texts.items()}
    except (OSError, ValueError, LookupError) as exc:
        return StepOutcome(StepStatus.FAILED, error=f"cannot read: {exc}")
    if joined:
        if p.is_json:
            decoded = list(values.values())
            output = json.dumps(decoded[0] if len(decoded) == 1 else decoded)
        else:
            output = "".join(texts.values())
    else:
        output = json.dumps(values if p.is_json else texts)
    return StepOutcome(StepStatus.DONE, output=output)


def seconds_until(until: str, now: datetime) -> float:
    """Seconds from ``now`` (aware) to the next ``HH:MM[:SS]`` in ``now``'s zone."""
    m = _TIME_OF_DAY.match(until)
    assert m is not None
    at = time(int(m[1]), int(m[2]), int(m[3] or 0))
    target = datetime.combine(now.date(), at, tzinfo=now.tzinfo)
    if target <= now:
        target = datetime.combine(now.date() + timedelta(days=1), at, tzinfo=now.tzinfo)
    return target.timestamp() - now.timestamp()  # real seconds, across a DST change


class WaitComponent(Component):
    name = "Wait"
    Params: ClassVar[type[StrictModel]] = WaitParams
    summary = "Wait a duration, or until a time of day in the task's zone."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415
        from zoneinfo import ZoneInfo  # noqa: PLC0415

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

        p = WaitParams.model_validate(ctx.params)
        if p.until is not None:
            zone = ZoneInfo(ctx.timezone) if ctx.timezone else None
            now = datetime.now(zone) if zone else datetime.now().astimezone()
            seconds = seconds_until(p.until, now)
        else:
            seconds = p.wait or 0.0
        try:
            async with asyncio.timeout(ctx.timeout):
                await asyncio.sleep(seconds)
        except TimeoutError:
            return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
        return StepOutcome(StepStatus.DONE, output=f"{seconds:g}")


class PrintMessageComponent(Component):
    name = "PrintMessage"
    Params: ClassVar[type[StrictModel]] = PrintMessageParams
    summary = "Log a message (placeholders filled); it is also the step's output."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import structlog  # noqa: PLC0415

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
        from flowtaskd.components.runtime import mask_text  # noqa: PLC0415

        p = PrintMessageParams.model_validate(ctx.params)
        level = {"warn": "warning", "critical": "critical"}.get(p.level.lower(), p.level.lower())
        message = mask_text(p.message, ctx.secrets)
        log = structlog.get_logger("flowtaskd.step").bind(task=ctx.task, step=ctx.step_id)
        getattr(log, level)("print_message", message=message)
        return StepOutcome(StepStatus.DONE, output=message)


COMPONENTS: list[type[Component]] = [
    FileExistsComponent,
    FileRenameComponent,
    FileReadComponent,
    FileOpenComponent,
    WaitComponent,
    PrintMessageComponent,
]
