"""The web package's pure parts: DAG layout, the SSE backlog, tokens, sessions, limits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import networkx as nx
import pytest
from structlog.testing import capture_logs

from flowtaskd.daemon.config.load import ConfigError, load_config
from flowtaskd.daemon.web.auth import FailedLogins, Sessions, TokenSet, ensure_token_file
from flowtaskd.daemon.web.dag import layout, svg
from flowtaskd.daemon.web.sse import EventLog
from flowtaskd.daemon.web.views import cron_words
from flowtaskd.tasks import TaskPile
from tests.conftest import FakeClock, wait_for, write


def test_layers_follow_the_dependencies() -> None:
    pile = TaskPile(
        {
            "name": "d",
            "steps": [
                {"Dummy": {"name": "a"}},
                {"Dummy": {"name": "b", "depends": ["a"]}},
                {"Dummy": {"name": "c", "depends": ["a"]}},
                {"Dummy": {"name": "d", "depends": ["b", "c"]}},
            ],
        }
    )
    lay = layout(pile.graph)
    assert {n: p[0] for n, p in lay.positions.items()} == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert sorted(lay.edges) == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    drawn = svg(pile.graph, {"a": "done", "b": "failed"}, link="/x/{step}")
    assert drawn.count('class="node') == 4 and drawn.count('class="edge"') == 4
    assert 'data-step="a" data-state="done"' in drawn and "✓" in drawn
    assert 'data-step="d" data-state="pending"' in drawn and 'href="/x/d"' in drawn


def test_200_steps_get_distinct_places_in_a_bounded_picture() -> None:
    g = nx.DiGraph()
    for chain in range(10):  # 10 chains of 20, with cross links
        for i in range(20):
            g.add_node(f"c{chain}s{i}")
            if i:
                g.add_edge(f"c{chain}s{i - 1}", f"c{chain}s{i}")
            if chain and i % 5 == 0:
                g.add_edge(f"c{chain - 1}s{i}", f"c{chain}s{i}")
    lay = layout(g)
    assert len(set(lay.positions.values())) == 200  # no two steps share a place
    for a, b in g.edges:
        assert lay.positions[a][0] < lay.positions[b][0]  # every edge points right
    assert lay.width < 20_000 and lay.height < 2_000


def test_names_are_escaped_in_the_svg() -> None:
    g = nx.DiGraph()
    g.add_edge("<b>", 'x"y')
    drawn = svg(g)
    assert "<b>" not in drawn and "&lt;b&gt;" in drawn and "x&quot;y" in drawn


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("0 3 * * *", "every day at 03:00"),
        ("*/5 * * * *", "every 5 minutes"),
        ("15 * * * *", "every hour at :15"),
        ("30 6 * * 1", "every Monday at 06:30"),
        ("0 9 * * 1-5", "every weekday at 09:00"),
        ("@daily", "every day at 00:00"),
        ("0 0 1,15 * *", "0 0 1,15 * *"),
    ],
)
def test_cron_in_words(expr: str, words: str) -> None:
    assert cron_words(expr) == words


@contextlib.asynccontextmanager
async def _pipe() -> AsyncIterator[tuple[asyncio.WriteTransport, asyncio.StreamReader]]:
    """A real connected transport (the server's side) and a reader (the client's)."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    try:
        yield transport, reader
    finally:
        transport.abort()
        writer.close()


def _ids(data: bytes) -> list[int]:
    return [int(line[4:]) for line in data.split(b"\n") if line.startswith(b"id: ")]


async def _read_until(reader: asyncio.StreamReader, end: bytes) -> bytes:
    got = b""
    async with asyncio.timeout(10):
        while end not in got:
            got += await reader.read(65536)
    return got


async def test_the_backlog_resumes_or_says_reset() -> None:
    log = EventLog(backlog=3, flush_delay=0)
    for i in range(5):
        log({"event": "step_done", "task": "t" if i % 2 == 0 else "u", "n": i})
    assert log.last_id == 5
    async with _pipe() as (gone, gone_reader), _pipe() as (back, back_reader):
        log.attach(gone, None, None, 1, chunked=False)  # ids 2.. are partly gone
        assert b"event: reset" in await _read_until(gone_reader, b"event: reset")
        log.attach(back, None, "t", 2, chunked=False)
        resumed = await _read_until(back_reader, b"id: 5")
        assert resumed.startswith(b"event: hello") and _ids(resumed) == [3, 5]  # task t only
    assert [e["n"] for e in log.recent(2)] == [3, 4]


async def test_one_flusher_writes_every_client_its_events_in_order() -> None:
    log = EventLog(flush_delay=0.005)
    async with _pipe() as (every, every_reader), _pipe() as (picky, picky_reader):
        log.attach(every, None, None, None, chunked=True)
        log.attach(picky, frozenset({"completed"}), None, None, chunked=False)
        for i in range(300):
            log({"event": "completed" if i % 100 == 99 else "step_done", "task": "t"})
            if i % 50 == 0:
                await asyncio.sleep(0)
        got = await _read_until(every_reader, b"id: 300\n")
        body, rest = b"", got  # undo the chunked framing: size CRLF data CRLF
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            body, rest = body + rest[: int(size, 16)], rest[int(size, 16) + 2 :]
        assert body.startswith(b"event: hello") and _ids(body) == list(range(1, 301))
        picked = await _read_until(picky_reader, b"id: 300\n")
        assert _ids(picked) == [100, 200, 300]
    log({"event": "step_done", "task": "t"})  # the next flush forgets the closed clients
    await wait_for(lambda: log.clients == 0, what="the closed clients are forgotten")


async def test_a_client_that_stops_reading_is_dropped_not_waited_for() -> None:
    log = EventLog(flush_delay=0, buffer_bytes=256 * 1024)
    big = "x" * 10_000
    async with _pipe() as (slow, _), _pipe() as (fast, fast_reader):
        log.attach(slow, None, None, None, chunked=True)
        log.attach(fast, None, None, None, chunked=True)
        got = b""
        with capture_logs() as logs:
            for _ in range(200):  # 2 MB: far more than the slow client's socket holds
                log({"event": "step_done", "task": "t", "big": big})
                await asyncio.sleep(0)
                got += await fast_reader.read(1 << 20)
            await wait_for(slow.is_closing, what="the slow client's connection closed")
        assert log.dropped == 1 and log.clients == 1
        assert [e["event"] for e in logs] == ["web_event_client_dropped"]
        assert "buffer" in logs[0]["reason"]
        if b"id: 200\n" not in got:
            got += await _read_until(fast_reader, b"id: 200\n")
        assert got.count(b"event: step_done") == 200


def test_tokens_are_compared_by_digest() -> None:
    tokens = TokenSet(["abc"], [bytes.fromhex("00" * 32)])
    assert tokens.accepts("abc") and not tokens.accepts("abd") and not tokens.accepts("")
    assert len(tokens) == 2


def test_the_token_file_is_created_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    token, created = ensure_token_file(path)
    assert created and len(token) >= 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    again, created = ensure_token_file(path)
    assert (again, created) == (token, False)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sessions_expire_when_unused() -> None:
    clock = FakeClock()
    sessions = Sessions(ttl=60, clock=clock.time, most=2)
    s = sessions.new()
    clock.t += 59
    assert sessions.get(s.id) is s  # used: the hour starts again
    clock.t += 59
    assert sessions.get(s.id) is s
    clock.t += 61
    assert sessions.get(s.id) is None and len(sessions) == 0
    a, b, c = sessions.new(), sessions.new(), sessions.new()
    assert len(sessions) == 2 and sessions.get(a.id) is None and sessions.get(c.id) is c
    assert b.csrf != c.csrf


def test_failed_logins_block_for_a_minute() -> None:
    clock = FakeClock()
    limits = FailedLogins(limit=2, clock=clock.time)
    limits.failed("1.2.3.4")
    assert limits.retry_after("1.2.3.4") is None
    limits.failed("1.2.3.4")
    assert limits.retry_after("1.2.3.4") == pytest.approx(60)
    assert limits.retry_after("5.6.7.8") is None  # per client
    clock.t += 61
    assert limits.retry_after("1.2.3.4") is None


def test_web_config(tmp_path: Path) -> None:
    def load(text: str) -> object:
        return load_config(write(tmp_path / "c.yaml", text), cwd=tmp_path, environ={})

    cfg = load("{}")
    assert cfg.web.enabled and cfg.web.listen == "127.0.0.1:8470"  # type: ignore[attr-defined]
    assert cfg.web.token_file == tmp_path / "var" / "web-token"  # type: ignore[attr-defined]
    assert not load("web: false\n").web.enabled  # type: ignore[attr-defined]
    assert load("web: {listen: '[::1]:0'}\n").web.address == ("::1", 0)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as err:
        load("state_dir: s\nweb:\n  listen: 0.0.0.0:8470\n")
    assert "c.yaml:3: web.listen: '0.0.0.0:8470' is not a loopback address" in str(err.value)
    assert load("web: {listen: 0.0.0.0:8470, insecure_http: true}\n")
    with pytest.raises(ConfigError, match="tls_key"):
        load("web: {tls_cert: a.pem}\n")
    with pytest.raises(ConfigError, match=r"web\.tokens\[0\]"):
        load("web: {tokens: [{sha256: abc}]}\n")
    with pytest.raises(ConfigError, match="did you mean `listen`"):
        load("web: {listn: 127.0.0.1:1}\n")
