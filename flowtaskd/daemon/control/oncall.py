"""The control socket's requests for operating runs: ``show``, ``logs``, ``retry``,
``pause``, ``unpause``, ``backfill``, ``backfill_cancel``, ``backfills``, ``next``,
``render``.

Each handler checks its fields and calls one function of :mod:`flowtaskd.daemon.ops` (the
same the CLI calls); the HTTP API calls them through :class:`Requests` too. Refusals are
:class:`~flowtaskd.daemon.ops.OpError` (a one-line ``{"ok": false, "error": ...}``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from flowtaskd.core.plan import plan_run
from flowtaskd.daemon import ops
from flowtaskd.engine.events import Payload

if TYPE_CHECKING:
    from flowtaskd.daemon.control.host import ControlHost, ControlView, Session


class Requests(Protocol):
    """What these handlers use of the request handler
    (:class:`~flowtaskd.daemon.control.requests.Requests`)."""

    d: ControlHost
    server: ControlView

    async def submit_and_wait(
        self,
        session: Session,
        task: str,
        submit: Callable[[], str | None],
        wait: bool,
        extra: Payload | None = None,
    ) -> Payload: ...


__all__ = ["ONCALL_FIELDS", "oncall_handlers"]

ONCALL_FIELDS: dict[str, tuple[str, ...]] = {
    "show": ("run_id",),
    "logs": ("run_id", "step", "attempt", "stream", "tail", "offsets"),
    "retry": ("run_id", "from", "failed_only", "force", "current", "wait"),
    "pause": ("task", "schedule"),
    "unpause": ("task", "schedule"),
    "backfill": (
        "task",
        "from",
        "to",
        "every",
        "max_active",
        "params",
        "dry_run",
        "wait",
    ),
    "backfill_cancel": ("backfill_id",),
    "backfills": (),
    "next": ("task", "n"),
    "render": ("task", "params", "at"),
}
Handler = Callable[["Session", dict[str, Any]], Awaitable[Payload]]


def _get(req: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = req.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) and kind is int:
        value = "a boolean"
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ops.OpError(f"{req['cmd']}: {key!r} must be {name}; got {value!r}")
    return value


def _need(req: dict[str, Any], key: str) -> str:
    value = _get(req, key, str)
    if not value:
        raise ops.OpError(f"{req['cmd']}: {key!r} is required (a non-empty string)")
    return str(value)


class _Oncall:
    """The handlers, bound to ``r`` (the daemon's request handler)."""

    def __init__(self, r: Requests) -> None:
        self.r, self.d = r, r.d

    async def show(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        out = await asyncio.to_thread(ops.describe_run, d.store, _need(req, "run_id"))
        return {"ok": True, **out}

    async def logs(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        out = await asyncio.to_thread(
            ops.read_logs,
            d.store,
            _need(req, "run_id"),
            _get(req, "step", str),
            attempt=_get(req, "attempt", int),
            stream=_get(req, "stream", str, "out"),
            tail=_get(req, "tail", int),
            offsets=_get(req, "offsets", dict),
        )
        return {"ok": True, **out}

    async def retry(self, session: Session, req: dict[str, Any]) -> Payload:
        r, d = self.r, self.d
        plan = await asyncio.to_thread(
            ops.plan_retry,
            d.store,
            _need(req, "run_id"),
            from_step=_get(req, "from", str),
            failed_only=bool(_get(req, "failed_only", bool, False)),
            force=bool(_get(req, "force", bool, False)),
            current=(lambda name: _pile(d, name)) if _get(req, "current", bool, False) else None,
        )
        return await r.submit_and_wait(
            session,
            plan.pile.name,
            lambda: ops.submit_retry(plan, d.runs.submit),
            bool(_get(req, "wait", bool, False)),
            plan.summary(),
        )

    async def pause(self, session: Session, req: dict[str, Any]) -> Payload:
        return await self._pause(req, True)

    async def unpause(self, session: Session, req: dict[str, Any]) -> Payload:
        return await self._pause(req, False)

    async def _pause(self, req: dict[str, Any], paused: bool) -> Payload:
        d = self.d
        target = ops.pause_target(_get(req, "task", str), _get(req, "schedule", str))
        known = {f"task:{n}" for n in d.library.tasks} | {
            f"schedule:{s}" for s in d.scheduler.entries
        }
        out = await ops.set_pause(d.store, target, paused, d.clock.time(), known=known)
        await d.scheduler.set_paused(target, paused)
        return {"ok": True, **out}

    async def backfill(self, session: Session, req: dict[str, Any]) -> Payload:
        r, d = self.r, self.d
        name = _need(req, "task")
        loaded = d.library.get(name)
        if loaded is None:
            raise ops.OpError(f"no task named {name!r} is loaded")
        pile = loaded.pile
        tz = pile.definition.header.timezone or "UTC"
        every_text = _get(req, "every", str)
        every = ops.parse_every(every_text) if every_text else None
        if every_text and every is None:
            raise ops.OpError(f"backfill: --every {every_text!r} is not an interval (5m, 1h, 1d)")
        start = ops.parse_moment(_need(req, "from"), tz)
        end = ops.parse_moment(_need(req, "to"), tz, end=True)
        times = ops.backfill_times(pile.definition.schedules, start, end, every=every, tz=tz)
        if _get(req, "dry_run", bool, False):
            return {"ok": True, "task": name, "dry_run": True, "times": _iso(times)}
        params = _get(req, "params", dict, {})
        bf = d.backfills.start(
            pile,
            times,
            params=params,
            source=str(loaded.path),
            max_active=_get(req, "max_active", int, 1),
        )
        runs = [
            {"run_id": q.run_id, "logical_time": t.isoformat()}
            for q, t in zip(bf.requests, times, strict=True)
        ]
        first = {"ok": True, **bf.summary(), "runs": runs}
        if not _get(req, "wait", bool, False):
            return first
        await session.send(first)
        session.state = "wait"
        while bf.state == "running" and not r.server.stopping:
            bf.changed.clear()
            waiter = asyncio.ensure_future(bf.changed.wait())
            woke = asyncio.ensure_future(session.wake.wait())
            try:
                await asyncio.wait({waiter, woke}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                woke.cancel()
        return {"ok": True, **bf.summary(), "runs": bf.finished}

    async def backfill_cancel(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        return {"ok": True, **d.backfills.cancel(_need(req, "backfill_id")).summary()}

    async def backfills(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        return {"ok": True, "backfills": [b.summary() for b in d.backfills.all.values()]}

    async def next_(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        name = _need(req, "task")
        if d.library.get(name) is None:
            raise ops.OpError(f"no task named {name!r} is loaded")
        paused = await asyncio.to_thread(d.store.paused_targets)
        now = d.clock.now()
        out = ops.task_next(name, d.scheduler.entries.values(), paused, now, _get(req, "n", int, 5))
        return {"ok": True, **out}

    async def render(self, session: Session, req: dict[str, Any]) -> Payload:
        d = self.d
        name = _need(req, "task")
        pile = _pile(d, name)
        if pile is None:
            raise ops.OpError(f"no task named {name!r} is loaded")
        at_text = _get(req, "at", str)
        tz = pile.definition.header.timezone or "UTC"
        at = ops.parse_moment(at_text, tz) if at_text else d.clock.now()
        return {"ok": True, **plan_run(pile, _get(req, "params", dict, {}), at)}


def oncall_handlers(r: Requests) -> dict[str, Handler]:
    """The handlers of :data:`ONCALL_FIELDS`, bound to ``r``."""
    o = _Oncall(r)
    return {
        "show": o.show,
        "logs": o.logs,
        "retry": o.retry,
        "pause": o.pause,
        "unpause": o.unpause,
        "backfill": o.backfill,
        "backfill_cancel": o.backfill_cancel,
        "backfills": o.backfills,
        "next": o.next_,
        "render": o.render,
    }


def _pile(d: Any, name: str) -> Any:
    loaded = d.library.get(name)
    return loaded.pile if loaded is not None else None


def _iso(times: list[datetime]) -> list[str]:
    return [t.isoformat() for t in times]
