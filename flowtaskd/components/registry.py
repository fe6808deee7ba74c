"""The component registry: the built-in components plus plugins.

Plugins register through the ``flowtaskd.components`` entry-point group; each entry point
loads a :class:`~flowtaskd.components.base.Component` subclass (its ``name`` is the key a
task file uses). A plugin that fails to load, is not a component, has no ``name``, takes a
name already used, or whose ``Params`` is not a strict pydantic model that leaves the step
options (``depends``, ``retry``, ...) alone (upstream's ``name``, ``variables``,
``conditions``... it may declare: then they are its own), is reported by
:func:`plugin_errors` and left out; it never breaks the registry.
``registry.cache_clear()`` makes the next call look again (tests, a daemon reload).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from pydantic import BaseModel

from flowtaskd.components.base import Component
from flowtaskd.core.options import STEP_OPTION_KEYS, UPSTREAM_VALUE_KEYS

__all__ = [
    "ENTRY_POINT_GROUP",
    "get_component",
    "plugin_errors",
    "register",
    "registry",
]

ENTRY_POINT_GROUP = "flowtaskd.components"
_plugin_errors: list[str] = []


def _builtins() -> list[type[Component]]:
    from flowtaskd.components import (  # noqa: PLC0415 - after base
        archives,
        basic,
        branching,
        commands,
        files,
        ftp,
        http,
        iterators,
        mail,
        remote,
        rsync,
        sensors,
        sql,
    )

    return [
        *commands.COMPONENTS,
        *files.COMPONENTS,
        *basic.COMPONENTS,
        *http.COMPONENTS,
        *archives.COMPONENTS,
        *sensors.COMPONENTS,
        *iterators.COMPONENTS,
        *branching.COMPONENTS,
        *mail.COMPONENTS,
        *remote.COMPONENTS,
        *ftp.COMPONENTS,
        *sql.COMPONENTS,
        *rsync.COMPONENTS,
    ]


@cache
def registry() -> dict[str, type[Component]]:
    """Every known component by name (built-ins first; a plugin may not shadow one)."""
    _plugin_errors.clear()
    found: dict[str, type[Component]] = {c.name: c for c in _builtins()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        label = f"plugin {ep.name!r} ({ep.value})"
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the daemon down
            _plugin_errors.append(f"{label} failed to load: {type(exc).__name__}: {exc}")
            continue
        error = component_error(cls)
        if error is None and cls.name in found:
            error = f"may not replace component {cls.name!r}"
        if error is not None:
            _plugin_errors.append(f"{label} {error}")
            continue
        found[cls.name] = cls
    return found


def component_error(cls: object) -> str | None:
    """Why ``cls`` cannot be a component, or ``None`` if it can."""
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        return "is not a Component class"
    if not cls.name or not cls.name.isidentifier():
        return "has no `name` (an identifier such as 'MyStep')"
    params = cls.Params
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        return "has a `Params` that is not a pydantic model"
    if params.model_config.get("extra") != "forbid":
        return "has a `Params` that accepts unknown keys (subclass StrictModel)"
    clash = sorted(set(params.model_fields) & (STEP_OPTION_KEYS - UPSTREAM_VALUE_KEYS))
    if clash:
        return f"has parameters named like step options: {', '.join(clash)}"
    return None


def plugin_errors() -> list[str]:
    """Why each plugin that was left out was left out."""
    registry()
    return list(_plugin_errors)


def get_component(name: str) -> type[Component] | None:
    return registry().get(name)


def register(cls: type[Component]) -> type[Component]:
    """Register a component at run time (tests, embedding applications); raises
    ``ValueError`` when it cannot be one or its name is taken."""
    if registry().get(cls.name) is cls:
        return cls
    error = component_error(cls)
    if error is None and cls.name in registry():
        error = f"may not replace component {cls.name!r}"
    if error is not None:
        raise ValueError(f"component {cls.__name__} {error}")
    registry()[cls.name] = cls
    return cls
