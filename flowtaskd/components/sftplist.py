"""``FileList``'s ``sftp_config`` (upstream's remote listing): the files of a folder on an
SFTP server, as items for a group (e.g. a ``DownloadFromSFTP`` per file).

The connection is :func:`flowtaskd.components.remote.connect`'s (asyncssh, the ``net``
extra): host keys are checked against ``known_hosts`` unless the task says
``insecure_skip_host_check: true``, and a password must be one of the run's secrets. Each
item's ``file`` is the full remote path; ``host`` says where.
"""

from __future__ import annotations

import posixpath
import stat
from typing import TYPE_CHECKING, Any

from pydantic import Field

from flowtaskd.components.remote import SSHCredentials
from flowtaskd.components.support import ExtraParams
from flowtaskd.core.options import Timeout
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["SFTPListConfig", "list_remote"]


class SFTPListConfig(ExtraParams, SSHCredentials):
    """Upstream's ``sftp_config``: where to connect, the folder, and the credentials
    (``username``, ``password``, ``client_keys``, ``known_hosts``) flat beside them."""

    requires = ("asyncssh",)
    extra = "net"

    host: str = Field(description="The SFTP server (or the name of an env var holding it).")
    port: int = Field(default=22, ge=1, le=65535)
    directory: str = Field(description="The remote folder to list.")
    insecure_skip_host_check: bool = Field(
        default=False, description="Do not check the server's host key (never in production)."
    )
    allow_plaintext_credentials: bool = False
    connect_timeout: Timeout = 30.0


def _ssh_params(cfg: SFTPListConfig) -> Any:
    from flowtaskd.components.remote import SSHParams  # noqa: PLC0415

    creds = cfg.model_dump(include=set(SSHCredentials.model_fields), by_alias=False)
    return SSHParams(
        host=cfg.host,
        port=cfg.port,
        credentials=SSHCredentials.model_validate(creds),
        insecure_skip_host_check=cfg.insecure_skip_host_check,
        allow_plaintext_credentials=cfg.allow_plaintext_credentials,
        connect_timeout=cfg.connect_timeout,
    )


async def list_remote(
    ctx: StepContext,
    cfg: SFTPListConfig,
    pattern: str,
    sort: str,
    reverse: bool,
    limit: int | None,
    files_only: bool,
) -> StepOutcome:
    """The items of ``cfg.directory`` matching ``pattern``, as ``FileList`` gives them."""
    import asyncio  # noqa: PLC0415 - keep validation pure

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.remote import connect, import_asyncssh  # noqa: PLC0415
    from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
    from flowtaskd.components.support import CredentialError, plain_value  # noqa: PLC0415

    asyncssh = import_asyncssh()
    p = _ssh_params(cfg)
    where = f"{cfg.directory} on {p.host}"
    try:
        async with asyncio.timeout(ctx.timeout):
            conn = await connect(ctx, p)
            async with conn, conn.start_sftp_client() as sftp:
                if not await sftp.isdir(cfg.directory):
                    return StepOutcome(StepStatus.FAILED, error=f"no remote folder {where}")
                try:
                    names = await sftp.glob_sftpname(posixpath.join(cfg.directory, pattern))
                except asyncssh.SFTPNoSuchFile:
                    names = []
    except TimeoutError:
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    except CredentialError as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    except (asyncssh.Error, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        error = f"listing {where}: {type(exc).__name__}: {reason}"
        return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
    items = _items(names, sort, reverse, limit, files_only, str(plain_value(ctx, p.host)))
    output = "\n".join(i["file"] for i in items)
    return mask_outcome(StepOutcome(StepStatus.DONE, output=output, items=items), ctx.secrets)


def _kept(entry: Any, files_only: bool) -> bool:
    name = posixpath.basename(entry.filename)
    if name.startswith(".") or name in ("", "..", "."):
        return False
    mode = entry.attrs.permissions
    if entry.attrs.type == 1:  # FILEXFER_TYPE_REGULAR
        return True
    if mode is not None and entry.attrs.type in (None, 5):  # unknown: look at the mode
        return stat.S_ISREG(mode) or (not files_only and stat.S_ISDIR(mode))
    return not files_only and entry.attrs.type == 2  # a folder


def _items(
    names: list[Any], sort: str, reverse: bool, limit: int | None, files_only: bool, host: str
) -> list[dict[str, Any]]:
    found = [n for n in names if _kept(n, files_only)]
    keys = {
        "mtime": lambda n: (n.attrs.mtime or 0, n.filename),
        "size": lambda n: (n.attrs.size or 0, n.filename),
        "name": lambda n: n.filename,
    }
    if sort in keys:
        found.sort(key=keys[sort], reverse=reverse)
    if limit is not None:
        found = found[:limit]
    out = []
    for i, entry in enumerate(found):
        path = entry.filename
        name = posixpath.basename(path)
        stem, suffix = posixpath.splitext(name)
        out.append(
            {
                "file": path,
                "name": name,
                "stem": stem,
                "suffix": suffix,
                "folder": posixpath.dirname(path),
                "size": entry.attrs.size,
                "mtime": entry.attrs.mtime,
                "index": i,
                "host": host,
            }
        )
    return out
