"""Steps a step names as its branches: ``IF``'s ``true_component``/``false_component``,
``Switch``'s ``cases[].component`` and ``default``.

A component's parameter model that names steps implements :class:`NamesSteps`; the graph
(:mod:`flowtaskd.core.graph`) then checks at load time that every named step exists, is
not the step itself, and runs after it (the branch not chosen is skipped, which only means
something for a step that waits for the choice). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Protocol, runtime_checkable

__all__ = ["NamesSteps", "TargetProblem", "target_problems"]

_Path = tuple[str | int, ...]
TargetProblem = tuple[_Path, str, str | None]
"""``(key path in the step's parameters, message, hint)``."""


@runtime_checkable
class NamesSteps(Protocol):
    """A parameter model whose values name other steps of the task."""

    def step_targets(self) -> Iterable[tuple[_Path, str]]:
        """``(key path, step id)`` for each step named, in key order."""
        ...


def target_problems(
    own_id: str,
    params: object,
    known: Collection[str],
    after: Callable[[], Collection[str]] | None,
    nearest: Callable[[str], list[str]],
) -> Iterator[TargetProblem]:
    """What is wrong with the steps ``params`` names; ``after()`` gives the ids that run
    after ``own_id`` (``None`` when the graph is not sound enough to tell)."""
    if not isinstance(params, NamesSteps):
        return
    later: Collection[str] | None = None
    for key, target in params.step_targets():
        if target == own_id:
            yield key, f"`{target}` is this step itself", "name a step that depends on it"
        elif target not in known:
            names = ", ".join(f"`{k}`" for k in nearest(target)) or "none"
            yield key, f"names unknown step `{target}`", f"nearest known ids: {names}"
        elif after is not None:
            later = after() if later is None else later
            if target not in later:
                yield (
                    key,
                    f"names step `{target}`, which does not run after `{own_id}`",
                    f"add `depends: [{own_id}]` to `{target}`",
                )
