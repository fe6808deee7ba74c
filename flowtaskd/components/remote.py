"""Remote shells and files over SSH (asyncssh, the ``net`` extra): ``RunSSH``,
``DownloadFromSFTP``, ``UploadToSFTP``.

The server's host key is checked against ``known_hosts`` (default ``~/.ssh/known_hosts``);
only ``insecure_skip_host_check: true`` turns that off. Keys and passwords are credentials
(see :mod:`flowtaskd.components.support`). A transfer writes ``<name>.part`` and renames it
when complete; a failed, timed-out or cancelled one removes the ``.part`` -- or, with
``resume: true``, leaves it so that the next attempt goes on from where it stopped.
``RunSSH`` runs ``commands`` in order and stops at the first that fails; a timeout or a
cancel signals the remote command (TERM) and closes the session. OpenSSH does not pass
signals to a root login's commands: there, ``pty: true`` makes the end of the session
hang the command up (SIGHUP).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import posixpath
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.support import Credentials, ExtraParams
from flowtaskd.core.options import StrictModel, Timeout
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "SSHParams", "connect", "import_asyncssh"]

_OUTPUT_CAP = 65536


def import_asyncssh() -> Any:
    """asyncssh, imported without the deprecation warnings its crypto layer prints."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh  # noqa: PLC0415

    return asyncssh


class SSHCredentials(Credentials):
    client_keys: list[str] | None = Field(default=None, description="Private key files.")
    passphrase: str | None = Field(default=None, description="Of the keys (a credential).")
    known_hosts: str | None = Field(default=None, description="Default ~/.ssh/known_hosts.")


class SSHParams(ExtraParams):
    requires = ("asyncssh",)
    extra = "net"

    host: str
    port: int = Field(default=22, ge=1, le=65535)
    credentials: SSHCredentials = Field(default_factory=SSHCredentials)
    insecure_skip_host_check: bool = Field(
        default=False, description="Do not check the server's host key (never in production)."
    )
    allow_plaintext_credentials: bool = False
    connect_timeout: Timeout = 30.0


class RunSSHParams(SSHParams):
    commands: list[str] = Field(validation_alias=AliasChoices("commands", "command"), min_length=1)
    output_cap: int = Field(default=_OUTPUT_CAP, ge=0)
    pty: bool = Field(
        default=False,
        description="Run in a terminal: the command gets SIGHUP when the session ends "
        "(needed to stop it as root, whose sessions OpenSSH does not signal); "
        "stderr then comes with stdout.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_command(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("command"), str):
            return {**data, "command": [data["command"]]}
        return data


class RemoteFiles(StrictModel):
    directory: str = Field(description="The remote folder.")
    filename: str = Field(default="*", description="A name or a glob.")


class FilePattern(StrictModel):
    pattern: str = Field(description="A remote path with a glob, e.g. /out/orders_*.csv.")


class DownloadParams(SSHParams):
    source: RemoteFiles | None = None
    file: FilePattern | None = None
    filename: str | None = Field(default=None, description="One remote path.")
    directory: str = Field(description="The local folder files are saved into.")
    create_destination: bool = True
    overwrite: bool = True
    resume: bool = Field(default=False, description="Go on from a .part a failed try left.")
    remove: bool = Field(default=False, description="Delete each remote file once saved.")

    @model_validator(mode="after")
    def _named(self) -> DownloadParams:
        if sum(x is not None for x in (self.source, self.file, self.filename)) != 1:
            raise ValueError("name the remote files with one of `source`, `file` or `filename`")
        return self

    def remote_pattern(self) -> tuple[str, str]:
        if self.source is not None:
            return self.source.directory, self.source.filename
        path = self.file.pattern if self.file is not None else str(self.filename)
        return posixpath.dirname(path) or ".", posixpath.basename(path)


class LocalFiles(StrictModel):
    directory: str
    filename: str = Field(default="*", description="A name or a glob.")


class RemoteDir(StrictModel):
    directory: str


class UploadParams(SSHParams):
    source: LocalFiles | None = None
    file: FilePattern | None = Field(default=None, description="A local path with a glob.")
    destination: RemoteDir
    overwrite: bool = True
    resume: bool = False

    @model_validator(mode="after")
    def _named(self) -> UploadParams:
        if (self.source is None) == (self.file is None):
            raise ValueError("name the local files with one of `source` or `file`")
        return self


async def connect(ctx: StepContext, p: SSHParams) -> Any:
    """An open asyncssh connection (a credential or host key problem raises)."""
    from flowtaskd.components.support import credential, local_path, plain_value  # noqa: PLC0415

    asyncssh = import_asyncssh()
    c = p.credentials
    allow = p.allow_plaintext_credentials
    kwargs: dict[str, Any] = {
        "username": plain_value(ctx, c.username),
        "password": credential(ctx, c.password, "credentials.password", allow_plaintext=allow),
        "passphrase": credential(
            ctx, c.passphrase, "credentials.passphrase", allow_plaintext=allow
        ),
        "connect_timeout": p.connect_timeout,
        "config": None,
        "agent_path": None,
    }
    if c.client_keys is not None:
        kwargs["client_keys"] = [str(local_path(ctx, k)) for k in c.client_keys]
    if p.insecure_skip_host_check:
        kwargs["known_hosts"] = None
    elif c.known_hosts is not None:
        kwargs["known_hosts"] = str(local_path(ctx, c.known_hosts))
    if kwargs["password"] is None:
        kwargs.pop("password")
    return await asyncssh.connect(plain_value(ctx, p.host), p.port, **kwargs)


async def _guarded(ctx: StepContext, work: Any) -> StepOutcome:
    """Run ``work()`` under the step's timeout; SSH and OS errors become failures."""
    import asyncio  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
    from flowtaskd.components.support import CredentialError  # noqa: PLC0415

    asyncssh = import_asyncssh()
    try:
        async with asyncio.timeout(ctx.timeout):
            outcome: StepOutcome = await work()
    except TimeoutError:
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    except CredentialError as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    except (asyncssh.Error, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        error = f"{type(exc).__name__}: {reason}"
        return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
    return mask_outcome(outcome, ctx.secrets)


class RunSSHComponent(Component):
    name = "RunSSH"
    Params: ClassVar[type[StrictModel]] = RunSSHParams
    needs_env = True
    summary = "Run commands on a remote host over SSH; stops at the first that fails."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = RunSSHParams.model_validate(ctx.params)
        return await _guarded(ctx, lambda: _run_commands(ctx, p))


async def _run_commands(ctx: StepContext, p: RunSSHParams) -> StepOutcome:
    import asyncio  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    out: list[str] = []
    err = ""
    code: int | None = None
    async with await connect(ctx, p) as conn:
        for i, command in enumerate(p.commands):
            process = await conn.create_process(
                command,
                encoding="utf-8",
                errors="replace",
                term_type="dumb" if p.pty else None,
            )
            try:
                stdout, stderr = await asyncio.gather(process.stdout.read(), process.stderr.read())
                await process.wait_closed()
            except BaseException:  # timeout or cancel: stop the remote command
                _stop(process)
                raise
            out.append(stdout)
            err = stderr
            code = process.exit_status
            if code != 0:
                text = "".join(out)[-p.output_cap :]
                last = stderr.strip().splitlines()[-1:] if stderr.strip() else []
                why = f"commands[{i}] exited {code}" if code is not None else f"commands[{i}] died"
                if process.exit_signal:
                    why += f" (signal {process.exit_signal[0]})"
                return StepOutcome(
                    StepStatus.FAILED,
                    output=text,
                    exit_code=code,
                    error=why + (f": {last[0][:300]}" if last else ""),
                    stdout_tail=text[-4096:],
                    stderr_tail=stderr[-4096:],
                )
    text = "".join(out)[-p.output_cap :]
    return StepOutcome(
        StepStatus.DONE,
        output=text,
        exit_code=code,
        stdout_tail=text[-4096:],
        stderr_tail=err[-4096:],
    )


def _stop(process: Any) -> None:
    with contextlib.suppress(Exception):  # the channel may be gone already
        process.send_signal("TERM")
    process.close()


class DownloadFromSFTPComponent(Component):
    name = "DownloadFromSFTP"
    Params: ClassVar[type[StrictModel]] = DownloadParams
    needs_env = True
    summary = "Download files matching a pattern over SFTP."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = DownloadParams.model_validate(ctx.params)
        return await _guarded(ctx, lambda: _download(ctx, p))


async def _download(ctx: StepContext, p: DownloadParams) -> StepOutcome:
    import asyncio  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.support import local_path  # noqa: PLC0415

    folder, pattern = p.remote_pattern()
    dest = local_path(ctx, p.directory)
    if not dest.is_dir():
        if not p.create_destination:
            return StepOutcome(StepStatus.FAILED, error=f"no local folder {dest}")
        await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    saved: list[str] = []
    async with await connect(ctx, p) as conn, conn.start_sftp_client() as sftp:
        names = sorted(
            e.filename
            for e in await sftp.readdir(folder)
            if fnmatch.fnmatchcase(e.filename, pattern) and e.attrs.type == 1  # regular files
        )
        if not names:
            return StepOutcome(
                StepStatus.FAILED, error=f"no remote file matches {folder}/{pattern}"
            )
        for name in names:
            target = dest / name
            if target.exists() and not p.overwrite:
                continue
            remote = posixpath.join(folder, name)
            await _get(sftp, remote, target, p.resume)
            saved.append(str(target))
            if p.remove:
                await sftp.remove(remote)
    return StepOutcome(StepStatus.DONE, output=json.dumps(saved))


async def _get(sftp: Any, remote: str, target: Path, resume: bool) -> None:
    import asyncio  # noqa: PLC0415

    from flowtaskd.components.support import commit_part, discard, part_path  # noqa: PLC0415

    part = part_path(target)
    done = False
    try:
        have = part.stat().st_size if resume and part.exists() else 0
        if have:
            await _append_from(sftp, remote, part, have)
        else:
            await sftp.get(remote, str(part))  # asyncssh's own block size and pipelining: fastest
        await asyncio.to_thread(commit_part, part, target)
        done = True
    finally:
        if not done and not resume:
            discard(part)


async def _append_from(sftp: Any, remote: str, part: Path, offset: int) -> None:
    """Resume: copy the remote file from ``offset`` onto the end of ``part``."""
    import asyncio  # noqa: PLC0415

    async with sftp.open(remote, "rb") as src:
        await src.seek(offset)
        fh = await asyncio.to_thread(open, part, "ab")
        try:
            while chunk := await src.read(1 << 18):
                await asyncio.to_thread(fh.write, chunk)
        finally:
            await asyncio.to_thread(fh.close)


class UploadToSFTPComponent(Component):
    name = "UploadToSFTP"
    Params: ClassVar[type[StrictModel]] = UploadParams
    needs_env = True
    summary = "Upload local files matching a pattern over SFTP."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = UploadParams.model_validate(ctx.params)
        return await _guarded(ctx, lambda: _upload(ctx, p))


def _local_matches(ctx: StepContext, p: UploadParams) -> list[Path]:
    import glob  # noqa: PLC0415

    from flowtaskd.components.support import local_path  # noqa: PLC0415

    if p.source is not None:
        pattern = str(local_path(ctx, p.source.directory) / p.source.filename)
    else:
        pattern = str(local_path(ctx, p.file.pattern if p.file else ""))
    return sorted(Path(m) for m in glob.glob(pattern) if Path(m).is_file())


async def _upload(ctx: StepContext, p: UploadParams) -> StepOutcome:
    import asyncio  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    files = await asyncio.to_thread(_local_matches, ctx, p)
    if not files:
        return StepOutcome(StepStatus.FAILED, error="no local file matches the source")
    sent: list[str] = []
    async with await connect(ctx, p) as conn, conn.start_sftp_client() as sftp:
        folder = p.destination.directory
        for f in files:
            remote = posixpath.join(folder, f.name)
            if not p.overwrite and await sftp.exists(remote):
                continue
            await _put(sftp, f, remote, p.resume)
            sent.append(remote)
    return StepOutcome(StepStatus.DONE, output=json.dumps(sent))


async def _put(sftp: Any, local: Path, remote: str, resume: bool) -> None:
    part = remote + ".part"
    done = False
    try:
        have = (await sftp.stat(part)).size if resume and await sftp.exists(part) else 0
        if have:
            async with sftp.open(part, "ab") as dst:
                with open(local, "rb") as src:  # noqa: ASYNC230 - small reads, local disk
                    src.seek(have)
                    while chunk := src.read(1 << 18):
                        await dst.write(chunk)
        else:
            await sftp.put(str(local), part)
        if await sftp.exists(remote):
            await sftp.remove(remote)
        await sftp.rename(part, remote)
        done = True
    finally:
        if not done and not resume:
            with contextlib.suppress(Exception):  # the connection may be gone
                await sftp.remove(part)


COMPONENTS: list[type[Component]] = [
    RunSSHComponent,
    DownloadFromSFTPComponent,
    UploadToSFTPComponent,
]
