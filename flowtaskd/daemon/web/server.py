"""The web server: the HTTP API and the dashboard, in the daemon's event loop (aiohttp).

A daemon extension like the control socket: :meth:`WebServer.serve` runs until ``stop``.
It loads the login tokens (creating ``<state_dir>/web-token`` at first start, then printing
the login URL once on stderr), attaches the event log to the bus and listens. If the
address is taken, the daemon goes on running tasks: ``web_bind_failed`` is logged as an
error, ``status`` reports it under ``web.error``, and the bind is retried (1 s, doubling up
to 30 s). Every request passes :func:`_guard` (authentication, CSRF, failed-login limits,
see :mod:`flowtaskd.daemon.web.auth`) and :func:`_errors` (JSON errors, never a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import TYPE_CHECKING
from urllib.parse import quote

import structlog
from aiohttp import web

from flowtaskd.daemon.web.api import add_routes, json_response
from flowtaskd.daemon.web.auth import FailedLogins, Sessions, TokenSet, ensure_token_file
from flowtaskd.daemon.web.ops import ApiError, Ops, RequestAnswerer
from flowtaskd.daemon.web.sse import EventLog
from flowtaskd.engine.events import CATCH_ALL, Payload
from flowtaskd.errors import FlowtaskError
from flowtaskd.logs import GLOBAL_MASKER

if TYPE_CHECKING:
    from flowtaskd.daemon.control.requests import ControlHost

__all__ = ["COOKIE", "WebServer"]

COOKIE = "flowtaskd_session"
_log = structlog.get_logger("flowtaskd.web")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = ("/login", "/static/", "/favicon.ico")
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " frame-ancestors 'none'; form-action 'self'"
    ),
}
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """Serves the HTTP API and the dashboard for ``daemon``; see the module doc."""

    def __init__(
        self,
        daemon: ControlHost,
        requests: RequestAnswerer,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.d = daemon
        self.cfg = daemon.config.web
        self.ops = Ops(requests)
        self.events = EventLog()
        self.sessions = Sessions(ttl=self.cfg.session_hours * 3600, clock=clock)
        self.failed = FailedLogins(self.cfg.login_failures, clock)
        self.tokens = TokenSet()
        self.closing = asyncio.Event()
        self.retry = retry
        self.url: str | None = None
        self.error: str | None = None
        self._static = files("flowtaskd.daemon.web") / "static"

    def summary(self) -> Payload:
        """The ``web`` section of ``status``."""
        return {
            "enabled": True,
            "listen": self.cfg.listen,
            "url": self.url,
            "error": self.error,
            "sessions": len(self.sessions),
            "event_clients": self.events.clients,
            "event_clients_dropped": self.events.dropped,
            "logins_refused": self.failed.blocked_total,
        }

    # -- life -------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        try:
            token, created = await asyncio.to_thread(self._load_tokens)
            ssl_ctx = self._ssl()
        except (OSError, ssl.SSLError, FlowtaskError) as exc:
            self.error = f"web API off: {exc}"
            _log.error("web_failed", error=self.error)
            await stop.wait()
            return
        disconnect = self.d.bus.connect(CATCH_ALL, self.events, copy=False)
        runner = web.AppRunner(
            self._app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            if await self._bind(runner, ssl_ctx, stop):
                if created:
                    login = f"{self.url}/login?token={quote(token)}"
                    print(f"flowtaskd web dashboard: {login}", file=sys.stderr, flush=True)
                await stop.wait()
        finally:
            self.closing.set()
            self.events.end()  # every event stream gets what is pending, then ends
            await runner.cleanup()
            disconnect()
            _log.info("web_closed", listen=self.cfg.listen)

    def _load_tokens(self) -> tuple[str, bool]:
        cfg = self.cfg
        assert cfg.token_file is not None  # filled by the config's defaults
        cfg.token_file.parent.mkdir(parents=True, exist_ok=True)
        token, created = ensure_token_file(cfg.token_file)
        more = [t.file.read_text().strip() for t in cfg.tokens if t.file is not None]
        digests = [bytes.fromhex(t.sha256) for t in cfg.tokens if t.sha256 is not None]
        GLOBAL_MASKER.update([token, *more])
        self.tokens = TokenSet([token, *more], digests)
        return token, created

    def _ssl(self) -> ssl.SSLContext | None:
        if self.cfg.tls_cert is None or self.cfg.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        return ctx

    async def _bind(
        self, runner: web.AppRunner, ssl_ctx: ssl.SSLContext | None, stop: asyncio.Event
    ) -> bool:
        host, port = self.cfg.address
        delay, most = self.retry
        while not stop.is_set():
            site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=512)
            try:
                await site.start()
            except OSError as exc:
                self.error = f"cannot listen on {self.cfg.listen}: {exc.strerror or exc}"
                _log.error(
                    "web_bind_failed", listen=self.cfg.listen, error=self.error, retry_in=delay
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                delay = min(delay * 2, most)
                continue
            self.error = None
            bound = runner.addresses[-1]
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            scheme = "https" if ssl_ctx is not None else "http"
            self.url = (self.cfg.public_url or f"{scheme}://{shown}:{bound[1]}").rstrip("/")
            _log.info("web_listening", listen=self.cfg.listen, url=self.url, port=bound[1])
            return True
        return False

    # -- the application --------------------------------------------------------------
    def _app(self) -> web.Application:
        from flowtaskd.daemon.web.pages import add_pages  # noqa: PLC0415 - jinja2 with pages

        app = web.Application(middlewares=[self._errors, self._guard], client_max_size=1 << 20)
        add_routes(app, self)
        add_pages(app, self)
        app.router.add_get("/login", self._login_get)
        app.router.add_post("/login", self._login_post)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/static/{name}", self._static_file)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except ApiError as exc:
            resp = json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status < 400 or not request.path.startswith("/api/"):
                raise
            resp = json_response({"error": exc.reason, "detail": None}, exc.status)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            error = GLOBAL_MASKER.mask(f"{type(exc).__name__}: {exc}")
            _log.error("web_request_failed", path=request.path, error=error, exc_info=exc)
            resp = json_response({"error": "internal error", "detail": error}, 500)
        if not resp.prepared:
            resp.headers.update(_HEADERS)
        return resp

    def _client(self, request: web.Request) -> str:
        return request.remote or "?"

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(_PUBLIC):
            return await handler(request)
        client = self._client(request)
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            wait = self.failed.retry_after(client)
            if wait is not None:
                raise ApiError(
                    429, "too many failed logins; try again later", {"retry_after": wait}
                )
            if scheme.lower() != "bearer" or not self.tokens.accepts(token.strip()):
                self.failed.failed(client)
                _log.warning("web_login_failed", client=client, how="bearer")
                raise ApiError(401, "bad token", {"auth": "Bearer"})
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if path.startswith("/api/"):
                raise ApiError(401, "log in: send 'Authorization: Bearer <token>'", None)
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
        if request.method not in _SAFE:
            given = request.headers.get("X-CSRF-Token")
            if given is None and request.content_type == "application/x-www-form-urlencoded":
                given = str((await request.post()).get("csrf", ""))
            if given != session.csrf:
                raise ApiError(403, "missing or wrong CSRF token (send X-CSRF-Token)", None)
        request["session"] = session
        return await handler(request)

    # -- login ------------------------------------------------------------------------
    async def _login_get(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token")
        if token is not None:
            return self._exchange(request, token, request.query.get("next", "/"))
        return self._login_page(request, None, 200)

    async def _login_post(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        return self._exchange(request, str(form.get("token", "")), str(form.get("next", "/")))

    def _exchange(self, request: web.Request, token: str, target: str) -> web.StreamResponse:
        client = self._client(request)
        wait = self.failed.retry_after(client)
        if wait is not None:
            resp = self._login_page(request, "Too many failed logins: wait a minute.", 429)
            resp.headers["Retry-After"] = str(int(wait))
            return resp
        if not self.tokens.accepts(token.strip()):
            self.failed.failed(client)
            _log.warning("web_login_failed", client=client, how="form")
            return self._login_page(request, "That token is not valid.", 401)
        session = self.sessions.new()
        _log.info("web_login", client=client)
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        resp = _redirect(target)
        resp.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="Strict",
            secure=self.cfg.tls or (self.cfg.public_url or "").startswith("https:"),
            path="/",
            max_age=int(self.cfg.session_hours * 3600),
        )
        resp.headers.update(_HEADERS)
        return resp

    def _login_page(self, request: web.Request, error: str | None, status: int) -> web.Response:
        from flowtaskd.daemon.web.pages import render  # noqa: PLC0415

        nxt = request.query.get("next", "/")
        return render("login.html", {"error": error, "next": nxt, "page": "login"}, status)

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = request.get("session")
        if session is not None:
            self.sessions.end(session.id)
        resp = _redirect("/login")
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        item = self._static / name
        if "/" in name or suffix not in _STATIC_TYPES or not item.is_file():
            raise web.HTTPNotFound()
        resp = web.Response(body=item.read_bytes(), content_type=_STATIC_TYPES[suffix])
        resp.headers["Cache-Control"] = "max-age=300"
        resp.enable_compression()
        return resp


def _redirect(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target})
