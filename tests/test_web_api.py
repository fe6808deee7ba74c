"""The HTTP API over real HTTP against a real daemon: auth, CSRF, every route, SSE."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_harness import DaemonProcess, event, short_root
from tests.web_harness import WebDaemon, web_daemon

pytestmark = pytest.mark.e2e

HELLO = """\
name: hello
schedule: "30 4 * * *"
params: {who: world}
steps:
  - Command: {name: greet, command: [sh, -c, "echo hello {who}; echo oops >&2"]}
  - Dummy: {name: after, depends: [greet]}
"""
SLOW = """\
name: slow
steps:
  - Command: {name: nap, command: [sleep, "30"]}
"""
SECRET = """\
name: secret
secrets: [password]
params: {password: hunter2-default}
steps:
  - Command: {name: leak, command: [sh, -c, "echo pw={password}"]}
"""
FAIL = """\
name: fail
steps:
  - Command: {name: boom, command: [sh, -c, "exit 3"]}
"""
QUEUE = """\
name: queue
overlap: queue
steps:
  - Command: {name: nap, command: [sleep, "30"]}
  - Dummy: {name: later, depends: [nap]}
"""
BROKEN = "name: broken\nsteps:\n  - NoSuchThing: {}\n"


@pytest.fixture(scope="module")
def wd() -> Iterator[WebDaemon]:
    tasks = {"hello.yaml": HELLO, "slow.yaml": SLOW, "secret.yaml": SECRET, "fail.yaml": FAIL}
    tasks["broken.yaml"] = BROKEN
    tasks["queue.yaml"] = QUEUE
    with web_daemon(tasks) as d:
        yield d


def _wait_run(wd: WebDaemon, run_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = wd.api("GET", f"/runs/{run_id}").json()
        if body["run"]["status"] not in ("queued", "pending", "running"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


# -- auth ---------------------------------------------------------------------------------
def test_every_request_needs_a_token(wd: WebDaemon) -> None:
    for path in ("/api/v1/status", "/api/v1/tasks", "/api/v1/runs", "/api/v1/openapi.json"):
        r = httpx.get(wd.base + path)
        assert r.status_code == 401, path
        assert set(r.json()) == {"error", "detail"}
    r = httpx.get(wd.base + "/api/v1/status", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = httpx.post(wd.base + "/api/v1/tasks/hello/runs", headers={"Authorization": "Basic x"})
    assert r.status_code == 401
    page = httpx.get(wd.base + "/tasks")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_the_token_file_is_private_and_status_reports_the_server(wd: WebDaemon) -> None:
    mode = stat.S_IMODE(os.stat(wd.proc.state / "web-token").st_mode)
    assert mode == 0o600
    printed = [line for line in wd.proc.raw if "/login?token=" in line]
    assert len(printed) == 1 and wd.token in printed[0]
    assert not any(wd.token in json.dumps(line) for line in wd.proc.logs)  # never in a log line
    web = wd.api("GET", "/status").json()["web"]
    assert web["enabled"] and web["error"] is None and web["url"] == wd.base


def test_browser_login_gives_a_strict_cookie_and_posts_need_csrf(wd: WebDaemon) -> None:
    with httpx.Client(base_url=wd.base, timeout=20) as browser:
        bad = browser.post("/login", data={"token": "wrong"})
        assert bad.status_code == 401 and "not valid" in bad.text
        r = browser.get("/login", params={"token": wd.token, "next": "/tasks"})
        assert r.status_code == 303 and r.headers["location"] == "/tasks"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        page = browser.get("/tasks/hello")
        assert page.status_code == 200
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert csrf is not None
        assert browser.get("/api/v1/status").status_code == 200  # reads need no CSRF token
        refused = browser.post("/api/v1/tasks/hello/runs", json={})
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        wrong = browser.post("/api/v1/tasks/hello/runs", json={}, headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        ok = browser.post(
            "/api/v1/tasks/hello/runs", json={}, headers={"X-CSRF-Token": csrf.group(1)}
        )
        assert ok.status_code == 202, ok.text
        _wait_run(wd, ok.json()["run_id"])
        out = browser.post("/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
        assert browser.get("/api/v1/status").status_code == 401


def test_failed_logins_are_rate_limited() -> None:
    with web_daemon({"hello.yaml": HELLO}, login_failures=3) as wd:
        for _ in range(3):
            r = httpx.get(wd.base + "/api/v1/status", headers={"Authorization": "Bearer bad"})
            assert r.status_code == 401
        blocked = httpx.get(wd.base + "/api/v1/status", headers={"Authorization": "Bearer bad"})
        assert blocked.status_code == 429
        assert blocked.json()["detail"]["retry_after"] > 0
        # the right token does not help within the minute, from that client
        assert wd.api("GET", "/status").status_code == 429
        form = httpx.post(wd.base + "/login", data={"token": wd.token})
        assert form.status_code == 429 and "Retry-After" in form.headers


def test_extra_tokens_from_config(tmp_path: Path) -> None:
    import hashlib  # noqa: PLC0415

    extra = tmp_path / "ci-token"
    extra.write_text("ci-token-value-123\n")
    digest = hashlib.sha256(b"hashed-token-456").hexdigest()
    with web_daemon({"hello.yaml": HELLO}, tokens=[{"file": str(extra)}, {"sha256": digest}]) as wd:
        for token in ("ci-token-value-123", "hashed-token-456", wd.token):
            r = httpx.get(wd.base + "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, token


# -- operations -----------------------------------------------------------------------------
def test_tasks_and_task(wd: WebDaemon) -> None:
    body = wd.api("GET", "/tasks").json()
    names = [t["name"] for t in body["tasks"]]
    assert names == ["fail", "hello", "queue", "secret", "slow"]
    hello = next(t for t in body["tasks"] if t["name"] == "hello")
    assert hello["schedule_words"] == ["every day at 04:30"]
    assert hello["next_fire"].endswith("04:30:00+00:00")
    [broken] = body["invalid"]
    assert broken["lines"][0].startswith(f"{broken['file']}:3: steps[0]: unknown component")
    detail = wd.api("GET", "/tasks/hello").json()
    assert [s["id"] for s in detail["steps"]] == ["greet", "after"]
    assert detail["steps"][1]["upstream"] == ["greet"]
    assert detail["params"] == {"who": "world"}
    secret = wd.api("GET", "/tasks/secret").json()
    assert secret["params"] == {"password": "***"}
    missing = wd.api("GET", "/tasks/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_trigger_wait_runs_detail_and_logs(wd: WebDaemon) -> None:
    body = {"params": {"who": "web"}}
    r = wd.api("POST", "/tasks/hello/runs", params={"wait": "true"}, json=body)
    assert r.status_code == 200, r.text
    ended = r.json()
    assert ended["status"] == "done" and ended["task"] == "hello"
    run_id = ended["run_id"]
    detail = wd.api("GET", f"/runs/{run_id[:12]}").json()  # a unique prefix will do
    assert detail["run"]["run_id"] == run_id and not detail["live"]
    assert detail["run"]["params"] == {"who": "web"}
    assert detail["steps"]["greet"]["exit_code"] == 0
    assert detail["steps"]["greet"]["tries"][0]["max_rss_kb"] > 0
    assert detail["steps"]["after"]["status"] == "done"
    log = wd.api("GET", f"/runs/{run_id}/steps/greet/log")
    assert log.status_code == 200 and log.text == "hello web\n"
    assert log.headers["content-type"].startswith("text/plain")
    err = wd.api("GET", f"/runs/{run_id}/steps/greet/log", params={"stream": "stderr"})
    assert err.text == "oops\n"
    assert wd.api("GET", f"/runs/{run_id}/steps/nope/log").status_code == 404
    assert wd.api("GET", f"/runs/{run_id}/steps/greet/log", params={"stream": "x"}).json()[
        "detail"
    ] == {"field": "stream"}
    assert wd.api("GET", "/runs/ffffffffffff").status_code == 404


def test_runs_are_filtered_and_paginated(wd: WebDaemon) -> None:
    ids = [wd.api("POST", "/tasks/fail/runs", params={"wait": "true"}).json() for _ in range(3)]
    assert {r["status"] for r in ids} == {"failed"}
    page = wd.api("GET", "/runs", params={"task": "fail", "limit": 2}).json()
    assert page["total"] == 3 and len(page["runs"]) == 2 and page["next_offset"] == 2
    assert [r["run_id"] for r in page["runs"]] == [ids[2]["run_id"], ids[1]["run_id"]]
    rest = wd.api("GET", "/runs", params={"task": "fail", "limit": 2, "offset": 2}).json()
    assert [r["run_id"] for r in rest["runs"]] == [ids[0]["run_id"]]
    assert rest["next_offset"] is None
    failed = wd.api("GET", "/runs", params={"status": "failed", "trigger": "manual"}).json()
    assert {r["task"] for r in failed["runs"]} == {"fail"}
    future = wd.api("GET", "/runs", params={"since": "2999-01-01T00:00:00+00:00"}).json()
    assert future["runs"] == [] and future["total"] == 0
    for bad in ({"limit": "0"}, {"status": "weird"}, {"since": "yesterday"}):
        r = wd.api("GET", "/runs", params=bad)
        assert r.status_code == 400 and r.json()["detail"]["field"] == next(iter(bad))


def test_bad_trigger_bodies_are_400(wd: WebDaemon) -> None:
    r = wd.api("POST", "/tasks/hello/runs", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = wd.api("POST", "/tasks/hello/runs", json={"params": [1]})
    assert r.status_code == 400 and "params" in r.json()["error"]
    r = wd.api("POST", "/tasks/hello/runs", json={"parms": {}})
    assert r.status_code == 400 and r.json()["detail"] == {"field": "parms"}
    assert wd.api("POST", "/tasks/nope/runs").status_code == 404


def test_overlap_is_409_and_cancel(wd: WebDaemon) -> None:
    first = wd.api("POST", "/tasks/slow/runs")
    assert first.status_code == 202
    run_id = first.json()["run_id"]
    assert first.headers["location"] == f"/api/v1/runs/{run_id}"
    again = wd.api("POST", "/tasks/slow/runs")
    assert again.status_code == 409 and "overlap" in again.json()["error"]
    deadline = time.monotonic() + 10
    while wd.api("GET", f"/runs/{run_id}").json()["run"]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert wd.api("GET", f"/runs/{run_id}").json()["live"] is True
    cancel = wd.api("POST", f"/runs/{run_id}/cancel")
    assert cancel.status_code == 200 and cancel.json() == {"run_id": run_id, "was": "running"}
    assert _wait_run(wd, run_id)["run"]["status"] == "cancelled"
    late = wd.api("POST", f"/runs/{run_id}/cancel")
    assert late.status_code == 409 and "already ended" in late.json()["error"]
    assert wd.api("POST", "/runs/ffffffffff/cancel").status_code == 404


def test_retry_pause_and_backfill_are_the_control_socket_s(wd: WebDaemon) -> None:
    failed = wd.api("POST", "/tasks/fail/runs?wait=true").json()
    assert failed["status"] == "failed"
    retry = wd.api("POST", f"/runs/{failed['run_id']}/retry", json={"wait": True})
    assert retry.status_code == 200, retry.text
    again = retry.json()
    assert again["run_id"] != failed["run_id"] and again["status"] == "failed"
    assert wd.api("POST", "/runs/ffffffffff/retry").status_code == 404

    assert wd.api("POST", "/tasks/hello/pause").status_code == 200
    assert wd.api("GET", "/tasks/hello").json()["paused"] is True
    assert wd.api("POST", "/tasks/hello/unpause").status_code == 200
    assert wd.api("GET", "/tasks/hello").json()["paused"] is False

    window = {"from": "2026-01-01", "to": "2026-01-03", "dry_run": True}
    plan = wd.api("POST", "/tasks/hello/backfill", json=window)
    assert plan.status_code == 200, plan.text
    assert len(plan.json()["times"]) == 3
    bad = wd.api("POST", "/tasks/hello/backfill", json={**window, "to": "2025-01-01"})
    assert bad.status_code == 400 and "from" in bad.json()["error"]


def test_secrets_are_masked_in_every_response(wd: WebDaemon) -> None:
    ended = wd.api(
        "POST", "/tasks/secret/runs?wait=true", json={"params": {"password": "s3cr3t-web-77"}}
    ).json()
    assert ended["status"] == "done"
    texts = [
        wd.api("GET", f"/runs/{ended['run_id']}").text,
        wd.api("GET", "/runs").text,
        wd.api("GET", f"/runs/{ended['run_id']}/steps/leak/log").text,
        wd.api("GET", "/tasks/secret").text,
    ]
    for text in texts:
        assert "s3cr3t-web-77" not in text and "hunter2-default" not in text
    assert wd.api("GET", f"/runs/{ended['run_id']}/steps/leak/log").text == "pw=***\n"
    [row] = [r for r in wd.proc.runs("secret") if r.run_id == ended["run_id"]]
    assert row.params == {"password": "***"}  # the history row itself, before any masking


def test_reload_and_openapi(wd: WebDaemon) -> None:
    assert wd.api("POST", "/reload").json()["tasks"] == 5
    spec = wd.api("GET", "/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    for path in ("/tasks/{name}/runs", "/runs", "/runs/{run_id}/steps/{step}/log", "/events"):
        assert path in spec["paths"]
    assert "TriggerBody" in spec["components"]["schemas"]
    docs = wd.client.get("/docs")
    assert docs.status_code == 200 and "/api/v1/runs/{run_id}/cancel" in docs.text


def test_replies_have_the_shapes_the_openapi_document_describes(wd: WebDaemon) -> None:
    from flowtaskd.daemon.web import openapi  # noqa: PLC0415 - pydantic, for this test only

    ended = wd.api("POST", "/tasks/hello/runs", params={"wait": "true"}).json()
    schemas = wd.api("GET", "/openapi.json").json()["components"]["schemas"]
    for model, reply in (
        (openapi.Triggered, ended),
        (openapi.TaskList, wd.api("GET", "/tasks").json()),
        (openapi.TaskDetail, wd.api("GET", "/tasks/hello").json()),
        (openapi.RunPage, wd.api("GET", "/runs", params={"limit": 2}).json()),
        (openapi.RunDetail, wd.api("GET", f"/runs/{ended['run_id']}").json()),
        (openapi.Error, wd.api("GET", "/runs/ffffffffffff").json()),
    ):
        model.model_validate(reply)  # the document's models are the replies' shapes
        assert model.__name__ in schemas
        assert set(model.model_fields) <= set(reply), (model.__name__, set(reply))


# -- events ---------------------------------------------------------------------------------
def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    ev: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "event" in ev:
                yield ev
            ev = {}
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(": ")
            ev[key] = value


def test_events_stream_and_resume(wd: WebDaemon) -> None:
    seen: list[dict[str, Any]] = []
    params = {"task": "hello", "events": "step_done,completed"}
    with wd.client.stream("GET", "/api/v1/events", params=params) as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        events = _sse(resp.iter_lines())
        assert next(events)["event"] == "hello"
        run_id = wd.api("POST", "/tasks/hello/runs").json()["run_id"]
        for ev in events:
            seen.append(ev)
            if ev["event"] == "completed":
                break
    payloads = [json.loads(e["data"]) for e in seen]
    assert [p["event"] for p in payloads] == ["step_done", "step_done", "completed"]
    assert {p["run_id"] for p in payloads} == {run_id}
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(ids)
    # a client that saw only the first event gets the other two on reconnecting
    headers = {"Last-Event-ID": str(ids[0])}
    with wd.client.stream("GET", "/api/v1/events", params=params, headers=headers) as resp:
        events = _sse(resp.iter_lines())
        assert next(events)["event"] == "hello"
        resumed = [next(events), next(events)]
    assert [int(e["id"]) for e in resumed] == ids[1:]
    bad = wd.api("GET", "/events", params={"events": "step_dune"})
    assert bad.status_code == 400 and "step_done" in bad.json()["error"]


# -- the port -------------------------------------------------------------------------------
def test_a_taken_port_leaves_the_daemon_running_and_is_retried() -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    with short_root() as root:
        proc = DaemonProcess(Path(root), web={"listen": f"127.0.0.1:{port}"})
        proc.put_task("hello.yaml", HELLO)
        try:
            proc.start()
            failed = proc.wait_log(event("web_bind_failed"), 20)
            assert failed["level"] == "error" and str(port) in failed["error"]
            done = proc.cli("trigger", "hello", "--wait")  # tasks still run
            assert done.returncode == 0, done.stderr
            status = json.loads(proc.cli("status", "--json").stdout)
            assert "cannot listen" in status["web"]["error"]
            holder.close()
            line = proc.wait_log(event("web_listening"), 20)
            assert line["port"] == port
            token = (proc.state / "web-token").read_text().strip()
            r = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/status",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200 and r.json()["web"]["error"] is None
            assert proc.stop() == 0
        finally:
            holder.close()
            proc.close()


def test_web_false_serves_nothing_and_imports_nothing() -> None:
    with short_root() as root:
        proc = DaemonProcess(Path(root))
        try:
            proc.start()
            status = json.loads(proc.cli("status", "--json").stdout)
            assert status["web"] == {"enabled": False}
            assert not (proc.state / "web-token").exists()
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            assert "aiohttp" not in maps  # its C extensions are not loaded
        finally:
            proc.close()


def test_a_queued_run_has_a_page_and_can_be_cancelled(wd: WebDaemon) -> None:
    first = wd.api("POST", "/tasks/queue/runs").json()["run_id"]
    second = wd.api("POST", "/tasks/queue/runs").json()["run_id"]
    body = wd.api("GET", f"/runs/{second}").json()
    assert body["run"]["status"] == "queued" and body["run"]["started_at"] is None
    page = wd.client.get(f"/runs/{second}")  # a page, with the bearer token
    assert page.status_code == 200 and "queued" in page.text
    deadline = time.monotonic() + 10
    while "nap" not in wd.api("GET", f"/runs/{first}").json()["steps"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    going = wd.client.get(f"/runs/{first}")  # a step that has not started has a row too
    assert going.status_code == 200 and 'data-step="later" data-state="pending"' in going.text
    assert wd.api("POST", f"/runs/{second}/cancel").json()["was"] == "queued"
    assert wd.api("POST", f"/runs/{first}/cancel").json()["was"] == "running"
    assert _wait_run(wd, first)["run"]["status"] == "cancelled"
