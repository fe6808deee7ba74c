"""What the machine does to a background loop: an OSError is reported, counted and retried.

No OSError in a background loop (inbox rescans, library scans, the spool, housekeeping)
may end the daemon: descriptors run out under a connection flood, a disk fills, an NFS
server goes away, and each of those passes. :class:`Faults` is the one place such an error
goes. Each *cause* (where it happened and the errno, e.g. ``inbox_rescan:EMFILE``) is
logged once as ``daemon_fault`` (and emitted as the event of that name) when it first
happens, counted every time, and logged again as ``daemon_fault_cleared`` once the same
place works again. The caller retries after :meth:`Faults.backoff`: 0.1 s doubling to at
most 30 s while the fault lasts.

:func:`supervise` is the last line of defence around a whole loop: when the loop's body
raises an OSError it is reported and the body is started again after the backoff, until
the stop event is set. Anything that is not an OSError is a bug and still ends the daemon
with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as errno_mod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

__all__ = ["Faults", "supervise"]

_log = structlog.get_logger("flowtaskd.daemon")

_FIRST_DELAY = 0.1
_MAX_DELAY = 30.0


@dataclass(slots=True)
class _Place:
    failures: int = 0  # in a row, since it last worked
    causes: frozenset[str] = frozenset()  # the causes reported during this spell


def cause_of(exc: BaseException) -> str:
    """``EMFILE``, ``ENOSPC``... for an OSError with an errno, else the exception's type."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno_mod.errorcode:
        return errno_mod.errorcode[code]
    return type(exc).__name__


class Faults:
    """Background faults: reported once per cause, counted, retried with backoff."""

    def __init__(self, emit: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self._emit = emit
        self.counts: dict[str, int] = {}
        """How many times each cause (``where:ERRNO``) happened since the daemon started."""
        self._places: dict[str, _Place] = {}

    def report(self, where: str, exc: BaseException) -> float:
        """Count ``exc`` at ``where`` (log it if this cause is new); the delay to retry after."""
        cause = f"{where}:{cause_of(exc)}"
        self.counts[cause] = self.counts.get(cause, 0) + 1
        place = self._places.setdefault(where, _Place())
        place.failures += 1
        if cause not in place.causes:
            place.causes = place.causes | {cause}
            error = f"{type(exc).__name__}: {exc}"
            _log.error("daemon_fault", where=where, cause=cause, error=error)
            if self._emit is not None:
                with contextlib.suppress(Exception):
                    self._emit("daemon_fault", {"where": where, "cause": cause, "error": error})
        return self.backoff(where)

    def backoff(self, where: str) -> float:
        place = self._places.get(where)
        if place is None or not place.failures:
            return 0.0
        return min(_MAX_DELAY, _FIRST_DELAY * 2.0 ** (place.failures - 1))

    def cleared(self, where: str) -> None:
        """``where`` worked again: the next failure there is reported afresh."""
        place = self._places.get(where)
        if place is not None and place.failures:
            _log.info("daemon_fault_cleared", where=where, failures=place.failures)
            self._places[where] = _Place()

    def failing(self) -> list[str]:
        """The places failing right now."""
        return sorted(w for w, p in self._places.items() if p.failures)

    def summary(self) -> dict[str, Any]:
        """The ``faults`` section of ``status``."""
        return {"counts": dict(sorted(self.counts.items())), "failing": self.failing()}


async def supervise(
    where: str,
    body: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    faults: Faults,
) -> None:
    """Run ``body`` until it returns or ``stop`` is set; restart it after an OSError."""
    while not stop.is_set():
        try:
            await body()
        except OSError as exc:
            delay = faults.report(where, exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            continue
        return
