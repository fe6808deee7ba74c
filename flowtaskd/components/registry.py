"""The component registry: the built-in components plus plugins.

Plugins register through the ``flowtaskd.components`` entry-point group; each entry point
loads a :class:`~flowtaskd.components.base.Component` subclass (its ``name`` is the key a
task file uses). A plugin that fails to load is reported, not fatal.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import entry_points

from flowtaskd.components.base import Component

__all__ = ["ENTRY_POINT_GROUP", "closest", "get_component", "plugin_errors", "registry"]

ENTRY_POINT_GROUP = "flowtaskd.components"
_plugin_errors: list[str] = []


def _builtins() -> list[type[Component]]:
    from flowtaskd.components import basic, commands, files

    return [*commands.COMPONENTS, *files.COMPONENTS, *basic.COMPONENTS]


@cache
def registry() -> dict[str, type[Component]]:
    """Every known component by name (built-ins first; a plugin may not shadow one)."""
    found: dict[str, type[Component]] = {c.name: c for c in _builtins()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the daemon down
            _plugin_errors.append(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}")
            continue
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            _plugin_errors.append(f"plugin {ep.name!r} ({ep.value}) is not a Component class")
            continue
        name = cls.name or ep.name
        if name in found:
            _plugin_errors.append(f"plugin {ep.name!r} may not replace component {name!r}")
            continue
        found[name] = cls
    return found


def plugin_errors() -> list[str]:
    registry()
    return list(_plugin_errors)


def get_component(name: str) -> type[Component] | None:
    return registry().get(name)


def closest(word: str, choices: list[str] | set[str] | frozenset[str]) -> str | None:
    """The nearest of ``choices`` to a misspelt ``word``, if any is close."""
    hits = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return hits[0] if hits else None


def register(cls: type[Component]) -> type[Component]:
    """Register a component at run time (tests, embedding applications)."""
    registry()[cls.name] = cls
    return cls
