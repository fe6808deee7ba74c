"""``Rsync``: the system ``rsync``, run as an argv (never through a shell), over SSH.

The side that names a ``server`` is the remote one (a push when it is the destination, a
pull when it is the source; neither: a local copy). SSH runs with ``BatchMode`` and
``StrictHostKeyChecking=yes`` against ``known_hosts``, and keys from ``client_keys``
(rsync over SSH takes no password). The step's timeout or a cancel stops rsync's whole
process group; rsync writes each file under a temporary name and renames it when
complete, so an interrupted run leaves no half file under the real name.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.support import Credentials
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "rsync_argv"]


class Side(StrictModel):
    directory: str
    server: str | None = Field(default=None, description="Remote host of this side.")
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class RsyncCredentials(Credentials):
    client_keys: list[str] | None = None
    known_hosts: str | None = Field(default=None, description="Default ~/.ssh/known_hosts.")


class RsyncParams(StrictModel):
    source: Side
    destination: Side
    flags: str = Field(default="azrv", pattern=r"^[A-Za-z]+$", description="Short options.")
    delete: bool = Field(default=False, description="Delete what the source no longer has.")
    exclude: list[str] = Field(default_factory=list)
    credentials: RsyncCredentials = Field(default_factory=RsyncCredentials)
    output_cap: int = Field(default=65536, ge=0)

    @model_validator(mode="after")
    def _one_remote(self) -> RsyncParams:
        if self.source.server and self.destination.server:
            raise ValueError("only one of source and destination can name a server")
        return self


def _spec(side: Side, default_user: str | None) -> str:
    folder = side.directory
    if side.server is None:
        return folder
    user = side.user or default_user
    return f"{user}@{side.server}:{folder}" if user else f"{side.server}:{folder}"


def rsync_argv(p: RsyncParams, rsync: str = "rsync", ssh: str = "ssh") -> list[str]:
    """The rsync command line (each value one argument; ``-e`` quoted for rsync's split)."""
    argv = [rsync, f"-{p.flags}"]
    remote = p.source if p.source.server else p.destination if p.destination.server else None
    if remote is not None:
        c = p.credentials
        e = [ssh, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if remote.port:
            e += ["-p", str(remote.port)]
        if c.known_hosts:
            e += ["-o", f"UserKnownHostsFile={c.known_hosts}"]
        for key in c.client_keys or []:
            e += ["-i", key, "-o", "IdentitiesOnly=yes"]
        argv += ["-e", shlex.join(e)]
    if p.delete:
        argv.append("--delete")
    argv += [f"--exclude={x}" for x in p.exclude]
    user = p.credentials.username
    argv += ["--", _spec(p.source, user), _spec(p.destination, user)]
    return argv


class RsyncComponent(Component):
    name = "Rsync"
    Params: ClassVar[type[StrictModel]] = RsyncParams
    needs_env = True
    summary = "Copy folders with the system rsync (over SSH when a side names a server)."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import shutil  # noqa: PLC0415

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
        from flowtaskd.components.runtime import run_argv  # noqa: PLC0415

        p = RsyncParams.model_validate(ctx.params)
        rsync = shutil.which("rsync")
        if rsync is None:
            return StepOutcome(StepStatus.FAILED, error="rsync is not installed on this host")
        outcome = await run_argv(ctx, rsync_argv(p, rsync), p.output_cap)
        return _with_ssh_reason(outcome)


def _with_ssh_reason(outcome: StepOutcome) -> StepOutcome:
    """rsync's own last line (``unexplained error (code 255)``) hides why SSH failed."""
    from dataclasses import replace  # noqa: PLC0415

    if outcome.exit_code != 255 or not outcome.stderr_tail:
        return outcome
    ssh = [
        ln for ln in outcome.stderr_tail.splitlines() if ln.strip() and not ln.startswith("rsync")
    ]
    if not ssh:
        return outcome
    return replace(outcome, error=f"exit code 255 (ssh): {ssh[0][:300]}")


COMPONENTS: list[type[Component]] = [RsyncComponent]
