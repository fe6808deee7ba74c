"""``Uncompress``, ``Unzip``, ``UnGzip``: unpack zip, tar (.gz/.bz2/.xz) and .gz/.bz2/.xz files.

Members are written under a staging folder in the destination and moved into place only
when the whole archive unpacked; a failure, a timeout or a cancel removes the staging
folder. A member that would land outside the destination (absolute, ``..``, a link, a
device) fails the step, and so does a bomb: more bytes written than ``max_size``, or more
than ``max_ratio`` times the archive's size (counted as bytes are written, not from the
headers), or more than ``max_members`` members.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import shutil
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from flowtaskd.components.base import Component
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "ArchiveError"]

_CHUNK = 1 << 20
_STREAMS: dict[str, Callable[[Path], Any]] = {
    ".gz": gzip.GzipFile,
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}
_TARS = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ArchiveError(Exception):
    """The archive cannot be unpacked safely or at all."""


class Source(StrictModel):
    directory: str | None = None
    filename: str = Field(description="The archive (a glob picks every match).")


class Target(StrictModel):
    directory: str = Field(description="Where members are unpacked (made if missing).")
    filenames: list[str] | None = Field(default=None, description="Only these members.")


class ArchiveParams(StrictModel):
    filename: str | None = Field(default=None, description="The archive (or use `source`).")
    directory: str | None = Field(default=None, description="Folder of `filename`.")
    source: Source | None = None
    destination: Target | None = Field(default=None, description="Default: the archive's folder.")
    extract: Target | None = Field(default=None, description="Upstream's name for destination.")
    delete_source: bool = False
    overwrite: bool = True
    max_size: int = Field(default=4 << 30, ge=1, description="Most bytes unpacked, in all.")
    max_ratio: float = Field(default=200.0, ge=1, description="Most unpacked/archive size.")
    max_members: int = Field(default=100_000, ge=1)


class UncompressComponent(Component):
    name = "Uncompress"
    Params: ClassVar[type[StrictModel]] = ArchiveParams
    formats: ClassVar[tuple[str, ...]] = (".zip", *_TARS, *_STREAMS)
    summary = "Unpack a zip, tar(.gz/.bz2/.xz) or .gz/.bz2/.xz file, safely."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _unpack(ctx, self.formats)


class UnzipComponent(UncompressComponent):
    name = "Unzip"
    formats = (".zip",)
    summary = "Unpack zip files, safely."


class UnGzipComponent(UncompressComponent):
    name = "UnGzip"
    formats = (*_TARS, *_STREAMS)
    summary = "Unpack .gz/.bz2/.xz files and tarballs, safely."


COMPONENTS: list[type[Component]] = [UncompressComponent, UnzipComponent, UnGzipComponent]


def _archives(ctx: StepContext, p: ArchiveParams) -> list[Path]:
    from flowtaskd.components.support import local_path  # noqa: PLC0415

    if p.source is not None:
        folder, name = p.source.directory, p.source.filename
    elif p.filename is not None:
        folder, name = p.directory, p.filename
    else:
        raise ArchiveError("name the archive: `filename` or `source: {filename: ...}`")
    path = local_path(ctx, os.path.join(folder, name) if folder else name)
    if glob.has_magic(str(path)):
        found = sorted(Path(m) for m in glob.glob(str(path)))
        if not found:
            raise ArchiveError(f"no archive matches {path}")
        return found
    if not path.is_file():
        raise ArchiveError(f"no such archive: {path}")
    return [path]


def _kind(path: Path, formats: tuple[str, ...]) -> str:
    name = path.name.lower()
    for suffix in sorted(formats, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ArchiveError(f"{path.name}: not one of {', '.join(formats)}")


async def _unpack(ctx: StepContext, formats: tuple[str, ...]) -> StepOutcome:
    import asyncio  # noqa: PLC0415 - keep validation pure
    import json  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.support import local_path  # noqa: PLC0415

    p = ArchiveParams.model_validate(ctx.params)
    stop = threading.Event()
    try:
        archives = _archives(ctx, p)
        kinds = [_kind(a, formats) for a in archives]
        target = p.destination or p.extract
        results: dict[str, list[str]] = {}
        for archive, kind in zip(archives, kinds, strict=True):
            dest = local_path(ctx, target.directory) if target else archive.parent
            only = target.filenames if target else None
            work = asyncio.to_thread(_unpack_one, archive, kind, dest, only, p, stop)
            task = asyncio.ensure_future(work)
            try:
                async with asyncio.timeout(ctx.timeout):
                    results[str(archive)] = await asyncio.shield(task)
            except (asyncio.CancelledError, TimeoutError):
                stop.set()  # the thread stops at its next chunk and removes what it wrote
                await asyncio.wait([task])
                if not task.cancelled():
                    task.exception()  # retrieved: the cancel is what is reported
                raise
            if p.delete_source:
                archive.unlink()
    except TimeoutError:
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    except (ArchiveError, OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc) or type(exc).__name__)
    files = [f for fs in results.values() for f in fs]
    return StepOutcome(StepStatus.DONE, output=json.dumps(files))


def _safe_name(name: str) -> PurePosixPath:
    """A member's relative path, or ArchiveError when it would escape the destination."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise ArchiveError(f"member {name!r} would be written outside the destination")
    parts = [x for x in pure.parts if x not in ("", ".")]
    if not parts:
        raise ArchiveError(f"member {name!r} has no name")
    return PurePosixPath(*parts)


class _Budget:
    """Counts unpacked bytes against the size and ratio limits, and the stop request."""

    def __init__(self, p: ArchiveParams, packed: int, stop: threading.Event) -> None:
        self.limit = min(p.max_size, int(max(packed, 1) * p.max_ratio))
        self.why = "max_size" if p.max_size <= max(packed, 1) * p.max_ratio else "max_ratio"
        self.used = 0
        self.stop = stop

    def copy(self, src: IO[bytes], dst: IO[bytes], name: str) -> None:
        while True:
            if self.stop.is_set():
                raise ArchiveError("stopped")
            chunk = src.read(_CHUNK)
            if not chunk:
                return
            self.used += len(chunk)
            if self.used > self.limit:
                raise ArchiveError(
                    f"{name}: unpacks to more than {self.limit} bytes ({self.why}); "
                    "a bomb, or raise the limit"
                )
            dst.write(chunk)


def _unpack_one(
    archive: Path,
    kind: str,
    dest: Path,
    only: list[str] | None,
    p: ArchiveParams,
    stop: threading.Event,
) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".part", dir=dest))
    try:
        budget = _Budget(p, archive.stat().st_size, stop)
        if kind == ".zip":
            names = _from_zip(archive, stage, only, p, budget)
        elif kind in _TARS:
            names = _from_tar(archive, stage, only, p, budget)
        else:
            out = _safe_name(archive.name[: -len(kind)])
            with _STREAMS[kind](archive) as src, open(stage / out, "wb") as dst:
                budget.copy(src, dst, archive.name)
            names = [out]
        return _move_into(stage, dest, names, p.overwrite)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _from_zip(
    archive: Path, stage: Path, only: list[str] | None, p: ArchiveParams, budget: _Budget
) -> list[PurePosixPath]:
    names: list[PurePosixPath] = []
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > p.max_members:
            raise ArchiveError(f"{archive.name}: more than {p.max_members} members")
        for info in members:
            rel = _safe_name(info.filename)
            if only is not None and str(rel) not in only:
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise ArchiveError(f"member {info.filename!r} is a symbolic link")
            out = stage / rel
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                budget.copy(src, dst, info.filename)
            names.append(rel)
    return names


def _from_tar(
    archive: Path, stage: Path, only: list[str] | None, p: ArchiveParams, budget: _Budget
) -> list[PurePosixPath]:
    names: list[PurePosixPath] = []
    with tarfile.open(archive, "r:*") as tf:
        for count, member in enumerate(tf, 1):
            if count > p.max_members:
                raise ArchiveError(f"{archive.name}: more than {p.max_members} members")
            rel = _safe_name(member.name)
            if only is not None and str(rel) not in only:
                continue
            if member.isdir():
                (stage / rel).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                what = "link" if member.issym() or member.islnk() else "special file"
                raise ArchiveError(f"member {member.name!r} is a {what}")
            out = stage / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:
                raise ArchiveError(f"member {member.name!r} cannot be read")
            with src, open(out, "wb") as dst:
                budget.copy(src, dst, member.name)
            names.append(rel)
    return names


def _move_into(stage: Path, dest: Path, names: list[PurePosixPath], overwrite: bool) -> list[str]:
    if not overwrite:
        clash = [str(dest / n) for n in names if (dest / n).exists()]
        if clash:
            raise ArchiveError(f"destination exists: {clash[0]}")
    placed = []
    for rel in names:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, target)
        placed.append(str(target))
    return placed
