"""One webhook POST: the body, the headers, the signature and what a failure means.

Shared by the daemon's webhook dispatcher (config ``webhooks:``) and the task file's
``WebHook`` action, so both send the same thing.

**Signing** (``signing:``):

* ``standard`` (default) -- Standard Webhooks (standardwebhooks.com): the body is
  ``{"type": <event>, "timestamp": <ISO 8601>, "data": <the event payload>}`` and the
  headers ``webhook-id`` (``msg_...``, the same on every retry of one delivery),
  ``webhook-timestamp`` (Unix seconds of this attempt) and, with secrets,
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` -- one ``v1,``
  entry per secret, space-separated, so a receiver can move to a new secret while the old
  one still verifies. Secrets are ``whsec_<base64>`` as the spec's libraries expect.
  Receivers reject old timestamps, so a captured request cannot be replayed.
* ``github`` -- the body is the event payload itself and, with a secret,
  ``X-Flowtaskd-Signature: sha256=<hex HMAC-SHA256 of the body>`` (GitHub's form).

Both add ``X-Flowtaskd-Event``, ``X-Flowtaskd-Delivery`` (= the webhook id),
``User-Agent: flowtaskd/<version>`` and ``Content-Type: application/json``.

**Failures.** A connection error, a timeout, 5xx and 429 may be retried
(:class:`RetryableError`, with the receiver's ``Retry-After`` when it sent one); any other
status outside 2xx is final (:class:`FinalError`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_SCHEDULE",
    "FinalError",
    "RetryableError",
    "Target",
    "WebhookSink",
    "deliver_inline",
    "display_url",
    "github_signature",
    "new_delivery_id",
    "parse_retry_after",
    "post",
    "request_for",
    "standard_key",
    "standard_signature",
    "user_agent",
]

Signing = Literal["standard", "github"]

DEFAULT_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
"""Seconds before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h (Standard Webhooks')."""
_RETRY_AFTER_MAX = 86400.0
WHSEC = "whsec_"


def user_agent() -> str:
    """``flowtaskd/<installed version>``."""
    try:
        version = metadata.version("flowtaskd")
    except metadata.PackageNotFoundError:  # running from a plain checkout
        version = "0"
    return f"flowtaskd/{version}"


def display_url(url: str) -> str:
    """The URL for a log line: userinfo and query (tokens live there) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else ""))


def standard_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not secret.startswith(WHSEC):
        raise ValueError("a Standard Webhooks secret starts with whsec_ (then base64)")
    try:
        key = base64.b64decode(secret.removeprefix(WHSEC), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes (24 base64 characters)")
    return key


def standard_signature(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: ``v1,<base64>`` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    macs = (hmac.new(standard_key(s), signed, hashlib.sha256).digest() for s in secrets)
    return " ".join("v1," + base64.b64encode(mac).decode() for mac in macs)


def github_signature(secret: str, body: bytes) -> str:
    """``X-Flowtaskd-Signature``: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Target:
    """Where and how to POST: one ``webhooks:`` entry or one ``WebHook`` action."""

    url: str = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    signing: Signing = "standard"
    timeout: float = 10.0
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    key: str = ""
    """A stable name of this target for pending-delivery files (never the URL or secret)."""

    @property
    def shown(self) -> str:
        return display_url(self.url)

    def delay(self, retry: int) -> float | None:
        """Seconds before retry number ``retry`` (1-based); None: no retries left."""
        return self.schedule[retry - 1] if retry <= len(self.schedule) else None


def request_for(
    target: Target, payload: Mapping[str, Any], msg_id: str, now: float
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt at ``now`` (Unix seconds)."""
    event = str(payload.get("event"))
    headers = {
        **target.headers,
        "Content-Type": "application/json",
        "X-Flowtaskd-Event": event,
        "X-Flowtaskd-Delivery": msg_id,
    }
    if target.signing == "github":
        body = json.dumps(payload, default=str, sort_keys=True).encode()
        if target.secrets:
            headers["X-Flowtaskd-Signature"] = github_signature(target.secrets[0], body)
        return body, headers
    ts = payload.get("ts")
    when = datetime.fromtimestamp(float(ts) if isinstance(ts, int | float) else now, UTC)
    doc = {"type": event, "timestamp": when.isoformat().replace("+00:00", "Z"), "data": payload}
    body = json.dumps(doc, default=str, sort_keys=True).encode()
    stamp = int(now)
    headers["webhook-id"] = msg_id
    headers["webhook-timestamp"] = str(stamp)
    if target.secrets:
        headers["webhook-signature"] = standard_signature(target.secrets, msg_id, stamp, body)
    return body, headers


class RetryableError(Exception):
    """A failed attempt that may be retried; ``retry_after`` is the receiver's wish."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FinalError(Exception):
    """A failed attempt that is not retried (a 4xx other than 429, a redirect)."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (seconds, or an HTTP date) as seconds from ``now``, capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), _RETRY_AFTER_MAX)


async def post(
    client: httpx.AsyncClient, target: Target, body: bytes, headers: dict[str, str], now: float
) -> None:
    """One attempt; raises RetryableError or FinalError unless the receiver said 2xx."""
    import asyncio  # noqa: PLC0415 - keeps this module's import light for the CLI

    import httpx  # noqa: PLC0415 - 3 MB, only for a daemon or task that posts

    try:
        async with asyncio.timeout(target.timeout):
            response = await client.post(
                target.url, content=body, headers=headers, timeout=target.timeout
            )
    except (TimeoutError, httpx.TimeoutException):
        raise RetryableError(f"no answer within {target.timeout:g}s") from None
    except httpx.TransportError as exc:
        text = str(exc).replace(target.url, target.shown) if target.url else str(exc)
        raise RetryableError(f"{type(exc).__name__}: {text}") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    if status >= 500 or status == 429:
        after = parse_retry_after(response.headers.get("Retry-After"), now)
        raise RetryableError(f"HTTP {status}", retry_after=after)
    raise FinalError(f"HTTP {status}")


class WebhookSink(Protocol):
    """Where a ``WebHook`` action hands its delivery (the daemon's dispatcher)."""

    def submit(self, target: Target, payload: Mapping[str, Any]) -> bool: ...


class _Clock(Protocol):
    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


async def deliver_inline(target: Target, payload: Mapping[str, Any], clock: _Clock) -> None:
    """Send one delivery here and now, retried on ``target``'s schedule (no daemon around:
    ``flowtaskd exec`` or the Python API). Raises the last error when it gives up."""
    import httpx  # noqa: PLC0415 - 3 MB, only for a task that posts

    msg_id = new_delivery_id()
    data = dict(payload)
    data.setdefault("ts", clock.time())
    retry = 0
    async with httpx.AsyncClient(headers={"User-Agent": user_agent()}) as client:
        while True:
            now = clock.time()
            body, headers = request_for(target, data, msg_id, now)
            try:
                await post(client, target, body, headers, now)
                return
            except RetryableError as exc:
                retry += 1
                delay = target.delay(retry)
                if delay is None:
                    raise
                await clock.sleep(exc.retry_after if exc.retry_after is not None else delay)
