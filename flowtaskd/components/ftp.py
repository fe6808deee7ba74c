"""``DownloadFromFTP`` and ``UploadToFTP``: FTP and explicit FTPS (``use_tls``), on ftplib.

ftplib runs in a worker thread; a cancel or timeout sets a stop flag that the thread
checks at every block, so the transfer stops within one block and the thread cleans up.
Files go through ``<name>.part``: removed when a transfer fails, or with ``resume: true``
kept for the next attempt, which goes on from its size (``REST``). The password is a
credential (see :mod:`flowtaskd.components.support`); without one the login is anonymous.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import posixpath
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.support import Credentials
from flowtaskd.core.options import StrictModel, Timeout
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    import ftplib

    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS"]

_BLOCK = 1 << 18


class Stopped(Exception):
    """The step was cancelled or timed out: the thread stops its transfer."""


class FTPParams(StrictModel):
    host: str
    port: int = Field(default=21, ge=1, le=65535)
    use_tls: bool = Field(default=False, description="Explicit FTPS (AUTH TLS), data too.")
    verify_ssl: bool = True
    cafile: str | None = None
    credentials: Credentials = Field(default_factory=Credentials)
    allow_plaintext_credentials: bool = False
    passive: bool = True
    connect_timeout: Timeout = 30.0


class RemotePattern(StrictModel):
    directory: str = "."
    pattern: str = Field(description="A regular expression matched against the file name.")


class RemoteSource(StrictModel):
    directory: str = "."
    filename: str = Field(default="*", description="A name or a glob.")


class LocalDir(StrictModel):
    directory: str


class DownloadFTPParams(FTPParams):
    source: RemoteSource | None = None
    file: RemotePattern | None = None
    directory: str | None = Field(
        default=None,
        validation_alias=AliasChoices("directory", "download"),
        description="The local folder (upstream: download: {directory}).",
    )
    overwrite: bool = True
    resume: bool = False
    remove: bool = Field(default=False, description="Delete each remote file once saved.")

    @model_validator(mode="before")
    @classmethod
    def _download_dict(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("download"), dict):
            return {**data, "download": data["download"].get("directory")}
        return data

    @model_validator(mode="after")
    def _named(self) -> DownloadFTPParams:
        if (self.source is None) == (self.file is None):
            raise ValueError("name the remote files with one of `source` or `file`")
        if self.directory is None:
            raise ValueError("give the local folder: `directory` or `download: {directory}`")
        if self.file is not None:
            try:
                re.compile(self.file.pattern)
            except re.error as exc:
                raise ValueError(f"file.pattern is not a regular expression: {exc}") from None
        return self


class LocalSource(StrictModel):
    directory: str
    filename: str = Field(default="*", description="A name or a glob.")


class UploadFTPParams(FTPParams):
    source: LocalSource
    destination: LocalDir = Field(description="The remote folder.")
    overwrite: bool = True


def _open(p: FTPParams, user: str | None, password: str | None, timeout: float) -> ftplib.FTP:
    import ftplib  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    ftp: ftplib.FTP
    if p.use_tls:
        context = ssl.create_default_context(cafile=p.cafile)
        if not p.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        ftp = ftplib.FTP_TLS(context=context, timeout=timeout)
    else:
        ftp = ftplib.FTP(timeout=timeout)
    try:
        ftp.connect(p.host, p.port)
        if user:
            ftp.login(user, password or "")
        else:
            ftp.login()
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
    except BaseException:
        ftp.close()  # a refused login must not leave the control socket open
        raise
    ftp.set_pasv(p.passive)
    return ftp


def _names(ftp: ftplib.FTP, folder: str, match: Any) -> list[str]:
    try:
        entries = [(n, f.get("type")) for n, f in ftp.mlsd(folder)]
        names = [n for n, kind in entries if kind == "file"]
    except Exception:  # no MLSD: a plain listing
        names = [posixpath.basename(n) for n in ftp.nlst(folder)]
    return sorted(n for n in names if match(n))


def _download_all(
    p: DownloadFTPParams, dest: Path, user: str | None, pw: str | None, stop: threading.Event
) -> list[str]:
    from flowtaskd.components.support import commit_part, discard, part_path  # noqa: PLC0415

    if p.source is not None:
        folder, glob_ = p.source.directory, p.source.filename
        names_of = _names_glob(glob_)
    else:
        assert p.file is not None
        folder, regex = p.file.directory, re.compile(p.file.pattern)
        names_of = regex.search
    dest.mkdir(parents=True, exist_ok=True)
    saved: list[str] = []
    with _open(p, user, pw, p.connect_timeout) as ftp:
        names = _names(ftp, folder, names_of)
        if not names:
            raise FileNotFoundError(f"no remote file matches in {folder}")
        for name in names:
            target = dest / name
            if target.exists() and not p.overwrite:
                continue
            part = part_path(target)
            have = part.stat().st_size if p.resume and part.exists() else 0
            remote = posixpath.join(folder, name)
            done = False
            try:
                with open(part, "ab" if have else "wb") as fh:

                    def block(data: bytes, fh: Any = fh) -> None:
                        if stop.is_set():
                            raise Stopped
                        fh.write(data)

                    ftp.retrbinary(f"RETR {remote}", block, _BLOCK, rest=have or None)
                commit_part(part, target)
                done = True
            finally:
                if not done and not p.resume:
                    discard(part)
            saved.append(str(target))
            if p.remove:
                ftp.delete(remote)
    return saved


def _names_glob(pattern: str) -> Any:
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def _upload_all(
    p: UploadFTPParams, files: list[Path], user: str | None, pw: str | None, stop: threading.Event
) -> list[str]:
    sent: list[str] = []
    folder = p.destination.directory
    with _open(p, user, pw, p.connect_timeout) as ftp:
        existing = set(_names(ftp, folder, lambda _: True)) if not p.overwrite else set()
        for f in files:
            if f.name in existing:
                continue
            remote = posixpath.join(folder, f.name)
            part = remote + ".part"
            done = False
            try:
                with open(f, "rb") as fh:

                    def block(_: bytes) -> None:
                        if stop.is_set():
                            raise Stopped

                    ftp.storbinary(f"STOR {part}", fh, _BLOCK, callback=block)
                ftp.rename(part, remote)
                done = True
            finally:
                if not done:
                    _quietly(ftp.delete, part)
            sent.append(remote)
    return sent


def _quietly(func: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):  # cleanup after a failure, which is what is reported
        func(*args)


async def _in_thread(ctx: StepContext, p: FTPParams, work: Any) -> StepOutcome:
    import asyncio  # noqa: PLC0415
    import ftplib  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
    from flowtaskd.components.support import (  # noqa: PLC0415
        CredentialError,
        credential,
        plain_value,
    )

    try:
        user = plain_value(ctx, p.credentials.username)
        pw = credential(
            ctx,
            p.credentials.password,
            "credentials.password",
            allow_plaintext=p.allow_plaintext_credentials,
        )
    except CredentialError as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, user, pw, stop))
    try:
        async with asyncio.timeout(ctx.timeout):
            result = await asyncio.shield(task)
    except (TimeoutError, asyncio.CancelledError) as exc:
        stop.set()  # the thread stops at its next block and removes its .part
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancel is what is reported
        if isinstance(exc, asyncio.CancelledError):
            raise
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    except (ftplib.Error, OSError, EOFError) as exc:
        error = f"FTP {p.host}: {type(exc).__name__}: {exc}"
        return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
    return StepOutcome(StepStatus.DONE, output=json.dumps(result))


class DownloadFromFTPComponent(Component):
    name = "DownloadFromFTP"
    Params: ClassVar[type[StrictModel]] = DownloadFTPParams
    needs_env = True
    summary = "Download files matching a glob or a regex over FTP or FTPS."

    async def run(self, ctx: StepContext) -> StepOutcome:
        from flowtaskd.components.support import local_path  # noqa: PLC0415

        p = DownloadFTPParams.model_validate(ctx.params)
        dest = local_path(ctx, str(p.directory))
        return await _in_thread(
            ctx, p, lambda user, pw, stop: _download_all(p, dest, user, pw, stop)
        )


def _local_files(pattern: str) -> list[Path]:
    import glob  # noqa: PLC0415

    return sorted(Path(f) for f in glob.glob(pattern) if Path(f).is_file())


class UploadToFTPComponent(Component):
    name = "UploadToFTP"
    Params: ClassVar[type[StrictModel]] = UploadFTPParams
    needs_env = True
    summary = "Upload local files matching a glob over FTP or FTPS."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
        from flowtaskd.components.support import local_path  # noqa: PLC0415

        p = UploadFTPParams.model_validate(ctx.params)
        pattern = str(local_path(ctx, p.source.directory) / p.source.filename)
        files = await asyncio.to_thread(_local_files, pattern)
        if not files:
            return StepOutcome(StepStatus.FAILED, error=f"no local file matches {pattern}")
        return await _in_thread(
            ctx, p, lambda user, pw, stop: _upload_all(p, files, user, pw, stop)
        )


COMPONENTS: list[type[Component]] = [DownloadFromFTPComponent, UploadToFTPComponent]
