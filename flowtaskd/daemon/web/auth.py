"""Who may use the web API: login tokens, browser sessions, CSRF tokens, failed-login limits.

Every request is authenticated, loopback included. An API client sends
``Authorization: Bearer <token>``; a browser exchanges the token once (``/login``) for a
session cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` under TLS) and sends the
session's CSRF token in ``X-CSRF-Token`` with every state-changing request. A bearer request
needs no CSRF token: a browser never adds that header by itself.

Tokens: the one the daemon creates at first start in ``<state_dir>/web-token`` (mode 0600,
printed once as a login URL) and those of ``web.tokens`` (a SHA-256, or a file holding the
token). Only digests are kept in memory and compared (in constant time). A client with
``limit`` failed logins (bad token, bad bearer) within a minute gets 429 until the minute
has passed, whatever it sends. Sessions live in memory: a restart logs browsers out.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FailedLogins", "Session", "Sessions", "TokenSet", "digest", "ensure_token_file"]

_WINDOW = 60.0


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def ensure_token_file(path: Path) -> tuple[str, bool]:
    """The token in ``path``, creating the file (0600) with a new token if missing; and
    whether it was created now. A file readable by others is made private."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        info = path.stat()
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o600)
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True


class TokenSet:
    """The digests of every accepted token."""

    def __init__(self, tokens: Iterable[str] = (), digests: Iterable[bytes] = ()) -> None:
        self._digests = [digest(t) for t in tokens if t] + list(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, token: str) -> bool:
        if not token:
            return False
        given = digest(token)
        ok = False
        for known in self._digests:  # no early exit: the time does not tell which one
            ok |= hmac.compare_digest(given, known)
        return ok


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    created: float
    seen: float


@dataclass
class Sessions:
    """Browser sessions by cookie value, each expiring ``ttl`` seconds after last use."""

    ttl: float
    clock: Callable[[], float]
    most: int = 10_000
    _by_id: dict[str, Session] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._by_id)

    def new(self) -> Session:
        now = self.clock()
        if len(self._by_id) >= self.most:
            self._expire(now)
            while len(self._by_id) >= self.most:  # the least recently used go first
                del self._by_id[min(self._by_id.values(), key=lambda s: s.seen).id]
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(24), now, now)
        self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        s = self._by_id.get(sid or "")
        if s is None:
            return None
        now = self.clock()
        if now - s.seen > self.ttl:
            del self._by_id[s.id]
            return None
        s.seen = now
        return s

    def end(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def _expire(self, now: float) -> None:
        for s in [s for s in self._by_id.values() if now - s.seen > self.ttl]:
            del self._by_id[s.id]


@dataclass
class FailedLogins:
    """Failed logins per client in the last minute; blocked at ``limit``."""

    limit: int
    clock: Callable[[], float]
    most_clients: int = 10_000
    _fails: dict[str, deque[float]] = field(default_factory=dict)
    blocked_total: int = 0

    def _recent(self, client: str) -> deque[float]:
        times = self._fails.get(client)
        if times is None:
            return deque()
        cutoff = self.clock() - _WINDOW
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._fails[client]
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None if it may now."""
        times = self._recent(client)
        if len(times) < self.limit:
            return None
        self.blocked_total += 1
        return max(1.0, times[0] + _WINDOW - self.clock())

    def failed(self, client: str) -> None:
        if client not in self._fails and len(self._fails) >= self.most_clients:
            with contextlib.suppress(StopIteration):
                del self._fails[next(iter(self._fails))]
        self._fails.setdefault(client, deque()).append(self.clock())
