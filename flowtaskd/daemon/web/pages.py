"""The dashboard's pages: server-rendered Jinja templates over the API's own JSON.

Each page calls the builder its API route calls (:mod:`flowtaskd.daemon.web.views`) and
draws the result; ``static/app.js`` then keeps it live from ``/api/v1/events``. Templates
and assets are package data: nothing is built at install, nothing is fetched at run time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from flowtaskd.daemon.web.dag import ICONS, svg
from flowtaskd.daemon.web.views import add_recent, run_detail, task_detail, task_list

if TYPE_CHECKING:
    from flowtaskd.daemon.web.state import WebState

__all__ = ["add_pages", "render"]

_PAGE = 100
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("flowtaskd.daemon.web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(ts: float | str | None) -> str:
    if not isinstance(ts, int | float | str):  # None, or a key the data lacks
        return "—"
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts).timestamp()
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _secs(value: float | None) -> str:
    if not isinstance(value, int | float):  # None, or a key the data lacks
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


_env.filters.update(when=_when, secs=_secs)
_env.globals.update(icons=ICONS)


def render(name: str, ctx: Mapping[str, Any], status: int = 200) -> web.Response:
    html = _env.get_template(name).render(**ctx)
    resp = web.Response(text=html, status=status, content_type="text/html")
    if len(html) > 4096:
        resp.enable_compression()
    return resp


def gantt(steps: Mapping[str, Any], start: float | None) -> str:
    """Every attempt of every step as a bar on one time axis (SVG). Each bar carries its
    step, item, attempt, state and times (``data-*``) and the picture the server's time, so
    that the page's script redraws it the same way as step events come in."""
    bars = [
        (sid, t)
        for sid, s in steps.items()
        for t in s.get("tries") or []
        if t.get("started_at") is not None
    ]
    if not bars:
        return ""
    t0 = start or min(t["started_at"] for _, t in bars)
    now = time.time()
    end = max((t.get("finished_at") or now) for _, t in bars)
    span = max(end - t0, 1e-3)
    width, row, label = 640, 20, 170
    rows = list(dict.fromkeys(sid for sid, _ in bars))
    out = [
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{label + width + 10}"'
        f' height="{len(rows) * row + 24}" role="img" aria-label="timeline of the steps"'
        f' data-t0="{t0:.3f}" data-now="{now:.3f}">'
    ]
    for i, sid in enumerate(rows):
        out.append(f'<text x="0" y="{i * row + 14}">{escape(sid[:22])}</text>')
    for sid, t in bars:
        i = rows.index(sid)
        x = label + (t["started_at"] - t0) / span * width
        w = max(((t.get("finished_at") or now) - t["started_at"]) / span * width, 2)
        state = str(t.get("status"))
        fin = t.get("finished_at")
        item = t.get("item")
        out.append(
            f'<rect class="bar st-{escape(state)}" x="{x:.1f}" y="{i * row + 3}" width="{w:.1f}"'
            f' height="{row - 6}" data-step="{escape(sid)}" data-attempt="{t["attempt"]}"'
            f' data-item="{"" if item is None else escape(str(item))}" data-state="{escape(state)}"'
            f' data-start="{t["started_at"]:.3f}" data-end="{"" if fin is None else f"{fin:.3f}"}">'
            f"<title>{escape(sid)} attempt {t['attempt']}: {escape(state)}"
            f" ({_secs(t.get('duration'))})</title></rect>"
        )
    out.append(
        f'<text x="{label}" y="{len(rows) * row + 18}">0</text><text x="{label + width - 40}"'
        f' y="{len(rows) * row + 18}">{_secs(span)}</text></svg>'
    )
    return "".join(out)


class _Pages:
    def __init__(self, server: WebState) -> None:
        self.s = server
        self.d = server.d
        self.ops = server.ops

    def _ctx(self, request: web.Request, page: str, **more: Any) -> dict[str, Any]:
        session = request.get("session")
        return {
            "page": page,
            "csrf": session.csrf if session is not None else "",
            "last_event_id": self.s.events.last_id,  # the stream resumes from the render
            "ops": {op: self.ops.known(op) for op in ("retry", "pause", "unpause", "backfill")},
            **more,
        }

    async def home(self, request: web.Request) -> web.Response:
        return web.Response(status=303, headers={"Location": "/tasks"})

    async def tasks(self, request: web.Request) -> web.Response:
        data = await task_list(self.d, self.ops, recent=False)
        q = request.query.get("q", "").strip()
        tasks = [t for t in data["tasks"] if q.lower() in t["name"].lower()]
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        pages = max(1, -(-len(tasks) // _PAGE))
        shown = tasks[(page - 1) * _PAGE : page * _PAGE]
        await add_recent(self.d, shown)
        ctx = self._ctx(
            request,
            "tasks",
            tasks=shown,
            total=len(tasks),
            q=q,
            pageno=page,
            pages=pages,
            invalid=data["invalid"],
        )
        return render("tasks.html", ctx)

    async def task(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        t = await task_detail(self.d, self.ops, name)
        loaded = self.d.library.get(name)
        graph = svg(loaded.pile.graph) if loaded is not None else ""
        ctx = self._ctx(request, "task", task=t, graph=graph)
        return render("task.html", ctx)

    async def run(self, request: web.Request) -> web.Response:
        detail = await run_detail(self.d, request.match_info["run_id"])
        run = detail["run"]
        loaded = self.d.library.get(run["task"])
        states = {sid: str(s.get("status")) for sid, s in detail["steps"].items()}
        graph = svg(loaded.pile.graph, states) if loaded is not None else ""
        ctx = self._ctx(
            request,
            "run",
            run=run,
            steps=detail["steps"],
            live=detail["live"],
            graph=graph,
            gantt=gantt(detail["steps"], run.get("started_at")),
            now=f"{time.time():.3f}",  # the timeline's script draws on the server's clock
        )
        return render("run.html", ctx)

    async def live(self, request: web.Request) -> web.Response:
        return render("live.html", self._ctx(request, "live", recent=self.s.events.recent(50)))

    async def daemon(self, request: web.Request) -> web.Response:
        status = await self.ops.call("status")
        history = self.d.store.path
        size = history.stat().st_size if history.exists() else 0
        ctx = self._ctx(request, "daemon", status=status, history=str(history), size=size)
        return render("daemon.html", ctx)

    async def docs(self, request: web.Request) -> web.Response:
        from flowtaskd.daemon.web.openapi import spec  # noqa: PLC0415

        return render("docs.html", self._ctx(request, "docs", spec=spec()))


def add_pages(app: web.Application, server: WebState) -> None:
    p = _Pages(server)
    r = app.router
    r.add_get("/", p.home)
    r.add_get("/tasks", p.tasks)
    r.add_get("/tasks/{name}", p.task)
    r.add_get("/runs/{run_id}", p.run)
    r.add_get("/live", p.live)
    r.add_get("/daemon", p.daemon)
    r.add_get("/docs", p.docs)
