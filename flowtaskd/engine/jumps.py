"""Upstream flowtask's ``Goto`` and ``OnError``: jumps forward in upstream's pile order.

A task that uses them runs in file order (the pile chains every step to the one before it,
:func:`flowtaskd.core.stepkeys.link_steps`). ``Goto: T`` on a step that ends ``done``, and
``OnError: T`` on one that fails, make every step between it and ``T`` ``skipped`` (with
the reason) and run ``T`` whatever its trigger rule says (upstream just goes on there). A
failure handled by ``OnError`` does not fail the task, as upstream's does not.
"""

from __future__ import annotations

from flowtaskd.core.pile import TaskPile
from flowtaskd.core.rules import StepStatus

__all__ = ["Jumps"]

_FAILED = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})


class Jumps:
    def __init__(self, pile: TaskPile) -> None:
        self.jumped: dict[str, str] = {}  # step id -> why it was jumped over
        self.forced: set[str] = set()
        self.handled: set[str] = set()
        self._targets: dict[str, tuple[str | None, str | None]] = {}
        for step in pile:
            o = step.spec.options if step.spec is not None else None
            if o is not None and (o.Goto or o.OnError):
                self._targets[step.id] = (o.Goto, o.OnError)
        self.active = bool(self._targets)
        self._pos: dict[str, int] = {}
        numbering = pile.definition.numbering
        if self.active and numbering is not None:
            by_index = {s.spec.index: s.id for s in pile if s.spec is not None}
            for n, entry in enumerate(numbering.entries):
                for i in entry:
                    if i in by_index:
                        self._pos[by_index[i]] = n

    def after(self, sid: str, status: StepStatus) -> None:
        """``sid`` is final with ``status``: note the jump it makes, if any."""
        goto, on_error = self._targets.get(sid, (None, None))
        if goto and status is StepStatus.DONE:
            target, why = goto, f"jumped over: Goto of {sid}"
        elif on_error and status in _FAILED:
            target, why = on_error, f"jumped over: OnError of {sid}"
            self.handled.add(sid)
        else:
            return
        low, high = self._pos[sid], self._pos[target]
        for other, n in self._pos.items():
            if low < n < high:
                self.jumped.setdefault(other, why)
        self.forced.add(target)
