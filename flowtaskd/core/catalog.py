"""What the core knows of components: a catalog passed in, never imported.

Validating a step needs its component's parameter model, whether it is an iterator (a group
parent) and its name for did-you-mean. The component registry
(:func:`flowtaskd.components.registry.registry`) is such a catalog; a component class
satisfies :class:`ComponentInfo` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from flowtaskd.core.options import StrictModel

__all__ = ["Catalog", "ComponentInfo"]


class ComponentInfo(Protocol):
    """What validation reads of one component."""

    @property
    def name(self) -> str: ...

    @property
    def Params(self) -> type[StrictModel]: ...

    @property
    def iterator(self) -> bool: ...

    @property
    def summary(self) -> str: ...


Catalog = Mapping[str, ComponentInfo]
"""Component name -> what validation needs of it."""
