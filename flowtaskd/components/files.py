"""File components: ``FileList`` (fans a group out over matching files, local or on an SFTP
server: :mod:`flowtaskd.components.sftplist`), ``FileCopy``, ``FileMove``, ``FileDelete``."""

from __future__ import annotations

import glob
import os
import shutil
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.sftplist import SFTPListConfig
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS"]


class SortBy(StrEnum):
    NAME = "name"
    MTIME = "mtime"
    SIZE = "size"
    NONE = "none"


class FileListParams(StrictModel):
    path: str | None = Field(default=None, description="The (local) folder to list.")
    sftp_config: SFTPListConfig | None = Field(
        default=None, description="List a folder on an SFTP server instead (upstream's)."
    )
    pattern: str = Field(default="*", description="Glob pattern, e.g. '*.csv' or '**/*.csv'.")
    sort: SortBy = SortBy.NAME
    reverse: bool = False
    limit: int | None = Field(default=None, ge=1)
    files_only: bool = True

    @model_validator(mode="after")
    def _where(self) -> FileListParams:
        if (self.path is None) == (self.sftp_config is None):
            raise ValueError(
                "give `path` (a local folder) or `sftp_config` (a remote one), not both"
                if self.path is not None
                else "give `path` (a local folder) or `sftp_config` (a remote one)"
            )
        return self


class FileCopyParams(StrictModel):
    source: str
    destination: str = Field(description="A folder (ending in '/' or existing) or a file path.")
    overwrite: bool = True
    create_destination: bool = True


class FileDeleteParams(StrictModel):
    path: str = Field(description="A file, or a glob pattern.")
    missing_ok: bool = False


class FileListComponent(Component):
    name = "FileList"
    Params: ClassVar[type[StrictModel]] = FileListParams
    iterator = True
    needs_env = True  # sftp_config's credentials may name env vars
    summary = "List files matching a pattern (locally, or over SFTP); feeds a group (to_group)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

        p = ctx.params
        if p.get("sftp_config") is not None:
            from flowtaskd.components.sftplist import list_remote  # noqa: PLC0415

            q = FileListParams.model_validate(p)
            assert q.sftp_config is not None
            return await list_remote(
                ctx, q.sftp_config, q.pattern, str(q.sort), q.reverse, q.limit, q.files_only
            )
        folder = _path(ctx, p["path"])
        if not folder.is_dir():
            return StepOutcome(StepStatus.FAILED, error=f"not a folder: {folder}")
        items = await asyncio.to_thread(
            _list,
            folder,
            p.get("pattern", "*"),
            str(p.get("sort", "name")),
            bool(p.get("reverse")),
            p.get("limit"),
            bool(p.get("files_only", True)),
        )
        output = "\n".join(i["file"] for i in items)
        return StepOutcome(StepStatus.DONE, output=output, items=items)


class FileCopyComponent(Component):
    name = "FileCopy"
    Params: ClassVar[type[StrictModel]] = FileCopyParams
    summary = "Copy a file."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _transfer(ctx, move=False)


class FileMoveComponent(Component):
    name = "FileMove"
    Params: ClassVar[type[StrictModel]] = FileCopyParams
    summary = "Move a file."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _transfer(ctx, move=True)


class FileDeleteComponent(Component):
    name = "FileDelete"
    Params: ClassVar[type[StrictModel]] = FileDeleteParams
    summary = "Delete a file or the files matching a glob."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

        target = str(_path(ctx, ctx.params["path"]))
        matches = await asyncio.to_thread(_existing, target)
        if not matches and not ctx.params.get("missing_ok"):
            return StepOutcome(StepStatus.FAILED, error=f"nothing to delete at {target}")
        try:
            await asyncio.to_thread(_delete, matches)
        except OSError as exc:
            return StepOutcome(StepStatus.FAILED, error=f"cannot delete: {exc}")
        return StepOutcome(StepStatus.DONE, output="\n".join(matches))


COMPONENTS: list[type[Component]] = [
    FileListComponent,
    FileCopyComponent,
    FileMoveComponent,
    FileDeleteComponent,
]


def _path(ctx: StepContext, value: str) -> Path:
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute() and ctx.cwd:
        path = Path(ctx.cwd) / path
    return path


def _list(
    folder: Path, pattern: str, sort: str, reverse: bool, limit: int | None, files_only: bool
) -> list[dict[str, Any]]:
    found = []
    for path in folder.glob(pattern):
        if path.name.startswith(".") or (files_only and not path.is_file()):
            continue
        st = path.stat()
        found.append((path, st))
    if sort == "mtime":
        found.sort(key=lambda ps: (ps[1].st_mtime_ns, str(ps[0])), reverse=reverse)
    elif sort == "size":
        found.sort(key=lambda ps: (ps[1].st_size, str(ps[0])), reverse=reverse)
    elif sort == "name":
        found.sort(key=lambda ps: str(ps[0]), reverse=reverse)
    if limit is not None:
        found = found[:limit]
    return [
        {
            "file": str(path),
            "name": path.name,
            "stem": path.stem,
            "suffix": path.suffix,
            "folder": str(path.parent),
            "size": st.st_size,
            "mtime": st.st_mtime,
            "index": i,
        }
        for i, (path, st) in enumerate(found)
    ]


async def _transfer(ctx: StepContext, *, move: bool) -> StepOutcome:
    import asyncio  # noqa: PLC0415 - keep validation pure

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

    p = ctx.params
    src = _path(ctx, p["source"])
    dst = _path(ctx, p["destination"])
    into = str(p["destination"]).endswith("/")
    overwrite = bool(p.get("overwrite", True))
    create = bool(p.get("create_destination", True))
    try:
        problem, dst = await asyncio.to_thread(
            _do_transfer, src, dst, into, move, overwrite, create
        )
    except OSError as exc:
        return StepOutcome(StepStatus.FAILED, error=f"cannot {'move' if move else 'copy'}: {exc}")
    if problem:
        return StepOutcome(StepStatus.FAILED, error=problem)
    return StepOutcome(StepStatus.DONE, output=str(dst))


def _existing(target: str) -> list[str]:
    matches = sorted(glob.glob(target)) if glob.has_magic(target) else [target]
    return [m for m in matches if os.path.lexists(m)]


def _do_transfer(
    src: Path, dst: Path, into: bool, move: bool, overwrite: bool, create: bool
) -> tuple[str | None, Path]:
    """Copy or move in a worker thread; a problem the user can fix, or None, and the target."""
    if not src.exists():
        return f"no such file: {src}", dst
    if into or dst.is_dir():
        dst = dst / src.name
    if dst.exists() and not overwrite:
        return f"destination exists: {dst}", dst
    _transfer_file(src, dst, move, create)
    return None, dst


def _transfer_file(src: Path, dst: Path, move: bool, create: bool) -> None:
    if create:
        dst.parent.mkdir(parents=True, exist_ok=True)
    if move:
        shutil.move(src, dst)
    elif src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def _delete(paths: list[str]) -> None:
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
