"""``HTTPClient`` and ``RESTClient``: one HTTP request on httpx.

The body is saved to a file (``download: true``, streamed to ``<name>.part`` then renamed)
or becomes the step's output (text for ``HTTPClient``, JSON for ``RESTClient``), size-capped.
A 4xx/5xx response fails the step unless its code is listed in ``no_errors``; a
``Retry-After`` header is handed to the step's retry policy. The request's time limit is
the step's ``timeout``; cancelling or timing out a download removes its ``.part`` file.
The exchange itself runs httpx's sync client in a thread of its own
(:mod:`flowtaskd.components.httpthread`: a third of the CPU per download of httpx's async
client).
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from flowtaskd.components.base import Component
from flowtaskd.components.support import AnyCase, Credentials
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    import httpx

    from flowtaskd.components.context import StepContext, StepOutcome
    from flowtaskd.components.httpthread import Transfer

__all__ = ["COMPONENTS"]

_CHUNK = 1 << 20


class AuthType(StrEnum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"
    API_KEY = "api_key"  # a header
    KEY = "key"  # a query parameter


class HTTPCredentials(Credentials):
    token: str | None = Field(default=None, description="Bearer token (auth_type: bearer).")
    apikey: str | None = Field(default=None, description="API key (auth_type api_key / key).")


class Destination(StrictModel):
    directory: str = Field(description="Folder the body is saved into (made if missing).")
    filename: str | None = Field(
        default=None, description="File name (default: Content-Disposition, else the URL's)."
    )
    overwrite: bool = True


def _codes(value: Any) -> Any:
    """Upstream writes ``no_errors: {'403': {...}}``: the keys are the codes."""
    return list(value) if isinstance(value, dict) else value


_METHODS = AnyCase("get", "post", "put", "patch", "delete", "head", "options")


class HTTPParams(StrictModel):
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL.")
    method: Annotated[str, _METHODS] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    cookies: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Query parameters added to the URL."
    )
    data: str | dict[str, str] | None = Field(
        default=None, description="Request body: text, or a mapping sent as a form."
    )
    body_json: Any = Field(default=None, alias="json", description="A JSON request body.")
    auth_type: AuthType = AuthType.NONE
    credentials: HTTPCredentials | None = None
    api_key_name: str = Field(default="X-API-Key", description="Header or query name of the key.")
    allow_plaintext_credentials: bool = False
    verify_ssl: bool = True
    follow_redirects: bool = True
    download: bool = Field(default=False, description="Save the body to `destination`.")
    destination: Destination | None = None
    no_errors: Annotated[
        list[int],
        BeforeValidator(_codes, json_schema_input_type=list[int] | dict[str, Any]),
    ] = Field(default_factory=list, description="4xx/5xx codes that do not fail the step.")
    output_cap: int = Field(default=1 << 20, ge=0, description="Characters of body kept as output.")


class RESTParams(HTTPParams):
    data_key: str | None = Field(
        default=None, description="Dot path into the JSON answer, e.g. 'data.items.0'."
    )


class HTTPClientComponent(Component):
    name = "HTTPClient"
    Params: ClassVar[type[StrictModel]] = HTTPParams
    needs_env = True
    summary = "Make an HTTP request; the body as output or saved to a file."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _request(ctx, rest=False)


class RESTClientComponent(Component):
    name = "RESTClient"
    Params: ClassVar[type[StrictModel]] = RESTParams
    needs_env = True
    summary = "Call a JSON API; the decoded answer (or a part of it) is the output."

    async def run(self, ctx: StepContext) -> StepOutcome:
        return await _request(ctx, rest=True)


COMPONENTS: list[type[Component]] = [HTTPClientComponent, RESTClientComponent]


def _auth(ctx: StepContext, p: HTTPParams) -> tuple[Any, dict[str, str], dict[str, str]]:
    """(httpx auth, extra headers, extra query) from ``auth_type`` and ``credentials``."""
    from flowtaskd.components.support import credential, plain_value  # noqa: PLC0415

    c = p.credentials or HTTPCredentials()
    allow = p.allow_plaintext_credentials

    def secret(field: str, value: str | None) -> str:
        got = credential(ctx, value, f"credentials.{field}", allow_plaintext=allow)
        if got is None:
            from flowtaskd.components.support import CredentialError  # noqa: PLC0415

            raise CredentialError(f"auth_type {p.auth_type} needs credentials.{field}")
        return got

    if p.auth_type is AuthType.BASIC:
        user = plain_value(ctx, c.username) or ""
        return (user, secret("password", c.password)), {}, {}
    if p.auth_type is AuthType.BEARER:
        return None, {"Authorization": f"Bearer {secret('token', c.token or c.apikey)}"}, {}
    if p.auth_type is AuthType.API_KEY:
        return None, {p.api_key_name: secret("apikey", c.apikey)}, {}
    if p.auth_type is AuthType.KEY:
        return None, {}, {p.api_key_name: secret("apikey", c.apikey)}
    return None, {}, {}


async def _request(ctx: StepContext, *, rest: bool) -> StepOutcome:
    import asyncio  # noqa: PLC0415 - keep validation pure

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.httpthread import Transfer, run_in_thread  # noqa: PLC0415
    from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
    from flowtaskd.components.support import CredentialError  # noqa: PLC0415

    p: HTTPParams = (RESTParams if rest else HTTPParams).model_validate(ctx.params)
    try:
        auth, headers, query = _auth(ctx, p)
    except CredentialError as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    headers = {**p.headers, **headers}
    if rest:
        headers.setdefault("Accept", "application/json")
    query = {**{k: _q(v) for k, v in p.query.items()}, **query}
    transfer = Transfer()
    try:
        async with asyncio.timeout(ctx.timeout):
            outcome = await run_in_thread(
                transfer, lambda: _exchange(ctx, p, rest, auth, headers, query, transfer)
            )
    except TimeoutError:
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    return mask_outcome(outcome, ctx.secrets)


def _exchange(
    ctx: StepContext,
    p: HTTPParams,
    rest: bool,
    auth: Any,
    headers: dict[str, str],
    query: dict[str, str],
    transfer: Transfer,
) -> StepOutcome:
    """The request and its answer, blocking (in :func:`run_in_thread`'s thread)."""
    import httpx  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.httpthread import Stopped  # noqa: PLC0415

    _larger_reads()
    transport = httpx.HTTPTransport(verify=p.verify_ssl)
    transfer.attach(transport)
    timeout = httpx.Timeout(ctx.timeout) if ctx.timeout else httpx.Timeout(None)
    try:
        with httpx.Client(
            transport=transport,
            follow_redirects=p.follow_redirects,
            timeout=timeout,
            cookies=p.cookies,
        ) as client:
            request = client.build_request(
                p.method.upper(),
                p.url,
                headers=headers,
                params=query,
                content=p.data if isinstance(p.data, str) else None,
                data=p.data if isinstance(p.data, dict) else None,
                json=p.body_json,
            )
            response = client.send(request, auth=auth, stream=True)
            try:
                return _answer(ctx, p, response, rest, transfer)
            finally:
                response.close()
    except httpx.HTTPError as exc:
        if transfer.stopped:
            raise Stopped from exc
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return StepOutcome(StepStatus.FAILED, error=error)
    except OSError as exc:
        return StepOutcome(StepStatus.FAILED, error=f"cannot save the body: {exc}")


def _larger_reads() -> None:
    """httpcore reads a socket 64 KiB at a time; reads of up to 1 MiB (recv returns what
    is there, so nothing waits longer) take a quarter of the calls and Python-level chunk
    handling per download (bench/components.py). A class attribute of httpcore's, read
    per connection."""
    from httpcore._sync.http11 import HTTP11Connection  # noqa: PLC0415

    if getattr(HTTP11Connection, "READ_NUM_BYTES", 0) < _CHUNK:
        HTTP11Connection.READ_NUM_BYTES = _CHUNK


def _q(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _answer(
    ctx: StepContext, p: HTTPParams, response: httpx.Response, rest: bool, transfer: Transfer
) -> StepOutcome:
    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    code = response.status_code
    if code >= 400 and code not in p.no_errors:
        body = _read_capped(response, 300, transfer).decode("utf-8", "replace").strip()
        error = f"HTTP {code} {response.reason_phrase} from {response.request.url.host}"
        if body:
            error += f": {body.splitlines()[0][:200]}"
        return StepOutcome(
            StepStatus.FAILED,
            error=error,
            exit_code=code,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    if p.download:
        saved, size = _save(ctx, p, response, transfer)
        return StepOutcome(StepStatus.DONE, output=str(saved), exit_code=code, bytes_out=size)
    raw = _read_capped(response, p.output_cap if not rest else 64 << 20, transfer)
    if not rest:
        return StepOutcome(
            StepStatus.DONE, output=_text(response, raw[: p.output_cap]), exit_code=code
        )
    return _json_outcome(p, raw, code)


def _json_outcome(p: HTTPParams, raw: bytes, code: int) -> StepOutcome:
    import json  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.support import capped_json  # noqa: PLC0415

    if not raw.strip():
        return StepOutcome(StepStatus.DONE, output="null", exit_code=code)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return StepOutcome(
            StepStatus.FAILED, error=f"the answer is not JSON: {exc}", exit_code=code
        )
    key = getattr(p, "data_key", None)
    if key:
        try:
            value = _dig(value, key)
        except (KeyError, IndexError, TypeError):
            return StepOutcome(StepStatus.FAILED, error=f"data_key {key!r} is not in the answer")
    text, cut = capped_json(value, p.output_cap)
    if cut:
        return StepOutcome(
            StepStatus.FAILED,
            error=f"the JSON answer is larger than output_cap ({p.output_cap} characters)",
            exit_code=code,
        )
    return StepOutcome(StepStatus.DONE, output=text, exit_code=code)


def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _read_capped(response: httpx.Response, cap: int, transfer: Transfer) -> bytes:
    out = bytearray()
    for chunk in response.iter_bytes():
        transfer.check()
        out += chunk
        if len(out) >= cap:
            break
    return bytes(out[:cap])


def _text(response: httpx.Response, raw: bytes) -> str:
    return raw.decode(response.encoding or "utf-8", "replace")


_CD_NAME = re.compile(r"""filename\*?=(?:UTF-8'')?["']?([^"';]+)""", re.IGNORECASE)


def _filename(p: HTTPParams, response: httpx.Response) -> str:
    dest = p.destination
    if dest is not None and dest.filename:
        return dest.filename
    match = _CD_NAME.search(response.headers.get("Content-Disposition", ""))
    name = match[1] if match else response.request.url.path.rsplit("/", 1)[-1]
    name = Path(name).name  # never a path from the server
    return name if name not in ("", ".", "..") else "download"


def _save(
    ctx: StepContext, p: HTTPParams, response: httpx.Response, transfer: Transfer
) -> tuple[Path, int]:
    """The body streamed to ``<name>.part``, renamed when complete; the ``.part`` file is
    removed when anything stops it (an error, a stop from the loop)."""
    from flowtaskd.components.support import (  # noqa: PLC0415
        commit_part,
        discard,
        local_path,
        part_path,
    )

    folder = local_path(ctx, p.destination.directory if p.destination else ".")
    target = folder / _filename(p, response)
    if target.exists() and p.destination is not None and not p.destination.overwrite:
        raise FileExistsError(f"destination exists: {target}")
    folder.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    size = 0
    fh = transfer.open_part(part)
    try:
        with fh:
            for chunk in response.iter_bytes():
                transfer.check()
                fh.write(chunk)
                size += len(chunk)
        commit_part(part, target)
    except BaseException:
        discard(part)
        raise
    return target, size


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number, or an HTTP date)."""
    import email.utils  # noqa: PLC0415 - email.utils imports socket: not at validation

    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
