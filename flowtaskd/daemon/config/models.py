"""The daemon config's sections: one strict pydantic model for each section of the file.

:class:`InboxConfig`, :class:`ScheduleConfig`, :class:`ExecutorConfig` and the rest each
validate one section of the config file; :class:`~flowtaskd.daemon.config.load.DaemonConfig`
holds them all. Also here: how paths resolve (``AbsPath``: against the validation context's
working directory, ``~`` as ``$HOME``) and the defaults derived from ``state_dir`` and the
systemd directories (``$STATE_DIRECTORY``, ``$RUNTIME_DIRECTORY``). A section built alone
resolves against :meth:`Path.cwd` and :data:`os.environ`. Pure: nothing is created or checked
on disk.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowtaskd.core.cron import parse_cron, validate_timezone
from flowtaskd.core.events import ALL_EVENTS
from flowtaskd.core.options import Argv, Duration, Overlap, StrictModel
from flowtaskd.engine.hookpost import standard_key
from flowtaskd.errors import format_path

__all__ = [
    "AbsPath",
    "ConcurrencyConfig",
    "ControlConfig",
    "DaskLocalConfig",
    "ExecutorConfig",
    "HistoryConfig",
    "InboxConfig",
    "LogConfig",
    "MetricsConfig",
    "ScheduleConfig",
    "SecurityConfig",
    "WebConfig",
    "WebToken",
    "WebhookConfig",
]

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_MODULE = re.compile(_DOTTED)
_ENTRY = re.compile(rf"{_DOTTED}:{_DOTTED}")
_PORT = r"6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4}"
_LISTEN = re.compile(rf"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\s\[\]]+)):(?P<port>{_PORT})")
_SOCKET_MAX = 107  # bytes in sun_path, less the terminating NUL (Linux)


def _matching(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"'{value}' is not {what}")
        return value

    return AfterValidator(check)


def _event_ok(name: str) -> str:
    if name not in ALL_EVENTS:
        near = difflib.get_close_matches(name, ALL_EVENTS, n=1)
        raise ValueError(
            f"unknown event '{name}'" + (f" (did you mean '{near[0]}'?)" if near else "")
        )
    return name


_ModulePrefix = Annotated[str, _matching(_MODULE, "a module prefix such as 'mypkg.jobs'")]
EntryPoint = Annotated[str, _matching(_ENTRY, "'package.module:function'")]
_Listen = Annotated[str, _matching(_LISTEN, "host:port (e.g. 127.0.0.1:9464 or [::1]:9464)")]
_EventName = Annotated[str, AfterValidator(_event_ok)]


@dataclass(frozen=True)
class PathContext:
    """What relative paths and environment defaults resolve against."""

    cwd: Path
    environ: Mapping[str, str]

    @classmethod
    def of(cls, info: ValidationInfo) -> PathContext:
        ctx = info.context
        return ctx if isinstance(ctx, PathContext) else cls(Path.cwd(), os.environ)

    def path(self, value: str | os.PathLike[str]) -> Path:
        text = os.fspath(value)
        home = self.environ.get("HOME")
        path = Path(home, text[2:]) if home and (text == "~" or text.startswith("~/")) else None
        path = path or Path(text).expanduser()
        return path if path.is_absolute() else self.cwd / path

    def _env_dir(self, name: str) -> str:
        return self.environ.get(name, "").split(":")[0]

    def state_dir(self) -> Path:
        return self.path(self._env_dir("STATE_DIRECTORY") or "var")

    def socket(self, state_dir: Path) -> Path:
        runtime = self._env_dir("RUNTIME_DIRECTORY")
        return (self.path(runtime) if runtime else state_dir) / "control.sock"


def _problem(message: str, *at: str | int) -> PydanticCustomError:
    """An error whose key path is ``at`` below the failing model (see ``_problems``)."""
    text = f"{format_path(at)}: {message}" if at else message
    return PydanticCustomError("config", "{text}", {"text": text, "at": [(at, message)]})


def raw_path(value: Any, ctx: PathContext) -> Path | None:
    usable = (isinstance(value, str) and value.strip()) or isinstance(value, os.PathLike)
    return ctx.path(value) if usable else None


def _not_empty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("the path is empty")
    return value


def _absolute(value: Path, info: ValidationInfo) -> Path:
    return PathContext.of(info).path(value)


AbsPath = Annotated[Path, BeforeValidator(_not_empty), AfterValidator(_absolute)]


def with_default(section: Any, key: str, default: Any) -> Any:
    """``section`` with ``key`` set to ``default`` when missing or null."""
    if section is None:
        section = {}
    if isinstance(section, dict) and section.get(key) is None:
        return {**section, key: default}
    return section


def inbox_defaults(data: Any, ctx: PathContext, state_dir: Path) -> Any:
    if not isinstance(data, dict) or (path := raw_path(data.get("path"), ctx)) is None:
        return data
    out = with_default(data, "name", path.name)
    if isinstance(out["name"], str):
        out = with_default(out, "archive", state_dir / "archive" / out["name"])
    return out


class InboxConfig(StrictModel):
    """A drop folder: each file dropped into ``path`` starts a run, then moves to ``archive``.

    Inside a :class:`DaemonConfig` the archive defaults under its ``state_dir``; built alone,
    under the default state dir (``$STATE_DIRECTORY`` or ``./var``).
    """

    path: AbsPath
    archive: AbsPath = Path()  # always filled by _defaults: <state_dir>/archive/<name>
    name: str = ""  # always filled by _defaults: the folder's name
    params: dict[str, Any] = Field(default_factory=dict, description="Run params for drops.")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        ctx = PathContext.of(info)
        return inbox_defaults(data, ctx, ctx.state_dir())

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if value in ("", ".", "..") or "/" in value or "\0" in value:
            raise ValueError(f"'{value}' cannot name an inbox (it names its archive folder)")
        return value


def _env_value(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class ScheduleConfig(StrictModel):
    """Run a library ``task`` or a plain ``command`` at ``cron`` times or ``every`` interval."""

    id: str = Field(default="", min_length=1)  # filled by _derive_id when not given
    task: str | None = Field(default=None, min_length=1)
    command: Argv | None = None
    cron: str | None = None
    every: Duration | None = Field(default=None, gt=0, description="Seconds, or '30s', '5m'.")
    timezone: str = "UTC"
    jitter: Duration = 0.0
    params: dict[str, Any] = Field(default_factory=dict)
    catchup: Literal["none", "latest", "all"] = "latest"
    misfire_grace: Duration = 3600.0
    overlap: Overlap | None = None
    env: dict[str, Annotated[str, BeforeValidator(_env_value)]] | None = None
    cwd: AbsPath | None = None
    timeout: Duration | None = None

    @property
    def interval(self) -> timedelta | None:
        return None if self.every is None else timedelta(seconds=self.every)

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        """``<task or command> (<cron or every N>)``: stable when entries are reordered."""
        if not isinstance(data, dict) or data.get("id") is not None:
            return data
        task, command, cron, every = (data.get(k) for k in ("task", "command", "cron", "every"))
        what = task if isinstance(task, str) else command if isinstance(command, str) else None
        if isinstance(command, list) and task is None:
            what = shlex.join(str(part) for part in command)
        when = cron if isinstance(cron, str) else f"every {every}" if every is not None else None
        return {**data, "id": f"{what} ({when})"} if what and when else data

    @field_validator("cron")
    @classmethod
    def _cron_ok(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)  # CronError is a ValueError: pydantic reports its message
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_ok(cls, value: str) -> str:
        validate_timezone(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleConfig:
        if self.task is not None and self.command is not None:
            raise _problem(
                "set `task` (a library task) or `command` (an argv), not both", "command"
            )
        if self.task is None and self.command is None:
            raise _problem("a schedule needs `task` (a library task name) or `command` (an argv)")
        if self.cron is not None and self.every is not None:
            raise _problem("set `cron` or `every`, not both", "every")
        if self.cron is None and self.every is None:
            raise _problem("a schedule needs `cron` (e.g. '0 3 * * *') or `every` (e.g. '5m')")
        if self.task is not None:
            for key in ("env", "cwd", "timeout"):
                if getattr(self, key) is not None:
                    raise _problem("only for `command` schedules; a task sets its own", key)
        return self


class ConcurrencyConfig(StrictModel):
    max_runs: int = Field(default=8, ge=1, description="Runs running at once, all tasks.")
    max_queued: int = Field(default=10000, ge=1, description="Runs waiting; more are refused.")
    default_max_active_runs: int = Field(default=1, ge=1)
    default_max_active_steps: int = Field(default=16, ge=1)


class DaskLocalConfig(StrictModel):
    """A dask LocalCluster the daemon starts itself."""

    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)


class ExecutorConfig(StrictModel):
    kind: Literal["local", "dask"] = "local"
    address: str | None = Field(default=None, min_length=1, description="A dask scheduler.")
    local: DaskLocalConfig | None = None
    on_unreachable: Literal["fail", "wait"] = "fail"

    @model_validator(mode="after")
    def _dask_target(self) -> ExecutorConfig:
        if self.kind == "local":
            for key in ("address", "local"):
                if getattr(self, key) is not None:
                    raise _problem("only used with `kind: dask`", key)
        elif (self.address is None) == (self.local is None):
            if self.address is not None:
                raise _problem("set `address` or `local`, not both", "local")
            raise _problem("`kind: dask` needs `address` (a scheduler) or `local` (a cluster)")
        return self


class LogConfig(StrictModel):
    format: Literal["auto", "json", "console", "journald"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class HistoryConfig(StrictModel):
    retention_days: float | None = Field(default=30.0, gt=0, description="null: keep all.")
    max_runs_per_task: int | None = Field(default=1000, ge=1, description="null: no cap.")
    path: AbsPath = Path()  # always filled by _defaults: <state_dir>/history.db

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        return with_default(data, "path", PathContext.of(info).state_dir() / "history.db")


class SecurityConfig(StrictModel):
    trust_all_files: bool = False
    python_allow: list[_ModulePrefix] | None = Field(default=None, description="null: any.")


def _octal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value.strip().removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f"'{value}' is not an octal mode such as '0660'") from None
    return value


class ControlConfig(StrictModel):
    socket: AbsPath = Path()  # always filled by _defaults
    mode: Annotated[int, BeforeValidator(_octal)] = 0o660
    max_connections: int = Field(
        default=256, ge=1, description="Connections at once; more are refused with an error."
    )
    idle_timeout: Duration = Field(
        default=60.0, gt=0, description="An idle connection (not subscribed) is closed after it."
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        ctx = PathContext.of(info)
        return with_default(data, "socket", ctx.socket(ctx.state_dir()))

    @field_validator("socket")
    @classmethod
    def _short_enough(cls, value: Path) -> Path:
        size = len(os.fsencode(value))
        if size > _SOCKET_MAX:
            raise ValueError(f"a socket path has at most {_SOCKET_MAX} bytes, this has {size}")
        return value

    @field_validator("mode")
    @classmethod
    def _mode_ok(cls, value: int) -> int:
        if isinstance(value, bool) or not 0 <= value <= 0o777:
            raise ValueError(f"{value} is not a mode 0-0777 (write it as a string: '0660')")
        return value


class WebhookConfig(StrictModel):
    url: str = Field(repr=False)  # may hold a token or password
    events: list[_EventName] | None = Field(default=None, description="null: every event.")
    tasks: list[str] | None = Field(default=None, description="null: every task.")
    secret: str | list[str] | None = Field(
        default=None,
        repr=False,
        description="signing: standard: whsec_<base64> (a list: several, for rotation); "
        "signing: github: any string.",
    )
    signing: Literal["standard", "github"] = Field(
        default="standard",
        description="standard: Standard Webhooks; github: X-Flowtaskd-Signature.",
    )
    timeout: Duration = 10.0
    retry_schedule: list[Duration] | None = Field(
        default=None, description="Waits before each retry; null: 5s, 5m, 30m, 2h, 5h, 10h."
    )
    retries: int | None = Field(
        default=None, ge=0, description="How many retries; null: one per retry_schedule entry."
    )

    @model_validator(mode="after")
    def _secrets_fit_signing(self) -> WebhookConfig:
        secrets = self.secret if isinstance(self.secret, list) else [self.secret or ""]
        secrets = [s for s in secrets if s]
        if self.signing == "github" and len(secrets) > 1:
            raise _problem("signing: github takes one secret", "secret")
        if self.signing == "standard":
            for s in secrets:
                try:
                    standard_key(s)
                except ValueError as exc:
                    raise _problem(
                        f"{exc} (for a plain HMAC key, set signing: github)", "secret"
                    ) from None
        return self

    @field_validator("url")
    @classmethod
    def _url_ok(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook url starts with http:// or https:// and names a host")
        return value


class MetricsConfig(StrictModel):
    listen: _Listen | None = Field(default=None, description="e.g. 127.0.0.1:9464.")

    @property
    def address(self) -> tuple[str, int] | None:
        match = _LISTEN.fullmatch(self.listen) if self.listen else None
        return (match["v6"] or match["host"], int(match["port"])) if match else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebToken(StrictModel):
    """One more login token for the web API: its SHA-256 (hex), or a file holding it."""

    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$", repr=False)
    file: AbsPath | None = None

    @model_validator(mode="after")
    def _one(self) -> WebToken:
        if (self.sha256 is None) == (self.file is None):
            raise _problem("give `sha256` (of the token, hex) or `file` (holding it), not both")
        return self


class WebConfig(StrictModel):
    """The HTTP API and dashboard: on by default on loopback; ``web: false`` turns it off."""

    enabled: bool = True
    listen: _Listen = Field(default="127.0.0.1:8470", description="host:port; port 0: any.")
    insecure_http: bool = Field(default=False, description="Allow plain HTTP off loopback.")
    tls_cert: AbsPath | None = None
    tls_key: AbsPath | None = None
    token_file: AbsPath | None = Field(default=None, description="Default <state_dir>/web-token.")
    tokens: list[WebToken] = Field(default_factory=list)
    public_url: str | None = Field(default=None, description="The URL users open (a proxy's).")
    session_hours: float = Field(default=12.0, gt=0)
    login_failures: int = Field(default=10, ge=1, description="Per client per minute, then 429.")

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, data: Any) -> Any:
        if isinstance(data, bool):
            return {"enabled": data}
        return {} if data is None else data

    @property
    def address(self) -> tuple[str, int]:
        match = _LISTEN.fullmatch(self.listen)
        assert match is not None  # checked by the field
        return (match["v6"] or match["host"], int(match["port"]))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @model_validator(mode="after")
    def _safe(self) -> WebConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise _problem("TLS needs both `tls_cert` and `tls_key`", missing)
        exposed = self.enabled and not _is_loopback(self.address[0])
        if exposed and not self.tls and not self.insecure_http:
            raise _problem(
                f"'{self.listen}' is not a loopback address: set `tls_cert` and `tls_key`,"
                " or `insecure_http: true` (behind a TLS reverse proxy)",
                "listen",
            )
        return self
