"""Log set-up: JSON/console rendering, stdlib routing, secret masking, reconfiguration."""

from __future__ import annotations

import io
import json
import logging
from collections import namedtuple
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from flowtaskd import logs
from flowtaskd.engine.events import EventBus
from flowtaskd.logs import GLOBAL_MASKER, SecretMasker, configure_logging, get_logger

SECRET = "s3cr3t-t0ken"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logs._FlowtaskdHandler)]


@pytest.fixture(autouse=True)
def _reset_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    root_level = root.level
    quiet = {name: logging.getLogger(name).level for name in ("watchfiles",)}
    structlog.reset_defaults()
    yield
    logs.reset_logging()  # structlog.reset_defaults() + our handlers removed
    structlog.contextvars.clear_contextvars()
    GLOBAL_MASKER.clear()
    root.setLevel(root_level)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    assert not _our_handlers()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_the_documented_shape() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    log = get_logger("flowtaskd.test")
    log.info("step_start", step="fetch", attempt=1)
    log.warning("step_retry", step="fetch")
    first, second = json_lines(out)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "step_start"
    assert first["level"] == "info"
    assert first["logger"] == "flowtaskd.test"
    assert (first["step"], first["attempt"]) == ("fetch", 1)
    assert first["timestamp"].endswith("Z")
    ts = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None and ts.utcoffset() == UTC.utcoffset(ts)
    assert second["level"] == "warning"


def test_level_filters_and_bad_arguments_raise() -> None:
    out = io.StringIO()
    configure_logging("json", level="WARNING", stream=out)
    log = get_logger("flowtaskd.test")
    log.info("quiet")
    log.debug("quieter")
    log.error("loud")
    assert [e["event"] for e in json_lines(out)] == ["loud"]
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("json", level="loud", stream=out)
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("xml", stream=out)


def test_contextvars_appear_in_lines() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    log = get_logger("flowtaskd.test")
    with structlog.contextvars.bound_contextvars(task="t", run_id="r"):
        log.info("running")
        logging.getLogger("apscheduler.executors").info("job ran")  # stdlib sees them too
    log.info("after")
    inside, stdlib_line, after = json_lines(out)
    assert (inside["task"], inside["run_id"]) == ("t", "r")
    assert (stdlib_line["task"], stdlib_line["run_id"]) == ("t", "r")
    assert "task" not in after


def test_console_on_a_tty_has_colours_and_is_not_json() -> None:
    out = FakeTTY()
    configure_logging("console", stream=out)
    get_logger("flowtaskd.test").info("daemon_ready", tasks=3)
    text = out.getvalue()
    assert "\x1b[" in text
    assert "daemon_ready" in text and "tasks" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_console_without_a_tty_has_no_colours() -> None:
    out = io.StringIO()
    configure_logging("console", stream=out)
    get_logger("flowtaskd.test").info("daemon_ready")
    assert "daemon_ready" in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_auto_format(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTTY()
    configure_logging("auto", stream=tty)
    get_logger("x").info("hello")
    assert "\x1b[" in tty.getvalue()  # console

    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # under systemd
    journal = FakeTTY()
    configure_logging("auto", stream=journal)
    get_logger("x").info("hello")
    assert json_lines(journal)[0]["event"] == "hello"

    monkeypatch.delenv("JOURNAL_STREAM")
    pipe = io.StringIO()
    configure_logging("auto", stream=pipe)
    get_logger("x").info("hello")
    assert json_lines(pipe)[0]["event"] == "hello"


def test_stdlib_records_are_rendered_through_the_same_chain() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    logging.getLogger("apscheduler.scheduler").info("Added job %r", "nightly", extra={"job": "j1"})
    logging.getLogger("asyncio").warning("slow callback")
    logging.getLogger("watchfiles.main").info("1 change detected")  # chatty: suppressed
    logging.getLogger("watchfiles.main").warning("watch failed")
    lines = json_lines(out)
    assert [(e["logger"], e["event"]) for e in lines] == [
        ("apscheduler.scheduler", "Added job 'nightly'"),
        ("asyncio", "slow callback"),
        ("watchfiles.main", "watch failed"),
    ]
    assert lines[0]["job"] == "j1"
    assert lines[0]["level"] == "info"
    assert all(e["timestamp"].endswith("Z") for e in lines)


def test_configure_twice_keeps_one_handler_and_switches_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", stream=first)
    configure_logging("json", stream=second)
    assert len(_our_handlers()) == 1
    get_logger("flowtaskd.test").info("once")
    logging.getLogger("apscheduler").info("once too")
    assert first.getvalue() == ""
    assert [e["event"] for e in json_lines(second)] == ["once", "once too"]


def test_secrets_are_masked_everywhere() -> None:
    masker = SecretMasker([SECRET])
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=masker)
    log = get_logger("flowtaskd.test").bind(url=f"https://u:{SECRET}@host/")
    with structlog.contextvars.bound_contextvars(token=SECRET):
        log.info(f"calling with {SECRET}", headers={"auth": [f"Bearer {SECRET}"]})
    log.info("object", obj=ValueError(SECRET))
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("step_error")
        logging.getLogger("apscheduler").exception("job raised")
    logging.getLogger("apscheduler").info("arg %s", SECRET, stack_info=True)
    text = out.getvalue()
    assert SECRET not in text
    first, obj, exc, stdlib_exc, stdlib_arg = json_lines(out)
    assert first["event"] == "calling with ***"
    assert first["token"] == "***"
    assert first["url"] == "https://u:***@host/"
    assert first["headers"] == {"auth": ["Bearer ***"]}
    assert obj["obj"] == "ValueError('***')"
    assert "RuntimeError: failed with ***" in exc["exception"]
    assert "RuntimeError: failed with ***" in stdlib_exc["exception"]
    assert stdlib_arg["event"] == "arg ***" and "Stack" in stdlib_arg["stack"]


def test_secrets_are_masked_on_the_console_too() -> None:
    out = FakeTTY()
    configure_logging("console", stream=out, secrets=SecretMasker([SECRET]))
    try:
        raise RuntimeError(SECRET)
    except RuntimeError:
        get_logger("x").exception("boom", token=SECRET)
    assert SECRET not in out.getvalue()
    assert "RuntimeError: ***" in out.getvalue()


def test_global_masker_is_the_default_and_read_live() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    GLOBAL_MASKER.add(SECRET)  # registered after configure, as the engine does per run
    get_logger("x").info("value", v=SECRET)
    assert json_lines(out)[0]["v"] == "***"


def test_event_bus_failures_are_logged_through_the_configured_chain() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    bus = EventBus()

    def broken(payload: dict[str, Any]) -> None:
        raise KeyError("missing")

    bus.connect("done", broken)
    bus.emit("done", {"task": "t"})
    (line,) = json_lines(out)
    assert (line["logger"], line["event"], line["level"]) == (
        "flowtaskd.engine.events",
        "receiver_failed",
        "error",
    )
    assert line["receiver"].endswith("broken") and line["task"] == "t"
    assert "KeyError: 'missing'" in line["exception"]


def test_masker_text_rules() -> None:
    m = SecretMasker()
    assert m.mask("nothing to do") == "nothing to do"
    m.add("abc")
    m.add("abcdef")  # overlapping: the longest wins
    m.add("ab")  # too short: would mangle every line
    m.add("    ")  # blank: ignored
    m.add("")
    m.add("a.b*c")  # regex characters are literal
    assert len(m) == 3
    assert m.mask("xabcdefx abc ab a.b*c axbxc") == "x***x *** ab *** axbxc"
    m.discard("abcdef")
    assert m.mask("abcdef") == "***def"
    m.clear()
    assert m.mask("abc") == "abc"


def test_mask_obj_returns_new_containers_of_the_same_kind() -> None:
    m = SecretMasker(["hunter2"])
    pair = namedtuple("pair", "a b")
    data: dict[str, Any] = {
        "list": ["hunter2", 1, None],
        "tuple": ("x hunter2",),
        "nested": {"deep": [{"k": "hunter2!"}]},
        "set": {"hunter2"},
        "pair": pair("hunter2", 2),
        "n": 5,
    }
    masked = m.mask_obj(data)
    assert masked == {
        "list": ["***", 1, None],
        "tuple": ("x ***",),
        "nested": {"deep": [{"k": "***!"}]},
        "set": {"***"},
        "pair": ("***", 2),
        "n": 5,
    }
    assert data["list"][0] == "hunter2"  # the input is untouched
    assert SecretMasker().mask_obj(data) is data  # no secrets: no copying at all


@given(
    secret=st.text(st.characters(blacklist_characters="*"), min_size=3, max_size=12),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_no_secret_survives_masking(secret: str, before: str, after: str) -> None:
    m = SecretMasker([secret])
    if not secret.strip():
        return  # blank secrets are ignored by design
    assert secret not in m.mask(before + secret + after + secret)
