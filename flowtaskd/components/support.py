"""What the batteries share: extras a component needs, credentials, paths, partial files.

* :class:`ExtraParams` -- a parameter model whose component needs an optional extra: a task
  using it fails ``validate`` with the ``pip install`` that brings it, when it is missing.
* :class:`Credentials` and :func:`credential` -- upstream's ``credentials:`` mapping; a
  value is the name of an environment variable (``SMTP_PASSWORD``), or text in which a
  placeholder (``{db_password}``) was substituted. A password must be one of the run's
  secrets (an env var or param named in the task's ``secrets``); a literal one is refused
  unless the step says ``allow_plaintext_credentials: true``.
* :func:`part_path` / :func:`commit_part` -- transfers write ``<name>.part`` and rename it
  into place when complete; a cancelled or failed transfer removes its ``.part``.

Validation stays pure: only ``importlib.util.find_spec`` is asked whether an extra is there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic_core import core_schema

from flowtaskd.core.options import StrictModel
from flowtaskd.errors import ExecutionError

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext

__all__ = [
    "AnyCase",
    "CredentialError",
    "Credentials",
    "ExtraParams",
    "capped_json",
    "commit_part",
    "credential",
    "discard",
    "env_of",
    "importable",
    "local_path",
    "part_path",
    "plain_value",
]

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PLAINTEXT_HELP = (
    "name an env var or param listed in the task's `secrets` "
    "(or set `allow_plaintext_credentials: true`)"
)


@dataclass(frozen=True, slots=True)
class AnyCase:
    """``Annotated[str, AnyCase("get", "post")]``: one of the words, in any case.

    Validation says which words, instead of showing a regex; the task schema gets a
    ``pattern`` written for every dialect (ECMA-262 for ajv and editors has no ``(?i)``).
    """

    words: tuple[str, ...]

    def __init__(self, *words: str) -> None:
        object.__setattr__(self, "words", words)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        either = "|".join("".join(f"[{c.upper()}{c.lower()}]" for c in w) for w in self.words)
        return {**handler(schema), "pattern": f"^(?:{either})$"}

    def _check(self, value: str) -> str:
        if value.lower() not in self.words:
            raise ValueError(f"should be one of {', '.join(self.words)} (any case), got {value!r}")
        return value


@cache
def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class ExtraParams(StrictModel):
    """Parameters of a component that needs the modules ``requires`` of extra ``extra``."""

    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _extra_installed(cls, data: Any) -> Any:
        missing = [m for m in cls.requires if not importable(m)]
        if missing:
            raise ValueError(
                f"needs {', '.join(missing)}, which is not installed: "
                f"pip install 'flowtaskd[{cls.extra}]'"
            )
        return data


class CredentialError(ExecutionError):
    """A credential is missing, or given in clear without leave."""


class Credentials(StrictModel):
    """Upstream's ``credentials``: each value an env var name or (substituted) text."""

    username: str | None = Field(default=None, alias="user")
    password: str | None = None


def env_of(ctx: StepContext) -> Mapping[str, str]:
    """The step's environment (``None`` in the context means this process's own)."""
    return os.environ if ctx.env is None else ctx.env


def plain_value(ctx: StepContext, value: str | None) -> str | None:
    """A non-secret setting (user name, host): an upper-case env var name is looked up."""
    if value is None:
        return None
    env = env_of(ctx)
    if _ENV_NAME.match(value) and value in env:
        return env[value]
    return value


def credential(
    ctx: StepContext, value: str | None, where: str, *, allow_plaintext: bool
) -> str | None:
    """A secret setting's value. It must be one of the run's secrets (named in ``secrets``)
    unless ``allow_plaintext``; the error never holds the value."""
    if value is None:
        return None
    env = env_of(ctx)
    resolved = env[value] if _ENV_NAME.match(value) and value in env else value
    if not allow_plaintext and resolved not in ctx.secrets:
        if _ENV_NAME.match(value) and value not in env:
            raise CredentialError(f"{where}: no env var {value} is set")
        raise CredentialError(f"{where}: not one of the task's secrets; {PLAINTEXT_HELP}")
    return resolved


def local_path(ctx: StepContext, value: str) -> Path:
    """A local path: ``~`` expanded, relative to the step's ``cwd`` when it has one."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute() and ctx.cwd:
        path = Path(ctx.cwd) / path
    return path


def part_path(target: Path) -> Path:
    """Where a transfer to ``target`` writes until it is complete."""
    return target.with_name(target.name + ".part")


def commit_part(part: Path, target: Path) -> None:
    """The transfer is complete: the ``.part`` file takes the target's name."""
    os.replace(part, target)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def capped_json(value: Any, cap: int) -> tuple[str, bool]:
    """``value`` as JSON, and whether it had to be cut to ``cap`` characters."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) <= cap:
        return text, False
    return text[:cap], True
