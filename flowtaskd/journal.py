"""journald's native protocol: log lines as structured journal entries.

Under systemd, stderr goes to the journal as plain text at one priority. When
``$JOURNAL_STREAM`` names the device and inode of our stderr (systemd's documented test,
:func:`stderr_is_journal`), flowtaskd writes to the journal directly instead: one datagram
per line to ``/run/systemd/journal/socket`` in the ``sd_journal_send`` format, so each line
keeps its level as ``PRIORITY`` and its fields as journal fields::

    journalctl -u flowtaskd -p warning          # step errors, failed runs, retries
    journalctl -u flowtaskd TASK=nightly         # one task
    journalctl -u flowtaskd RUN_ID=20260101T...  # one run
    journalctl -u flowtaskd EVENT=step_error -o json

Fields: ``MESSAGE`` (the human sentence), ``PRIORITY``, ``SYSLOG_IDENTIFIER``
(``flowtaskd``), ``EVENT``, ``TASK``, ``RUN_ID``, ``STEP``, ``EXIT_CODE``, ``LOGGER``, and
every other field of the line under its name in capitals (journald accepts ``A-Z``, ``0-9``
and ``_``, not first). A value with a newline uses the protocol's length-prefixed form. An
entry too big for a datagram goes in a sealed memfd passed over the socket, as
``sd_journal_send`` does. If the journal socket cannot be reached the line is written to
stderr instead, so nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import struct
import sys
from typing import Any

from structlog.types import EventDict, WrappedLogger

__all__ = [
    "JOURNAL_SOCKET",
    "JournalHandler",
    "encode_entry",
    "journal_fields",
    "render_for_journal",
    "stderr_is_journal",
]

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "flowtaskd"
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2}
_FIRST = ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "EVENT")
_SKIP = {"timestamp", "level", "message", "event", "_record", "_from_structlog"}
_BAD = re.compile(r"[^A-Z0-9_]")


def stderr_is_journal(stream: Any = None) -> bool:
    """True when ``$JOURNAL_STREAM`` (``DEVICE:INODE``) is ``stream``'s (default: stderr)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    target = sys.stderr if stream is None else stream
    try:
        st = os.fstat(target.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def _field_name(key: str) -> str:
    name = _BAD.sub("_", key.upper()).lstrip("_")
    return name[:64] or "FIELD"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def journal_fields(event_dict: EventDict, identifier: str = IDENTIFIER) -> dict[str, str]:
    """The journal fields of one processed log line (``message`` already set)."""
    level = str(event_dict.get("level", "info")).lower()
    fields = {
        "MESSAGE": _text(event_dict.get("message") or event_dict.get("event", "")),
        "PRIORITY": str(_PRIORITY.get(level, 6)),
        "SYSLOG_IDENTIFIER": identifier,
        "EVENT": _text(event_dict.get("event", "")),
    }
    for key, value in event_dict.items():
        if key in _SKIP or value is None:
            continue
        name = _field_name(key)
        if name not in _FIRST:
            fields[name] = _text(value)
    return fields


def render_for_journal(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """structlog renderer: the journal fields as a JSON object (the handler encodes them)."""
    return json.dumps(journal_fields(event_dict))


def encode_entry(fields: dict[str, str]) -> bytes:
    """``fields`` in the native protocol: ``KEY=value\\n``, or the length-prefixed form."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record, formatted by :func:`render_for_journal`, to the journal socket."""

    def __init__(self, path: str = JOURNAL_SOCKET, fallback: Any = None) -> None:
        super().__init__()
        self.path = path
        self.fallback = fallback
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = json.loads(self.format(record))
            self._send(encode_entry(fields))
        except OSError as exc:
            self._fallback(record, exc)
        except Exception:
            self.handleError(record)

    def _send(self, entry: bytes) -> None:
        try:
            self._sock.sendto(entry, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):  # too big for a datagram
                raise
            self._send_memfd(entry)

    def _send_memfd(self, entry: bytes) -> None:
        fd = os.memfd_create("flowtaskd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, entry)
            with contextlib.suppress(OSError):  # sealing is advised, not required
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0xF)  # SEAL_SEAL|SHRINK|GROW|WRITE
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            self._sock.sendmsg([], rights, 0, self.path)
        finally:
            os.close(fd)

    def _fallback(self, record: logging.LogRecord, exc: OSError) -> None:
        stream = self.fallback or sys.stderr
        try:
            fields = json.loads(self.format(record))
            stream.write(f"<{fields['PRIORITY']}>{fields['MESSAGE']}\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        super().close()
