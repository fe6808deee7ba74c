"""The daemon's config: one YAML or TOML file validated into a frozen :class:`DaemonConfig`.

Every key is optional; :func:`default_config` is what an empty file (or no file) means.
Unknown keys are errors with a did-you-mean hint, and :func:`load_config` reports every
problem at once, each as ``FILE:LINE: key.path: message`` in a :class:`ConfigError`. This
module holds :class:`DaemonConfig` itself, the checks between entries, loading and the
summary; the model of each section, and the path rules below, are in
:mod:`flowtaskd.daemon.config.models` (re-exported here).

**Relative paths resolve against the working directory** (``cwd``, default
:meth:`Path.cwd`), not against the config file's folder: under systemd set
``WorkingDirectory=``; from a checkout, ``flowtaskd run --config config/flowtaskd.yaml`` in
the repository root keeps state in ``./var``. ``~`` means ``$HOME``. ``state_dir`` defaults
to ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``; the first path when it lists
several) and then ``./var``. Once ``state_dir`` is known the values derived from it are
filled in: the inbox ``<state_dir>/inbox``, each inbox's archive
``<state_dir>/archive/<name>``, ``history.path`` ``<state_dir>/history.db`` and
``control.socket`` (``$RUNTIME_DIRECTORY/control.sock`` under systemd, else
``<state_dir>/control.sock``). So after validation no path is relative and none is missing.

A key whose value is empty (``history:`` with every option commented out) means its
default. Validation is pure: no folder is created or checked here; the parts that use a
folder report it when it is missing. Secrets (webhook secrets, URL passwords) stay out of
``repr`` and :func:`config_summary`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowtaskd.core.loader import Document, format_for, load_document
from flowtaskd.core.options import Duration, StrictModel
from flowtaskd.core.schema import pydantic_problems
from flowtaskd.daemon.config.models import (
    AbsPath,
    ConcurrencyConfig,
    ControlConfig,
    DaskLocalConfig,
    EntryPoint,
    ExecutorConfig,
    HistoryConfig,
    InboxConfig,
    LogConfig,
    MetricsConfig,
    PathContext,
    ScheduleConfig,
    SecurityConfig,
    WebConfig,
    WebhookConfig,
    inbox_defaults,
    raw_path,
    with_default,
)
from flowtaskd.errors import ConfigError, Problem, TaskNotFound, TaskParseError, format_path

__all__ = [
    "ConcurrencyConfig",
    "ControlConfig",
    "DaemonConfig",
    "DaskLocalConfig",
    "ExecutorConfig",
    "HistoryConfig",
    "InboxConfig",
    "LogConfig",
    "MetricsConfig",
    "ScheduleConfig",
    "SecurityConfig",
    "WebConfig",
    "WebhookConfig",
    "config_summary",
    "default_config",
    "load_config",
]

_Where = tuple[str | int, ...]


class DaemonConfig(StrictModel):
    """Everything the daemon reads from its config file; see the module docstring."""

    state_dir: AbsPath = Path("var")  # always filled by _defaults (env, then ./var)
    tasks: list[AbsPath] = Field(
        default_factory=lambda: [Path("config/tasks")], validate_default=True
    )
    inboxes: list[InboxConfig] = Field(default_factory=list)  # default filled by _defaults
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    subscribers: list[EntryPoint] = Field(default_factory=list)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    shutdown_grace: Duration = Field(default=30.0, description="Drain time after SIGTERM.")
    kill_grace: Duration = Field(default=5.0, description="SIGTERM to SIGKILL, per step.")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        ctx = PathContext.of(info)
        out = {key: value for key, value in data.items() if value is not None}
        state = raw_path(out.setdefault("state_dir", ctx.state_dir()), ctx)
        state = state or ctx.state_dir()  # a bad state_dir is reported by its field
        inboxes = out.setdefault("inboxes", [{"path": state / "inbox"}])
        if isinstance(inboxes, list):
            out["inboxes"] = [inbox_defaults(item, ctx, state) for item in inboxes]
        out["history"] = with_default(out.get("history"), "path", state / "history.db")
        out["control"] = with_default(out.get("control"), "socket", ctx.socket(state))
        web = out.get("web", {})
        web = {"enabled": web} if isinstance(web, bool) else web
        out["web"] = with_default(web, "token_file", state / "web-token")
        return out

    @model_validator(mode="after")
    def _consistent(self) -> DaemonConfig:
        found = _clashes(self)
        if found:
            text = "; ".join(f"{format_path(at)}: {message}" for at, message in found)
            raise PydanticCustomError("config", "{text}", {"text": text, "at": found})
        return self


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _clashes(cfg: DaemonConfig) -> list[tuple[_Where, str]]:
    """Problems between entries: duplicate names and ids, folders that overlap."""
    found: list[tuple[_Where, str]] = []
    watched: list[tuple[str, Path]] = [(f"tasks[{k}]", p) for k, p in enumerate(cfg.tasks)]
    names: dict[str, int] = {}
    for i, inbox in enumerate(cfg.inboxes):
        if (first := names.setdefault(inbox.name, i)) != i:
            found.append((("inboxes", i, "name"), f"'{inbox.name}' is inboxes[{first}]'s name too"))
        for what, folder in watched:
            if _overlap(inbox.path, folder):
                found.append((("inboxes", i, "path"), f"overlaps {what} ({folder})"))
        watched.append((f"inboxes[{i}]", inbox.path))
    for i, inbox in enumerate(cfg.inboxes):
        for what, folder in watched:
            if folder in (inbox.archive, *inbox.archive.parents):
                found.append(
                    (("inboxes", i, "archive"), f"lies inside {what}: files would run again")
                )
    ids: dict[str, int] = {}
    for i, schedule in enumerate(cfg.schedules):
        if (first := ids.setdefault(schedule.id, i)) != i:
            message = f"'{schedule.id}' is schedules[{first}]'s id too (give each an `id`)"
            found.append((("schedules", i, "id"), message))
    return found


def _model_at(loc: _Where) -> type[BaseModel] | None:
    """The config model that the key path ``loc`` points into (for did-you-mean hints)."""
    model: type[BaseModel] | None = DaemonConfig
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _find_model(field.annotation) if field is not None else None
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_find_model, get_args(annotation))), None)


def _problems(exc: ValidationError, doc: Document | None) -> list[Problem]:
    """Pydantic's errors as problems, with did-you-mean hints from the right section and
    the exact key paths of the errors that ``_problem`` and ``_clashes`` raise."""
    fixes: dict[tuple[str, str], list[tuple[_Where, str | None, str | None]]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            near = difflib.get_close_matches(
                str(loc[-1]), list(model.model_fields) if model else []
            )
            hint = f"did you mean `{near[0]}`?" if near else None
            fixes[(format_path(loc), "unknown key")] = [(loc, None, hint)]
        elif err["type"] == "config":
            at = err.get("ctx", {})["at"]
            fixes[(format_path(loc), err["msg"])] = [((*loc, *p), m, None) for p, m in at]
    out: list[Problem] = []
    for base in pydantic_problems(exc, (), doc):
        for path, message, hint in fixes.get((base.path, base.message), ()):
            line = doc.line_of(path) if doc else None
            text = message or base.message
            out.append(replace(base, message=text, path=format_path(path), line=line, hint=hint))
        if (base.path, base.message) not in fixes:
            out.append(base)
    return out


def _validate(
    data: Any, doc: Document | None, environ: Mapping[str, str], cwd: Path
) -> DaemonConfig:
    file = doc.file if doc else "<defaults>"
    problems = list(doc.problems) if doc else []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        problems.append(Problem(f"the config is a mapping of options, got {kind}", file, 1))
        raise ConfigError(problems, file)
    try:
        cfg = DaemonConfig.model_validate(data, context=PathContext(cwd, environ))
    except ValidationError as exc:
        problems.extend(_problems(exc, doc))
    if problems:
        problems = [replace(p, file=p.file or file) for p in problems]
        problems.sort(key=lambda problem: problem.line or 0)
        raise ConfigError(problems, file)
    return cfg


def default_config(
    *, environ: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> DaemonConfig:
    """The config of an empty file: every default, paths resolved against ``cwd``."""
    return _validate({}, None, environ, (cwd or Path.cwd()).absolute())


def load_config(
    path: Path | None, *, environ: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> DaemonConfig:
    """Read and validate a YAML or TOML config (``None``: the defaults); raise ConfigError."""
    base = (cwd or Path.cwd()).absolute()
    if path is None:
        return default_config(environ=environ, cwd=base)
    target = base / Path(path).expanduser()
    if format_for(target) is None:
        suffix = repr(target.suffix) if target.suffix else "no suffix"
        problem = Problem(
            f"unsupported config file type ({suffix})", str(target), hint="use .yaml, .yml or .toml"
        )
        raise ConfigError([problem], str(target))
    try:
        doc = load_document(target)
    except TaskNotFound:
        problem = Problem("config file not found", str(target), hint="check --config")
        raise ConfigError([problem], str(target)) from None
    except TaskParseError as exc:
        raise ConfigError(exc.problems, exc.file) from None
    return _validate(doc.data, doc, environ, base)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else ""))


def config_summary(cfg: DaemonConfig) -> dict[str, Any]:
    """The config as JSON-able data for ``flowtaskd status``; secrets replaced by ``***``."""
    data = cfg.model_dump(mode="json")
    for hook in data["webhooks"]:
        hook["url"] = _mask_url(hook["url"])
        if hook["secret"] is not None:
            hook["secret"] = "***"
    for token in data["web"]["tokens"]:
        if token["sha256"] is not None:
            token["sha256"] = "***"
    return data
