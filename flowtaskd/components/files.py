"""File components: ``FileList`` (fans a group out over matching files, local or on an SFTP
server: :mod:`flowtaskd.components.sftplist`), ``FileCopy``, ``FileMove``, ``FileDelete``.

Each takes upstream flowtask's parameters (``directory`` + ``pattern`` / ``filename`` /
``file: {pattern, value}``; ``source: {directory, filename}`` and ``destination:
{directory, filename}``; ``remove_source``) and flowtaskd's shorter ones (``path``; a
``source`` / ``destination`` path). Written upstream's way, a step also behaves as
upstream's: files in modification order, oldest first; a ``FileList`` that finds nothing
fails with ``file_not_found``; a ``FileCopy`` that matches nothing fails with
``data_not_found``; ``FileDelete`` of a folder with no selection deletes every file in it.
"""

from __future__ import annotations

import glob
import os
import shutil
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.filesel import FilePattern, FileRef, expand, in_folder, select
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


class _OneFolder(StrictModel):
    path: str | None = Field(default=None, description="The folder (flowtaskd's key).")
    directory: str | None = Field(default=None, description="The folder (upstream's key).")

    @model_validator(mode="after")
    def _one_folder(self) -> Self:
        if (self.path is None) == (self.directory is None):
            raise ValueError("give the folder as `directory` (upstream) or `path`, once")
        return self


class FileListParams(_OneFolder):
    pattern: str | None = Field(default=None, description="Glob, e.g. '*.csv' or '**/*.csv'.")
    filename: str | list[str] | None = Field(default=None, description="Names or globs.")
    file: FilePattern | None = None
    iterate: bool = Field(default=False, description="Upstream: feed the files to a group.")
    generator: bool = False
    parallelize: bool = False
    num_threads: int = Field(default=10, ge=1)
    max_consecutive_failures: int | None = None
    sftp_config: SFTPListConfig | None = Field(
        default=None, description="List a folder on an SFTP server instead (upstream's)."
    )
    sort: SortBy | None = Field(default=None, description="Default: mtime (upstream), name.")
    reverse: bool = False
    limit: int | None = Field(default=None, ge=1)
    files_only: bool = True

    @model_validator(mode="after")
    def _one_folder(self) -> Self:  # replaces _OneFolder's: sftp_config is a folder too
        if self.sftp_config is not None:
            if self.path is not None:
                raise ValueError(
                    "give `path` (a local folder) or `sftp_config` (a remote one), not both"
                )
            return self  # upstream's `directory` beside it is handed to the group items
        if (self.path is None) == (self.directory is None):
            raise ValueError(
                "give the folder as `directory` (upstream) or `path`, once, "
                "or a remote one as `sftp_config`"
            )
        return self


class FileCopyParams(StrictModel):
    source: str | FileRef = Field(description="A path, or upstream's {directory, filename}.")
    destination: str | FileRef = Field(
        description="A folder (ending in '/' or existing), a file path, or {directory, filename}."
    )
    remove_source: bool = False
    move: bool = Field(default=False, description="Upstream's alias of remove_source.")
    overwrite: bool = True
    create_destination: bool = True
    ignore_previous: bool = False


class FileDeleteParams(StrictModel):
    path: str | None = Field(default=None, description="A file, or a glob pattern.")
    directory: str | None = Field(default=None, description="Upstream's folder.")
    pattern: str | None = None
    filename: str | list[str] | None = None
    file: FilePattern | None = None
    missing_ok: bool | None = Field(default=None, description="Default: false for `path`.")

    @model_validator(mode="after")
    def _one_folder(self) -> Self:
        if (self.path is None) == (self.directory is None):
            raise ValueError("give `directory` (upstream, with pattern/filename/file) or `path`")
        return self


def _outcome() -> type[StepOutcome]:
    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415 - keep validation pure

    return StepOutcome


class FileListComponent(Component):
    name = "FileList"
    Params: ClassVar[type[StrictModel]] = FileListParams
    iterator = True
    needs_env = True  # sftp_config's credentials may name env vars
    summary = "List files matching a pattern (locally, or over SFTP); feeds a group (to_group)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        outcome, p = _outcome(), dict(ctx.params)
        if p.get("sftp_config") is not None:
            return await _list_remote(ctx, p)
        upstream = p.get("directory") is not None
        folder = in_folder(ctx.cwd, p["directory"] if upstream else p["path"])
        if not folder.is_dir():
            return outcome(StepStatus.FAILED, error=f"not a folder: {folder}")
        sort = p.get("sort") or ("mtime" if upstream else "name")
        if not upstream and not (p.get("pattern") or p.get("file") or p.get("filename")):
            p["pattern"] = "*"
        items = await asyncio.to_thread(_list, folder, p, str(sort))
        if not items and upstream and not p.get("iterate"):
            error = f"FileList: no files found in {folder}"
            return outcome(StepStatus.FAILED, error=error, event="file_not_found")
        event = "data_not_found" if not items and upstream else None  # an empty fan-out
        output = "\n".join(i["file"] for i in items)
        return outcome(StepStatus.DONE, output=output, items=items, event=event)


async def _list_remote(ctx: StepContext, p: dict[str, Any]) -> StepOutcome:
    from flowtaskd.components.sftplist import list_remote  # noqa: PLC0415

    q = FileListParams.model_validate(p)
    assert q.sftp_config is not None
    file = q.file.pattern if q.file is not None else None
    out = await list_remote(
        ctx,
        q.sftp_config,
        q.pattern or file or "*",
        str(q.sort or "mtime"),  # upstream's order: oldest first
        q.reverse,
        q.limit,
        q.files_only,
    )
    if out.status is StepStatus.DONE and not out.items and not q.iterate:
        where = f"{q.sftp_config.directory} on {q.sftp_config.host}"
        error = f"FileList: no files found in {where}"
        return _outcome()(StepStatus.FAILED, error=error, event="file_not_found")
    for item in out.items or []:  # what upstream hands the iterated step
        item["filename"] = item["file"]
        item["directory"] = q.directory or q.sftp_config.directory
    return out


class FileCopyComponent(Component):
    name = "FileCopy"
    Params: ClassVar[type[StrictModel]] = FileCopyParams
    summary = "Copy files (remove_source: true moves them)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        move = bool(ctx.params.get("remove_source") or ctx.params.get("move"))
        return await _transfer(ctx, move=move)


class FileMoveComponent(Component):
    name = "FileMove"
    Params: ClassVar[type[StrictModel]] = FileCopyParams
    summary = "Move files (upstream writes FileCopy with remove_source: true)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _transfer(ctx, move=True)


class FileDeleteComponent(Component):
    name = "FileDelete"
    Params: ClassVar[type[StrictModel]] = FileDeleteParams
    summary = "Delete a file, the files matching a glob, or upstream's selection in a folder."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415 - keep validation pure

        outcome, p = _outcome(), dict(ctx.params)
        if p.get("directory") is not None:
            folder = in_folder(ctx.cwd, p["directory"])
            if not folder.is_dir():
                return outcome(StepStatus.FAILED, error=f"not a folder: {folder}")
            matches = [str(m) for m in await asyncio.to_thread(select, folder, p)]
            missing_ok = p.get("missing_ok") is not False
        else:
            target = str(in_folder(ctx.cwd, p["path"]))
            matches = _existing(target)
            missing_ok = bool(p.get("missing_ok"))
            if not matches and not missing_ok:
                error = f"nothing to delete at {target}"
                return outcome(StepStatus.FAILED, error=error, event="file_not_found")
        try:
            await asyncio.to_thread(_delete, matches)
        except OSError as exc:
            return outcome(StepStatus.FAILED, error=f"cannot delete: {exc}", event="data_error")
        return outcome(StepStatus.DONE, output="\n".join(matches))


COMPONENTS: list[type[Component]] = [
    FileListComponent,
    FileCopyComponent,
    FileMoveComponent,
    FileDeleteComponent,
]


def _list(folder: Path, p: dict[str, Any], sort: str) -> list[dict[str, Any]]:
    found = [
        (path, path.stat()) for path in select(folder, p, files_only=p.get("files_only", True))
    ]
    reverse = bool(p.get("reverse"))
    if sort == "mtime":
        found.sort(key=lambda ps: (ps[1].st_mtime_ns, str(ps[0])), reverse=reverse)
    elif sort == "size":
        found.sort(key=lambda ps: (ps[1].st_size, str(ps[0])), reverse=reverse)
    elif sort == "name":
        found.sort(key=lambda ps: str(ps[0]), reverse=reverse)
    if p.get("limit") is not None:
        found = found[: int(p["limit"])]
    return [
        {
            "file": str(path),
            "filename": str(path),  # what upstream hands the iterated step
            "directory": str(folder),
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

    outcome, p = _outcome(), ctx.params
    verb = "move" if move else "copy"
    try:
        problem, event, done = await asyncio.to_thread(_do_transfer, ctx.cwd, dict(p), move)
    except OSError as exc:
        return outcome(StepStatus.FAILED, error=f"cannot {verb}: {exc}", event="data_error")
    if problem:
        return outcome(StepStatus.FAILED, error=problem, event=event)
    return outcome(StepStatus.DONE, output="\n".join(str(d) for d in done))


def _sources(cwd: str | None, source: Any) -> tuple[list[Path], str]:
    if isinstance(source, dict):
        folder = in_folder(cwd, source["directory"])
        name = source.get("filename") or "*"
        return [m for m in expand(folder, name) if m.is_file()], f"{folder}/{name}"
    return [in_folder(cwd, source)], str(in_folder(cwd, source))


def _do_transfer(
    cwd: str | None, p: dict[str, Any], move: bool
) -> tuple[str | None, str | None, list[Path]]:
    """Copy or move in a worker thread: a problem the user can fix (and its upstream
    event), or None, and the files written."""
    sources, where = _sources(cwd, p["source"])
    if isinstance(p["source"], dict) and not sources:
        return f"nothing to copy: no file matches {where}", "data_not_found", []
    missing = [s for s in sources if not s.exists()]
    if missing:
        return f"no such file: {missing[0]}", "file_not_found", []
    dest, create = p["destination"], bool(p.get("create_destination", True))
    targets: list[Path] = []
    for src in sources:
        if isinstance(dest, dict):
            folder = in_folder(cwd, dest["directory"])
            rename = dest.get("filename") and dest.get("rename") is not False
            if rename and len(sources) > 1:
                return (
                    f"destination.filename renames one file, but {where} matches {len(sources)}",
                    None,
                    [],
                )
            target = folder / (dest["filename"] if rename else src.name)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            target = in_folder(cwd, dest)
            if str(dest).endswith("/") or target.is_dir():
                target = target / src.name
        if target.exists() and not p.get("overwrite", True):
            return f"destination exists: {target}", None, []
        targets.append(target)
    for src, target in zip(sources, targets, strict=True):
        _transfer_file(src, target, move, create)
    return None, None, targets


def _transfer_file(src: Path, dst: Path, move: bool, create: bool) -> None:
    if create:
        dst.parent.mkdir(parents=True, exist_ok=True)
    if move:
        shutil.move(src, dst)
    elif src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def _existing(target: str) -> list[str]:
    matches = sorted(glob.glob(target)) if glob.has_magic(target) else [target]
    return [m for m in matches if os.path.lexists(m)]


def _delete(paths: list[str]) -> None:
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
