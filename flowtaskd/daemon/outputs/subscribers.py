"""In-process subscribers: plugins that connect receivers to the daemon's lifecycle events.

A subscriber is a ``setup(events)`` callable named in the config
(``subscribers: ["package.module:setup"]``) or published by an installed distribution in
the ``flowtaskd.subscribers`` entry-point group. The daemon calls each one once at start,
before it emits its first event, with :class:`SubscriberEvents` -- a facade over the
daemon's :class:`~flowtaskd.engine.events.EventBus` that can only *connect*: subscribers react to
runs, they never emit events or call back into a run::

    def setup(events):
        events.connect(["on_error", "exception"], alert)           # a plain function
        events.connect("*", forward, task="backup")                # async def works too

Receivers get the bus's guarantees: sync receivers run inline (keep them cheap), async
ones get their own bounded queue; each is isolated (a receiver that raises is logged and
counted, the run and the other receivers go on) and held strongly.

A subscriber that cannot be imported, is not callable or raises in ``setup`` is logged as
one ``subscriber_failed`` line and reported in the returned list of errors; whatever it
connected before failing is disconnected again, and the daemon keeps running.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points

import structlog

from flowtaskd.engine.events import ALL_EVENTS, CATCH_ALL, EventBus, Receiver

__all__ = ["ENTRY_POINT_GROUP", "SubscriberEvents", "load_subscribers"]

ENTRY_POINT_GROUP = "flowtaskd.subscribers"

_log = structlog.get_logger("flowtaskd.subscribers")


class SubscriberEvents:
    """What a subscriber's ``setup`` gets: ``connect`` on the daemon's event bus."""

    names: tuple[str, ...] = ALL_EVENTS
    """Every event name (``"*"`` connects to all of them)."""
    CATCH_ALL: str = CATCH_ALL

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._connections: list[Callable[[], None]] = []

    def connect(
        self,
        event: str | Iterable[str],
        receiver: Receiver,
        *,
        task: str | None = None,
        queue_size: int | None = None,
    ) -> Callable[[], None]:
        """Call ``receiver(payload)`` for ``event`` (a name, names or ``"*"``).

        ``task=`` delivers only that task's events; ``queue_size`` bounds an async
        receiver's queue. Returns a function that disconnects the receiver. Raises
        ValueError for an unknown event name.
        """
        disconnect = self._bus.connect(event, receiver, task=task, queue_size=queue_size)
        self._connections.append(disconnect)
        return disconnect

    @property
    def connections(self) -> int:
        """Receivers connected through this facade."""
        return len(self._connections)

    def disconnect_all(self) -> None:
        """Disconnect every receiver connected through this facade."""
        for disconnect in self._connections:
            disconnect()
        self._connections.clear()


def _resolve(spec: str) -> object:
    """``package.module:attr.path`` -> the object (raises on any problem)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError("expected 'package.module:function'")
    target: object = importlib.import_module(module_name)
    for part in attr_path.split("."):
        target = getattr(target, part)
    return target


def _setup(label: str, load: Callable[[], object], bus: EventBus) -> str | None:
    """Load one subscriber and call its setup; the error line, or None if it worked."""
    try:
        setup = load()
    except Exception as exc:  # a broken plugin must not take the daemon down
        return f"{label} cannot be loaded: {type(exc).__name__}: {exc}"
    if not callable(setup):
        return f"{label} is not callable (it is a {type(setup).__name__})"
    events = SubscriberEvents(bus)
    try:
        setup(events)
    except Exception as exc:
        events.disconnect_all()
        return f"{label} failed in setup: {type(exc).__name__}: {exc}"
    _log.info("subscriber_loaded", subscriber=label, receivers=events.connections)
    return None


def load_subscribers(
    specs: Sequence[str], bus: EventBus, *, group: str | None = ENTRY_POINT_GROUP
) -> list[str]:
    """Set up the configured ``specs`` and the entry points of ``group``; return the errors.

    Each error is one line naming the subscriber and why; it is logged too. ``group=None``
    skips the entry points.
    """
    errors: list[str] = []
    jobs: list[tuple[str, Callable[[], object]]] = [
        (f"subscriber {spec!r}", functools.partial(_resolve, spec)) for spec in specs
    ]
    if group is not None:
        for ep in entry_points(group=group):
            jobs.append((f"subscriber entry point {ep.name!r} ({ep.value})", ep.load))
    for label, load in jobs:
        error = _setup(label, load, bus)
        if error is not None:
            _log.error("subscriber_failed", error=error)
            errors.append(error)
    return errors
