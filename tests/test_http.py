"""HTTPClient and RESTClient against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.components.registry import registry
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.core.schema import validate_definition
from flowtaskd.engine.events import EventBus
from flowtaskd.tasks import Task
from tests.conftest import FakeClock, wait_for

BIG = 3 * (1 << 20) + 17


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: dict[str, int] = {}
    seen: list[dict[str, Any]] = []
    slow_started = threading.Event()
    hang_started = threading.Event()
    hang_release = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self, code: int, body: bytes, ctype: str = "application/json", **headers: str
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.seen.append({"path": self.path, "headers": dict(self.headers)})
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/json":
            self._send(200, json.dumps({"data": {"items": [{"id": 1}, {"id": 2}]}}).encode())
        elif path == "/text":
            self._send(200, b"hello world", "text/plain; charset=utf-8")
        elif path == "/fail":
            self._send(500, b"boom: database down", "text/plain")
        elif path == "/busy":
            if self.hits[path] == 1:
                self._send(429, b"slow down", "text/plain", Retry_After="7")
            else:
                self._send(200, b'{"ok": true}')
        elif path == "/basic":
            want = "Basic " + base64.b64encode(b"ann:s3cret-pw").decode()
            ok = self.headers.get("Authorization") == want
            self._send(200 if ok else 401, b'{"auth": "ok"}' if ok else b"no")
        elif path == "/bearer":
            ok = self.headers.get("Authorization") == "Bearer tok-98765"
            self._send(200 if ok else 401, b"{}")
        elif path == "/redirect":
            self._send(302, b"", Location="/text")
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.send_header("Content-Disposition", 'attachment; filename="../../report.bin"')
            self.end_headers()
            chunk = b"x" * 65536
            left = BIG
            while left:
                n = min(left, len(chunk))
                self.wfile.write(chunk[:n])
                left -= n
        elif path == "/hang":  # the request is read; no answer comes
            self.hang_started.set()
            self.hang_release.wait(30)
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 20))
            self.end_headers()
            self.wfile.write(b"y" * 65536)
            self.wfile.flush()
            self.slow_started.set()
            try:
                for _ in range(200):
                    time.sleep(0.05)
                    self.wfile.write(b"y" * 1024)
            except OSError:
                pass
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self._send(
            201, json.dumps({"got": body.decode(), "ctype": self.headers["Content-Type"]}).encode()
        )


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = {}
    _Handler.seen = []
    _Handler.slow_started = threading.Event()
    _Handler.hang_started = threading.Event()
    _Handler.hang_release = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Handler.hang_release.set()
        httpd.shutdown()
        httpd.server_close()


async def run(steps: list[dict[str, Any]], tmp_path: Path, **header: Any) -> Any:
    task = {"name": "http", "steps": steps, **header}
    async with Task(task=task, log_dir=tmp_path / "logs", **header.pop("_kw", {})) as t:
        return await t.run()


def step(stats: Any, sid: str) -> Any:
    return stats.steps[sid]


async def test_rest_client_gives_json_and_data_key(server: str, tmp_path: Path) -> None:
    stats = await run(
        [{"RESTClient": {"url": f"{server}/json", "data_key": "data.items.1"}}], tmp_path
    )
    assert stats.status is TaskStatus.DONE
    assert json.loads(step(stats, "RESTClient_1").output) == {"id": 2}
    assert _Handler.seen[0]["headers"]["Accept"] == "application/json"


async def test_http_client_text_query_and_redirect(server: str, tmp_path: Path) -> None:
    stats = await run(
        [
            {"HTTPClient": {"url": f"{server}/text", "query": {"day": "{today:%Y}", "n": 3}}},
            {"HTTPClient": {"url": f"{server}/redirect"}},
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE
    assert step(stats, "HTTPClient_1").output == "hello world"
    assert step(stats, "HTTPClient_2").output == "hello world"
    assert "n=3" in _Handler.seen[0]["path"] and "day=20" in _Handler.seen[0]["path"]


async def test_post_json_and_form(server: str, tmp_path: Path) -> None:
    stats = await run(
        [
            {"RESTClient": {"url": f"{server}/in", "method": "post", "json": {"a": [1, 2]}}},
            {"RESTClient": {"url": f"{server}/in", "method": "POST", "data": {"k": "v w"}}},
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE
    one = json.loads(step(stats, "RESTClient_1").output)
    assert json.loads(one["got"]) == {"a": [1, 2]} and one["ctype"] == "application/json"
    two = json.loads(step(stats, "RESTClient_2").output)
    assert two == {"got": "k=v+w", "ctype": "application/x-www-form-urlencoded"}


async def test_error_status_fails_unless_listed(server: str, tmp_path: Path) -> None:
    stats = await run([{"HTTPClient": {"url": f"{server}/fail"}}], tmp_path)
    s = step(stats, "HTTPClient_1")
    assert s.status is StepStatus.FAILED
    assert s.error.startswith("HTTP 500") and "database down" in s.error
    stats = await run(
        [{"HTTPClient": {"url": f"{server}/fail", "no_errors": {"500": {}}}}], tmp_path
    )
    assert stats.status is TaskStatus.DONE


async def test_retry_after_feeds_the_retry_policy(server: str, tmp_path: Path) -> None:
    clock = FakeClock()
    task = {
        "name": "busy",
        "steps": [{"RESTClient": {"url": f"{server}/busy", "retry": {"attempts": 3, "delay": 1}}}],
    }
    async with Task(task=task, log_dir=tmp_path / "logs", clock=clock) as t:
        stats = await t.run()
    assert stats.status is TaskStatus.DONE
    assert clock.sleeps == [7.0]  # the server's Retry-After, not the policy's 1s
    assert _Handler.hits["/busy"] == 2


async def test_basic_and_bearer_from_secrets(server: str, tmp_path: Path) -> None:
    task = {
        "name": "auth",
        "secrets": ["API_PW", "token"],
        "params": {"token": "tok-98765"},
        "steps": [
            {
                "RESTClient": {
                    "url": f"{server}/basic",
                    "auth_type": "basic",
                    "credentials": {"username": "ann", "password": "API_PW"},
                }
            },
            {
                "RESTClient": {
                    "url": f"{server}/bearer",
                    "auth_type": "bearer",
                    "credentials": {"token": "{token}"},
                }
            },
        ],
    }
    env = {"API_PW": "s3cret-pw", "PATH": "/usr/bin:/bin"}
    bus = EventBus()
    events: list[Any] = []
    bus.connect("*", events.append)
    async with bus, Task(task=task, log_dir=tmp_path / "l", base_env=env, events=bus) as t:
        stats = await t.run()
    assert stats.status is TaskStatus.DONE, stats.to_dict()
    blob = json.dumps(stats.to_dict()) + json.dumps(events, default=str)
    assert "s3cret-pw" not in blob and "tok-98765" not in blob


async def test_literal_password_is_refused_unless_allowed(server: str, tmp_path: Path) -> None:
    creds = {"username": "ann", "password": "s3cret-pw"}
    base = {"url": f"{server}/basic", "auth_type": "basic", "credentials": creds}
    stats = await run([{"RESTClient": base}], tmp_path)
    s = step(stats, "RESTClient_1")
    assert s.status is StepStatus.FAILED
    assert "secrets" in s.error and "allow_plaintext_credentials" in s.error
    assert "s3cret-pw" not in s.error
    assert _Handler.seen == []  # nothing was sent
    stats = await run([{"RESTClient": {**base, "allow_plaintext_credentials": True}}], tmp_path)
    assert stats.status is TaskStatus.DONE


async def test_download_streams_to_file_with_safe_name(server: str, tmp_path: Path) -> None:
    out = tmp_path / "dl"
    stats = await run(
        [
            {
                "HTTPClient": {
                    "url": f"{server}/big",
                    "download": True,
                    "destination": {"directory": str(out)},
                }
            }
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE
    saved = Path(step(stats, "HTTPClient_1").output)
    assert saved == out / "report.bin"  # the server's "../../" is dropped
    assert saved.stat().st_size == BIG
    assert [p.name for p in out.iterdir()] == ["report.bin"]


async def test_download_with_mask_in_name_and_no_overwrite(server: str, tmp_path: Path) -> None:
    dest = {"directory": str(tmp_path), "filename": "t-{today:%Y}.txt", "overwrite": False}
    params = {"url": f"{server}/text", "download": True, "destination": dest}
    stats = await run([{"HTTPClient": params}], tmp_path)
    saved = Path(step(stats, "HTTPClient_1").output)
    assert saved.name.startswith("t-20") and saved.read_text() == "hello world"
    stats = await run([{"HTTPClient": params}], tmp_path)
    assert "destination exists" in step(stats, "HTTPClient_1").error


async def test_timeout_stops_download_and_removes_part(server: str, tmp_path: Path) -> None:
    dest = {"directory": str(tmp_path / "dl"), "filename": "slow.bin"}
    stats = await run(
        [
            {
                "HTTPClient": {
                    "url": f"{server}/slow",
                    "download": True,
                    "destination": dest,
                    "timeout": 0.5,
                }
            }
        ],
        tmp_path,
    )
    s = step(stats, "HTTPClient_1")
    assert s.status is StepStatus.TIMED_OUT
    assert list((tmp_path / "dl").iterdir()) == []  # no slow.bin, no slow.bin.part


async def test_cancel_stops_download_and_removes_part(server: str, tmp_path: Path) -> None:
    import asyncio  # noqa: PLC0415

    dest = {"directory": str(tmp_path / "dl"), "filename": "slow.bin"}
    task = {
        "name": "c",
        "steps": [{"HTTPClient": {"url": f"{server}/slow", "download": True, "destination": dest}}],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        running = asyncio.ensure_future(t.run())
        await wait_for((tmp_path / "dl" / "slow.bin.part").exists)
        t.cancel()
        stats = await running
    assert stats.status is TaskStatus.CANCELLED
    assert list((tmp_path / "dl").iterdir()) == []


def http_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flowtaskd-http"]


async def test_cancel_while_waiting_for_the_answer_ends_the_exchange(
    server: str, tmp_path: Path
) -> None:
    """The exchange runs in a thread of its own: cancelling shuts its socket down, so the
    thread does not stay blocked on a server that never answers."""
    import asyncio  # noqa: PLC0415

    task = {"name": "c", "steps": [{"HTTPClient": {"url": f"{server}/hang"}}]}
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        running = asyncio.ensure_future(t.run())
        await wait_for(_Handler.hang_started.is_set)
        assert http_threads()
        t.cancel()
        stats = await running
        assert stats.status is TaskStatus.CANCELLED
        await wait_for(lambda: not http_threads(), timeout=5, what="the exchange's thread ends")
    assert not _Handler.hang_release.is_set()  # the server never answered


async def test_exchanges_run_beside_each_other(server: str, tmp_path: Path) -> None:
    """Four downloads at once, each exchange in its own thread, each file whole."""
    steps: list[dict[str, Any]] = []
    for n in range(4):
        dest = {"directory": str(tmp_path / "dl"), "filename": f"big{n}.bin"}
        steps.append(
            {
                "HTTPClient": {
                    "name": f"d{n}",
                    "url": f"{server}/big",
                    "download": True,
                    "destination": dest,
                    "depends": [],
                }
            }
        )
    stats = await run(steps, tmp_path)
    assert stats.status is TaskStatus.DONE, [s.error for s in stats.steps.values()]
    assert sorted(p.stat().st_size for p in (tmp_path / "dl").iterdir()) == [BIG] * 4


def test_validation_names_the_bad_key() -> None:
    from flowtaskd.errors import TaskParseError  # noqa: PLC0415

    with pytest.raises(TaskParseError) as err:
        validate_definition(
            {"name": "x", "steps": [{"HTTPClient": {"url": "ftp://x", "methd": "GET"}}]},
            catalog=registry(),
        )
    text = str(err.value)
    assert "steps[0].HTTPClient.url" in text and "did you mean `method`" in text
