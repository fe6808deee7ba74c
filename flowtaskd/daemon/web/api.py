"""The JSON API under ``/api/v1/``: one small handler per route, each a door to one operation.

A handler parses the path, query and body, calls the operation (a control request through
:class:`~flowtaskd.daemon.web.ops.Ops`, or a history read through
:mod:`~flowtaskd.daemon.web.views`) and formats the reply. Operations the control socket
answers with its request fields as they are (retry, pause, unpause, backfill, ...) are rows
of :data:`~flowtaskd.daemon.web.routes.PASS_THROUGH`: adding one is one line there.
Errors are ``{"error", "detail"}`` with a proper status (400 naming the field, 401/403,
404, 409, 501).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import HttpVersion11, web

from flowtaskd.daemon.control.requests import BadRequest, subscribe_filters
from flowtaskd.daemon.web.logfile import log_path, read_chunks
from flowtaskd.daemon.web.ops import ApiError
from flowtaskd.daemon.web.routes import PASS_THROUGH, RUN_STATUSES
from flowtaskd.daemon.web.views import run_detail, run_row, task_detail, task_list
from flowtaskd.logs import GLOBAL_MASKER

if TYPE_CHECKING:
    from flowtaskd.daemon.control.streams import Stream
    from flowtaskd.daemon.web.state import WebState

__all__ = ["add_routes", "json_response"]

_FINISHED = ("done", "failed", "cancelled", "interrupted")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, **headers: str) -> web.Response:
    resp = web.Response(
        body=orjson.dumps(data, default=str), status=status, content_type="application/json"
    )
    resp.headers.update(headers)
    if len(resp.body or b"") > 4096:  # type: ignore[arg-type]
        resp.enable_compression()
    return resp


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body is a JSON object")
    return data


def _int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, f"{key!r} must be a whole number from {low} to {high}", {"field": key})
    return value


def _bool(request: web.Request, key: str) -> bool:
    raw = request.query.get(key, "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ApiError(400, f"{key!r} must be true or false", {"field": key})
    return raw in ("true", "1", "yes")


def _since(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        raise ApiError(
            400, "'since' is epoch seconds or an ISO 8601 time", {"field": "since"}
        ) from None


class _Api:
    ping = 15.0  # seconds between comment lines on an idle event stream

    def __init__(self, server: WebState) -> None:
        self.s = server
        self.d = server.d
        self.ops = server.ops

    async def status(self, request: web.Request) -> web.Response:
        return json_response(await self.ops.call("status"))

    async def tasks(self, request: web.Request) -> web.Response:
        return json_response(await task_list(self.d, self.ops))

    async def task(self, request: web.Request) -> web.Response:
        return json_response(await task_detail(self.d, self.ops, request.match_info["name"]))

    async def trigger(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await _body(request)
        wait = _bool(request, "wait") or body.get("wait") is True
        if self.d.library.get(name) is None:
            raise ApiError(404, f"no task named {name!r} is loaded", {"task": name})
        extra = set(body) - {"params", "wait"}
        if extra:
            field = sorted(extra)[0]
            raise ApiError(
                400, f"a trigger takes 'params' and 'wait', not {field!r}", {"field": field}
            )
        reply = await self.ops.call("trigger", task=name, params=body.get("params"), wait=wait)
        location = f"/api/v1/runs/{reply['run_id']}"
        return json_response(reply, 200 if wait else 202, Location=location)

    async def runs(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status")
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(
                400, f"'status' is one of {', '.join(RUN_STATUSES)}", {"field": "status"}
            )
        limit = _int(request, "limit", 50, 1, 500)
        offset = _int(request, "offset", 0, 0, 10**9)
        rows, total = await asyncio.to_thread(
            self.d.store.find_runs,
            task=q.get("task"),
            status=status,
            trigger=q.get("trigger"),
            since=_since(q.get("since")),
            limit=limit,
            offset=offset,
        )
        more = offset + len(rows) < total
        return json_response(
            {
                "runs": GLOBAL_MASKER.mask_obj([run_row(r) for r in rows]),
                "total": total,
                "offset": offset,
                "next_offset": offset + len(rows) if more else None,
            }
        )

    async def run(self, request: web.Request) -> web.Response:
        return json_response(await run_detail(self.d, request.match_info["run_id"]))

    async def cancel(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        runs = self.d.runs
        going = any(r.startswith(run_id) for r in runs.active) or any(
            r.run_id.startswith(run_id) for r in runs.queue
        )
        if not going:
            found = await asyncio.to_thread(self.d.store.get_run, run_id)
            if found is not None and found[0].status in _FINISHED:
                raise ApiError(409, f"run {found[0].run_id} has already ended ({found[0].status})")
        return json_response(await self.ops.call("cancel", run_id=run_id))

    async def reload(self, request: web.Request) -> web.Response:
        return json_response(await self.ops.call("reload"))

    def pass_through(self, cmd: str, field: str, key: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = await _body(request)
            body.pop("cmd", None)
            return json_response(
                await self.ops.call(cmd, **{**body, field: request.match_info[key]})
            )

        return handler

    async def log(self, request: web.Request) -> web.StreamResponse:
        run_id, step = request.match_info["run_id"], request.match_info["step"]
        stream = request.query.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise ApiError(400, "'stream' is stdout or stderr", {"field": "stream"})
        follow = _bool(request, "follow")
        detail = await run_detail(self.d, run_id)
        s = detail["steps"].get(step)
        if s is None:
            raise ApiError(
                404, f"run {detail['run']['run_id']} has no step {step!r}", {"step": step}
            )
        tries = s.get("tries") or []
        last = max((t["attempt"] for t in tries), default=1)
        attempt = _int(request, "attempt", last, 1, 10**6)
        path = log_path(detail["run"].get("log_dir"), step, attempt, stream)
        full_id = detail["run"]["run_id"]
        if path is None:
            raise ApiError(404, f"no log for step {step!r} of run {full_id}", {"step": step})
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        resp.headers["X-Log-Attempt"] = str(attempt)
        await resp.prepare(request)

        def going() -> bool:
            return not self.s.closing.is_set() and self._attempt_going(full_id, step, attempt)

        async for chunk in read_chunks(path, follow=going if follow else None):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    def _attempt_going(self, run_id: str, step: str, attempt: int) -> bool:
        active = self.d.runs.active.get(run_id)
        if active is None:
            return False
        mon = active.task.stats.steps.get(step)
        if mon is None:
            return True  # not started yet
        tries = [a for a in mon.attempts if a.attempt == attempt]
        return not tries or tries[-1].finished_at is None

    async def events(self, request: web.Request) -> web.StreamResponse:
        names = [n for n in request.query.get("events", "").split(",") if n]
        try:
            events, task = subscribe_filters(
                {"cmd": "subscribe", "events": names or None, "task": request.query.get("task")}
            )
        except BadRequest as exc:
            raise ApiError(400, str(exc), {"field": "events"}) from None
        raw_last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        last_id = int(raw_last) if raw_last is not None and raw_last.isdigit() else None
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        chunked = request.version >= HttpVersion11
        if chunked:
            resp.enable_chunked_encoding()  # the flusher frames its writes as chunks
        await resp.prepare(request)
        await resp.write(b"retry: 1000\n\n")  # the headers are on the wire after this
        transport = request.transport
        if transport is None or transport.is_closing():
            return resp
        assert isinstance(transport, asyncio.WriteTransport)
        log = self.s.events
        stream = log.attach(
            transport, None if events is None else frozenset(events), task, last_id, chunked=chunked
        )
        try:
            await self._pump(stream)
        finally:
            log.detach(stream)
        if not transport.is_closing():
            with contextlib.suppress(ConnectionError):
                await resp.write_eof()
        return resp

    async def _pump(self, stream: Stream) -> None:
        """Until the client goes, is dropped, or the server stops (the flusher writes the
        events); a comment line every ``ping`` seconds keeps proxies from closing an idle
        stream and notices a client that went away."""
        while not stream.ended.is_set():
            try:
                async with asyncio.timeout(self.ping):
                    await stream.ended.wait()
            except TimeoutError:
                if stream.transport.is_closing():
                    return
                self.s.events.ping(stream)

    async def openapi(self, request: web.Request) -> web.Response:
        from flowtaskd.daemon.web.openapi import spec  # noqa: PLC0415 - built on first use

        return json_response(spec())


def add_routes(app: web.Application, server: WebState) -> None:
    api = _Api(server)
    r = app.router
    v1 = "/api/v1"
    r.add_get(f"{v1}/status", api.status)
    r.add_get(f"{v1}/tasks", api.tasks)
    r.add_get(f"{v1}/tasks/{{name}}", api.task)
    r.add_post(f"{v1}/tasks/{{name}}/runs", api.trigger)
    r.add_get(f"{v1}/runs", api.runs)
    r.add_get(f"{v1}/runs/{{run_id}}", api.run)
    r.add_get(f"{v1}/runs/{{run_id}}/steps/{{step}}/log", api.log)
    r.add_post(f"{v1}/runs/{{run_id}}/cancel", api.cancel)
    r.add_post(f"{v1}/reload", api.reload)
    r.add_get(f"{v1}/events", api.events)
    r.add_get(f"{v1}/openapi.json", api.openapi)
    for method, path, cmd, field in PASS_THROUGH:
        key = path.split("{")[1].split("}")[0]
        r.add_route(method, f"{v1}{path}", api.pass_through(cmd, field, key))
