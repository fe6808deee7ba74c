"""What the history keeps for operating runs: each run's definition, pauses, retry links.

* ``definitions`` and ``run_definitions``: the task definition a run used (the document as
  read, with the values of its ``secrets`` replaced by :data:`SECRET_KEPT`), so ``retry``
  runs the same steps even after the file changed. Each distinct definition is kept once,
  by digest; a run's link goes with the run (``ON DELETE CASCADE``) and a definition no run
  uses any more goes with its last link (a trigger).
* ``pauses``: one row per paused target, ``task:<name>`` or ``schedule:<id>``; the daemon
  reads them at start, so a restart keeps a pause.
* ``runs.retry_of``: a retry points at the run it retries; :meth:`retries_of` follows the
  link the other way.

:class:`OperatingTables` holds these methods of the SQLite
:class:`~flowtaskd.daemon.runs.store.HistoryStore` (they are part of the
:class:`~flowtaskd.daemon.runs.records.RunStore` protocol). Writes are awaited (the
store's writer thread), reads are synchronous (the CLI reads with the daemon stopped).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from flowtaskd.core.pile import TaskPile
from flowtaskd.errors import StoreError

__all__ = ["SECRET_KEPT", "OperatingTables", "without_secrets"]

SECRET_KEPT = "<secret: not kept in the history>"
"""What stands in a kept definition for the value of a name listed in ``secrets``."""
_T = TypeVar("_T")
_TEXTS: weakref.WeakKeyDictionary[TaskPile, tuple[str, str]] = weakref.WeakKeyDictionary()


def without_secrets(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a task document) with the values of its ``secrets`` in params and env
    replaced by :data:`SECRET_KEPT`."""
    out = dict(raw)
    names = raw.get("secrets") or []
    if isinstance(names, str):
        names = [names]
    for key in ("params", "env"):
        section = raw.get(key)
        if isinstance(section, Mapping):
            out[key] = {k: (SECRET_KEPT if k in names else v) for k, v in section.items()}
    return out


def _kept_text(pile: TaskPile) -> tuple[str, str]:
    """The definition as kept (secrets hidden) and its digest, worked out once per pile."""
    found = _TEXTS.get(pile)
    if found is None:
        text = json.dumps(without_secrets(pile.definition.raw), default=str, separators=(",", ":"))
        found = (hashlib.sha256(text.encode()).hexdigest(), text)
        _TEXTS[pile] = found
    return found


class OperatingTables:
    """The history's tables for operating runs (a base of ``HistoryStore``)."""

    @property
    def path(self) -> Path:
        raise NotImplementedError

    async def write(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        raise NotImplementedError

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    async def put_definition(self, run_id: str, pile: TaskPile) -> None:
        """Keep the definition ``run_id`` ran (one copy per distinct definition)."""
        digest, text = _kept_text(pile)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO definitions (digest, definition) VALUES (?, ?)",
                (digest, text),
            )
            conn.execute(
                "INSERT OR REPLACE INTO run_definitions (run_id, digest) VALUES (?, ?)",
                (run_id, digest),
            )

        await self.write(op)

    def get_definition(self, run_id: str) -> dict[str, Any] | None:
        """The definition ``run_id`` ran (secrets hidden), None if none was kept."""
        with self.reading() as conn:
            row = conn.execute(
                "SELECT d.definition FROM run_definitions r JOIN definitions d USING (digest)"
                " WHERE r.run_id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def retries_of(self, run_id: str) -> list[str]:
        """The runs that retry ``run_id``, oldest first."""
        with self.reading() as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE retry_of = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def paused_targets(self) -> dict[str, float]:
        """``task:<name>`` / ``schedule:<id>`` -> when it was paused (epoch seconds)."""
        try:
            with self.reading() as conn:
                rows = conn.execute("SELECT target, paused_at FROM pauses").fetchall()
        except StoreError:
            if not self.path.is_file():  # no history yet: nothing is paused
                return {}
            raise
        return {r[0]: r[1] for r in rows}

    async def add_pause(self, target: str, now: float) -> bool:
        """Pause ``target``; False if it was paused already."""

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO pauses (target, paused_at) VALUES (?, ?)", (target, now)
            )
            return cur.rowcount == 1

        return await self.write(op)

    async def remove_pause(self, target: str) -> bool:
        """Unpause ``target``; False if it was not paused."""

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM pauses WHERE target = ?", (target,)).rowcount == 1

        return await self.write(op)
