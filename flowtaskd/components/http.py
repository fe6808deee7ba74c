"""``HTTPClient`` and ``RESTClient``: one HTTP request on httpx.

The body is saved to a file (``download: true``, streamed to ``<name>.part`` then renamed)
or becomes the step's output (text for ``HTTPClient``, JSON for ``RESTClient``), size-capped.
A 4xx/5xx response fails the step unless its code is listed in ``no_errors``; a
``Retry-After`` header is handed to the step's retry policy. The request's time limit is
the step's ``timeout``; cancelling or timing out a download removes its ``.part`` file.
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

    import httpx  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
    from flowtaskd.components.support import CredentialError  # noqa: PLC0415

    _larger_reads()
    p: HTTPParams = (RESTParams if rest else HTTPParams).model_validate(ctx.params)
    try:
        auth, headers, query = _auth(ctx, p)
    except CredentialError as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    headers = {**p.headers, **headers}
    if rest:
        headers.setdefault("Accept", "application/json")
    timeout = httpx.Timeout(ctx.timeout) if ctx.timeout else httpx.Timeout(None)
    try:
        async with (
            asyncio.timeout(ctx.timeout),
            httpx.AsyncClient(
                verify=p.verify_ssl,
                follow_redirects=p.follow_redirects,
                timeout=timeout,
                cookies=p.cookies,
            ) as client,
        ):
            request = client.build_request(
                p.method.upper(),
                p.url,
                headers=headers,
                params={**{k: _q(v) for k, v in p.query.items()}, **query},
                content=p.data if isinstance(p.data, str) else None,
                data=p.data if isinstance(p.data, dict) else None,
                json=p.body_json,
            )
            response = await client.send(request, auth=auth, stream=True)
            try:
                outcome = await _answer(ctx, p, response, rest)
            finally:
                await response.aclose()
    except TimeoutError:
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
    except OSError as exc:
        return StepOutcome(StepStatus.FAILED, error=f"cannot save the body: {exc}")
    return mask_outcome(outcome, ctx.secrets)


def _larger_reads() -> None:
    """httpcore reads a socket 64 KiB at a time, which caps a download near 250 MB/s here
    (bench/components.py); reads of up to 1 MiB (recv returns what is there, so nothing
    waits longer) lift that. A class attribute of httpcore's, read per connection."""
    from httpcore._async.http11 import AsyncHTTP11Connection  # noqa: PLC0415

    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < _CHUNK:
        AsyncHTTP11Connection.READ_NUM_BYTES = _CHUNK


def _q(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _answer(
    ctx: StepContext, p: HTTPParams, response: httpx.Response, rest: bool
) -> StepOutcome:
    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415

    code = response.status_code
    if code >= 400 and code not in p.no_errors:
        body = (await _read_capped(response, 300)).decode("utf-8", "replace").strip()
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
        saved, size = await _save(ctx, p, response)
        return StepOutcome(StepStatus.DONE, output=str(saved), exit_code=code, bytes_out=size)
    raw = await _read_capped(response, p.output_cap if not rest else 64 << 20)
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


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    out = bytearray()
    async for chunk in response.aiter_bytes():
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


async def _save(ctx: StepContext, p: HTTPParams, response: httpx.Response) -> tuple[Path, int]:
    import asyncio  # noqa: PLC0415

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
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    part = part_path(target)
    size = 0
    done = False
    fh = await asyncio.to_thread(open, part, "wb")
    try:
        async for chunk in response.aiter_bytes(_CHUNK):
            await asyncio.to_thread(fh.write, chunk)
            size += len(chunk)
        await asyncio.to_thread(fh.close)
        await asyncio.to_thread(commit_part, part, target)
        done = True
    finally:
        if not done:
            fh.close()
            discard(part)
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
