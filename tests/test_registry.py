"""``flowtaskd.components.registry``: built-ins, what may be a component, run-time register."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import BaseModel

from flowtaskd.components.base import Component
from flowtaskd.components.registry import (
    component_error,
    get_component,
    plugin_errors,
    register,
    registry,
)
from flowtaskd.core.options import StrictModel


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    registry.cache_clear()
    yield
    registry.cache_clear()


class _Params(StrictModel):
    greeting: str = "hi"


class Greet(Component):
    name = "GreetT1"
    Params = _Params


def test_builtins_are_known_by_their_name() -> None:
    found = registry()
    for name in ("Command", "Dummy", "FileList", "IF", "Python", "RunTask"):
        assert found[name].name == name
    assert get_component("Command") is found["Command"]
    assert get_component("Nope") is None
    assert registry() is found  # cached


def test_plugin_errors_is_a_list_of_reasons() -> None:
    assert all(isinstance(e, str) for e in plugin_errors())


def test_what_may_not_be_a_component() -> None:
    class NoName(Component):
        pass

    class BadName(Component):
        name = "my step"

    class Loose(BaseModel):
        x: int = 0

    class LooseParams(Component):
        name = "LooseT1"
        Params: ClassVar = Loose  # type: ignore[assignment]

    class NotAModel(Component):
        name = "NotAModelT1"
        Params: ClassVar = dict  # type: ignore[assignment]

    class Clash(StrictModel):
        depends: str = ""
        timeout: int = 0

    class Clashing(Component):
        name = "ClashT1"
        Params = Clash

    assert component_error(object) == "is not a Component class"
    assert component_error(Greet()) == "is not a Component class"
    assert component_error(NoName) == "has no `name` (an identifier such as 'MyStep')"
    assert component_error(BadName) == "has no `name` (an identifier such as 'MyStep')"
    assert component_error(LooseParams) == (
        "has a `Params` that accepts unknown keys (subclass StrictModel)"
    )
    assert component_error(NotAModel) == "has a `Params` that is not a pydantic model"
    assert component_error(Clashing) == "has parameters named like step options: depends, timeout"
    assert component_error(Greet) is None


def test_register_adds_once_and_refuses_a_clash_or_a_bad_class() -> None:
    assert register(Greet) is Greet
    assert get_component("GreetT1") is Greet
    assert register(Greet) is Greet  # again: the same class, fine

    class Other(Component):
        name = "GreetT1"

    with pytest.raises(ValueError, match="component Other may not replace component 'GreetT1'"):
        register(Other)

    class Shadow(Component):
        name = "Command"

    with pytest.raises(ValueError, match="may not replace component 'Command'"):
        register(Shadow)

    class Nameless(Component):
        pass

    with pytest.raises(ValueError, match="component Nameless has no `name`"):
        register(Nameless)


def test_cache_clear_forgets_run_time_registrations() -> None:
    register(Greet)
    registry.cache_clear()
    assert get_component("GreetT1") is None
