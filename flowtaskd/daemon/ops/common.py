"""What every operation shares: :class:`OpError`, finding a run, step labels."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from flowtaskd.daemon.runs.records import AttemptRecord, RunRecord, RunStore
from flowtaskd.errors import FlowtaskError

__all__ = ["UNFINISHED", "OpError", "did_you_mean", "find_run"]

UNFINISHED = frozenset({"pending", "running"})


class OpError(FlowtaskError):
    """An operation refused: a one-line message for the user."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def find_run(store: RunStore, run_id: str) -> tuple[RunRecord, list[AttemptRecord]]:
    """A run by id or unique prefix; OpError when there is none (StoreError if ambiguous)."""
    found = store.get_run(run_id)
    if found is None:
        raise OpError(f"no run {run_id!r} in the history at {store.path}")
    return found
