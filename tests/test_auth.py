"""flowtaskd.daemon.web.auth: the token file, token digests, sessions, failed-login limits."""

from __future__ import annotations

import stat
from pathlib import Path

from flowtaskd.daemon.web.auth import FailedLogins, Sessions, TokenSet, digest, ensure_token_file
from tests.conftest import FakeClock


def test_ensure_token_file_creates_a_private_token_once(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    token, created = ensure_token_file(path)
    assert created and len(token) >= 40
    assert path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = ensure_token_file(path)
    assert (again, created) == (token, False)


def test_ensure_token_file_makes_a_readable_file_private(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    path.write_text("  mine \n")
    path.chmod(0o644)
    assert ensure_token_file(path) == ("mine", False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_set_accepts_tokens_and_digests() -> None:
    tokens = TokenSet(["alpha", ""], [digest("beta")])
    assert len(tokens) == 2  # the empty token is not one
    assert tokens.accepts("alpha") and tokens.accepts("beta")
    assert not tokens.accepts("gamma")
    assert not tokens.accepts("")
    assert not TokenSet().accepts("alpha")


def test_sessions_expire_after_ttl_since_last_use() -> None:
    clock = FakeClock()
    s = Sessions(ttl=100, clock=clock)
    one = s.new()
    assert one.id != one.csrf and len(s) == 1
    clock.advance(90)
    assert s.get(one.id) is one  # use moves the expiry
    clock.advance(90)
    assert s.get(one.id) is one
    clock.advance(101)
    assert s.get(one.id) is None
    assert len(s) == 0
    assert s.get(None) is None and s.get("") is None


def test_sessions_end() -> None:
    s = Sessions(ttl=100, clock=FakeClock())
    one = s.new()
    s.end(one.id)
    s.end("unknown")
    assert s.get(one.id) is None


def test_sessions_at_most_drop_expired_then_least_recently_used() -> None:
    clock = FakeClock()
    s = Sessions(ttl=100, clock=clock, most=3)
    a, b, c = s.new(), s.new(), s.new()
    clock.advance(10)
    s.get(a.id)  # a is now the most recently used
    d = s.new()
    assert len(s) == 3
    assert s.get(b.id) is None  # the least recently used went
    assert all(s.get(x.id) is x for x in (a, c, d))


def test_failed_logins_block_at_limit_for_a_minute() -> None:
    clock = FakeClock()
    f = FailedLogins(limit=3, clock=clock)
    for _ in range(2):
        f.failed("10.0.0.1")
    assert f.retry_after("10.0.0.1") is None
    clock.advance(10)
    f.failed("10.0.0.1")
    assert f.retry_after("10.0.0.1") == 50.0  # until the first failure is a minute old
    assert f.retry_after("10.0.0.2") is None  # per client
    assert f.blocked_total == 1
    clock.advance(50.5)
    assert f.retry_after("10.0.0.1") is None  # the first failure left the window


def test_failed_logins_retry_after_is_at_least_a_second() -> None:
    clock = FakeClock()
    f = FailedLogins(limit=1, clock=clock)
    f.failed("c")
    clock.advance(59.9)
    assert f.retry_after("c") == 1.0


def test_failed_logins_bound_the_clients_kept() -> None:
    clock = FakeClock()
    f = FailedLogins(limit=1, clock=clock, most_clients=2)
    f.failed("a")
    f.failed("b")
    f.failed("c")  # a, the oldest client, is forgotten
    assert f.retry_after("a") is None
    assert f.retry_after("b") is not None and f.retry_after("c") is not None
