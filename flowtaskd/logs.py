"""Structured logs: one structlog set-up for flowtaskd and the libraries under it.

Every log line -- from flowtaskd's structlog loggers and from stdlib ``logging`` users such
as apscheduler, watchfiles and asyncio -- goes through one handler on the root logger and
one chain of processors, so they share a shape:

* ``json``: one JSON object per line with ``event``, ``level``, ``timestamp`` (ISO 8601,
  UTC), ``logger`` and whatever context is bound (``task``, ``run_id``, ``step`` through
  ``structlog.contextvars``). This is what journald and log shippers get.
* ``console``: structlog's ``ConsoleRenderer``; colours only when the stream is a tty.
* ``journald``: each line a native journal entry (:mod:`flowtaskd.journal`): ``PRIORITY``
  from the level, ``MESSAGE``, and the fields as ``TASK=``, ``RUN_ID=``, ``STEP=``, ...
* ``auto``: journald when ``$JOURNAL_STREAM`` names our stderr (we run under systemd);
  else console when the stream is a tty, else json.

JSON lines and journal entries carry a ``message`` (a short sentence,
:mod:`flowtaskd.logmessages`) beside ``event`` (the machine name).

Secrets never reach a line: a :class:`SecretMasker` runs as the last processor before
rendering and replaces every registered secret in every string value -- the message, bound
context, nested containers, the ``repr`` of other objects and the formatted exception text
-- with ``***``. The engine registers run secrets into :data:`GLOBAL_MASKER`, which
:func:`configure_logging` uses by default. Secrets shorter than
:data:`MIN_SECRET_LENGTH` characters (or only whitespace) are ignored: masking every ``1``
or ``ab`` would mangle every line while protecting nothing.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO, TypeVar, cast

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from flowtaskd.journal import JOURNAL_SOCKET, JournalHandler, render_for_journal, stderr_is_journal
from flowtaskd.logmessages import add_message

__all__ = [
    "GLOBAL_MASKER",
    "MIN_SECRET_LENGTH",
    "SecretMasker",
    "configure_logging",
    "get_logger",
    "reset_logging",
]

MIN_SECRET_LENGTH = 3
MASK = "***"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMATS = ("auto", "json", "console", "journald")
# Libraries that are chatty at INFO; they log at WARNING or above unless asked for less.
_QUIET_LOGGERS = ("watchfiles",)
_PLAIN = (str, int, float, bool, type(None))
_T = TypeVar("_T")


class SecretMasker:
    """Replaces registered secret values with ``***`` in text and in nested data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.update(secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def add(self, value: str) -> None:
        """Register ``value``; ignored when shorter than MIN_SECRET_LENGTH or blank."""
        self.update((value,))

    def update(self, values: Iterable[str]) -> None:
        """Register several secrets at once (one regex rebuild)."""
        fresh = {
            v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH and v.strip()
        }
        with self._lock:
            if fresh - self._secrets:
                self._secrets |= fresh
                self._rebuild()

    def discard(self, value: str) -> None:
        """Stop masking ``value`` (e.g. a one-off token after its run ended)."""
        with self._lock:
            if value in self._secrets:
                self._secrets.discard(value)
                self._rebuild()

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def _rebuild(self) -> None:
        if not self._secrets:
            self._pattern = None
            return
        ordered = sorted(self._secrets, key=len, reverse=True)  # longest wins on overlap
        self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def mask(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        pattern = self._pattern
        if pattern is None:
            return text
        return pattern.sub(MASK, text)

    def mask_obj(self, obj: _T) -> _T:
        """Mask strings inside dicts, lists and tuples (new containers); others unchanged."""
        if self._pattern is None:
            return obj
        return cast(_T, self._walk(obj, reprs=False))

    def _walk(self, obj: Any, *, reprs: bool) -> Any:
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, Mapping):
            return {k: self._walk(v, reprs=reprs) for k, v in obj.items()}
        if isinstance(obj, list | tuple | set | frozenset):
            items = [self._walk(v, reprs=reprs) for v in obj]
            return list(items) if isinstance(obj, list) else _same_kind(obj, items)
        if reprs and not isinstance(obj, _PLAIN):
            # A renderer would print repr(obj): mask that text, keep the object if clean.
            text = repr(obj)
            masked = self.mask(text)
            return masked if masked != text else obj
        return obj

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor: mask every value of the event dict."""
        if self._pattern is None:
            return event_dict
        return {k: self._walk(v, reprs=True) for k, v in event_dict.items()}


def _same_kind(obj: tuple[Any, ...] | set[Any] | frozenset[Any], items: list[Any]) -> Any:
    if isinstance(obj, tuple):
        return tuple(items)  # a namedtuple becomes a plain tuple
    return frozenset(items) if isinstance(obj, frozenset) else set(items)


def _foreign_stack(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's ``stack_info`` is already text: keep it (as ``stack``)."""
    stack = event_dict.pop("stack_info", None)
    if stack:
        event_dict["stack"] = stack
    return event_dict


_LEAD_KEYS = ("timestamp", "level", "logger", "event", "message")


def _lead_keys(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Put timestamp, level, logger and event first so JSON lines scan well."""
    lead = {k: event_dict[k] for k in _LEAD_KEYS if k in event_dict}
    return {**lead, **event_dict}


GLOBAL_MASKER = SecretMasker()
"""The process-wide masker the engine registers run secrets into."""


class _FlowtaskdHandler(logging.StreamHandler[TextIO]):
    """The root handler configure_logging installs; found and replaced on reconfiguration."""


class _FlowtaskdJournalHandler(JournalHandler):
    """The same, for the journald format."""


def _default_format(stream: TextIO) -> str:
    if stderr_is_journal(stream):
        return "journald"
    isatty = getattr(stream, "isatty", None)
    tty = bool(isatty()) if callable(isatty) else False
    return "console" if tty and "JOURNAL_STREAM" not in os.environ else "json"


def _level(level: str) -> int:
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r} (valid: {', '.join(_LEVELS)})") from None


def reset_logging() -> None:
    """Undo configure_logging: drop its handler and reset structlog to its defaults."""
    root = logging.getLogger()
    ours = (_FlowtaskdHandler, _FlowtaskdJournalHandler)
    for handler in [h for h in root.handlers if isinstance(h, ours)]:
        root.removeHandler(handler)
        handler.close()
    structlog.reset_defaults()


def configure_logging(
    format: str = "auto",  # shadows the builtin: the daemon config key is called "format"
    level: str = "info",
    stream: TextIO | None = None,
    secrets: SecretMasker | None = None,
    journal_socket: str = JOURNAL_SOCKET,
) -> None:
    """Send structlog and stdlib logging to ``stream`` (default: stderr) as json or console,
    or to journald's socket ``journal_socket`` (``format="journald"``).

    Safe to call again (e.g. on reload): the previous handler is replaced, not stacked.
    """
    if format not in _FORMATS:
        raise ValueError(f"unknown log format {format!r} (valid: {', '.join(_FORMATS)})")
    numeric = _level(level)
    out = sys.stderr if stream is None else stream
    fmt = _default_format(out) if format == "auto" else format
    masker = GLOBAL_MASKER if secrets is None else secrets

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        ordering: list[Processor] = [_lead_keys]
    elif fmt == "journald":
        renderer = render_for_journal
        ordering = []
    else:
        tty = getattr(out, "isatty", None)
        renderer = structlog.dev.ConsoleRenderer(colors=bool(callable(tty) and tty()))
        ordering = []  # the console renderer has its own column order
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _foreign_stack, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Exceptions become text before masking, in both formats, so no traceback
            # (which may quote a secret) escapes the masker.
            structlog.processors.format_exc_info,
            *([add_message] if fmt != "console" else []),  # before the masker: it quotes values
            masker,
            *ordering,
            renderer,
        ],
    )
    reset_logging()
    handler: logging.Handler
    if fmt == "journald":
        handler = _FlowtaskdJournalHandler(journal_socket, fallback=out)
    else:
        handler = _FlowtaskdHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers must follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """The structlog logger called ``name`` (e.g. ``flowtaskd.daemon.schedule.scheduler``)."""
    return structlog.stdlib.get_logger(name)
