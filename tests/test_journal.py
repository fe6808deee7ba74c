"""journald's native protocol, against a real AF_UNIX datagram socket; ``message`` fields."""

from __future__ import annotations

import array
import io
import json
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from flowtaskd import logs
from flowtaskd.journal import encode_entry, stderr_is_journal
from flowtaskd.logs import GLOBAL_MASKER, configure_logging, get_logger
from flowtaskd.tasks import Task


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    yield
    logs.reset_logging()
    structlog.contextvars.clear_contextvars()
    GLOBAL_MASKER.clear()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket standing in for /run/systemd/journal/socket."""
    path = str(tmp_path / "journal.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5.0)
    yield path, sock
    sock.close()


def parse(data: bytes) -> dict[str, str]:
    """The native protocol, as journald reads it (KEY=value and the length-prefixed form)."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            fields[line.decode()] = data[nl + 9 : nl + 9 + size].decode()
            assert data[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
    return fields


def receive(sock: socket.socket) -> dict[str, str]:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if fds:  # a big entry arrives as a memfd, as sd_journal_send sends it
        fd = fds[0]
        try:
            size = os.fstat(fd).st_size
            msg = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    return parse(msg)


def test_fields_priority_and_identifier(journal: tuple[str, socket.socket]) -> None:
    path, sock = journal
    configure_logging("journald", journal_socket=path)
    log = get_logger("flowtaskd.test").bind(task="nightly", run_id="r1")
    log.warning("step_error", step="build", exit_code=2, error="make failed")
    log.info("step_done", step="build")
    log.debug("hidden")  # below the level: not sent
    log.error("exception", error="boom")
    first, second, third = receive(sock), receive(sock), receive(sock)
    assert first["PRIORITY"] == "4"
    assert first["SYSLOG_IDENTIFIER"] == "flowtaskd"
    assert first["EVENT"] == "step_error"
    assert (first["TASK"], first["RUN_ID"], first["STEP"]) == ("nightly", "r1", "build")
    assert first["EXIT_CODE"] == "2"
    assert first["MESSAGE"] == "step build failed (exit code 2): make failed"
    assert first["LOGGER"] == "flowtaskd.test"
    assert second["PRIORITY"] == "6" and second["MESSAGE"] == "step build done"
    assert third["PRIORITY"] == "3" and third["EVENT"] == "exception"


def test_multiline_values_and_big_entries(journal: tuple[str, socket.socket]) -> None:
    path, sock = journal
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    configure_logging("journald", journal_socket=path)
    log = get_logger("flowtaskd.test")
    try:
        raise RuntimeError("line one\nline two")
    except RuntimeError:
        log.exception("exception")
    entry = receive(sock)
    assert "RuntimeError: line one\nline two" in entry["EXCEPTION"]
    big = "x" * 400_000  # past the largest datagram: goes as a memfd
    log.info("bulky", blob=big)
    assert receive(sock)["BLOB"] == big


def test_secrets_are_masked_in_journal_fields(journal: tuple[str, socket.socket]) -> None:
    path, sock = journal
    GLOBAL_MASKER.add("hunter2-secret")
    configure_logging("journald", journal_socket=path)
    get_logger("x").warning("step_error", step="a", error="bad token hunter2-secret")
    entry = receive(sock)
    assert "hunter2-secret" not in json.dumps(entry)
    assert entry["MESSAGE"].endswith("bad token ***")


def test_unreachable_journal_falls_back_to_priority_prefixes(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("journald", stream=out, journal_socket=str(tmp_path / "absent.sock"))
    get_logger("x").warning("step_error", step="a", exit_code=1, error="no")
    assert out.getvalue() == "<4>step a failed (exit code 1): no\n"


def test_journal_stream_detection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: tuple[str, socket.socket]
) -> None:
    path, sock = journal
    with (tmp_path / "stderr").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert not stderr_is_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not stderr_is_journal(stream)  # another file: stderr was redirected
        monkeypatch.setenv("JOURNAL_STREAM", "junk")
        assert not stderr_is_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stderr_is_journal(stream)
        configure_logging("auto", stream=stream, journal_socket=path)  # auto picks journald
        get_logger("x").info("daemon_ready")
        assert receive(sock)["MESSAGE"] == "daemon ready"
        stream.flush()
        assert (tmp_path / "stderr").read_text() == ""


def test_encode_entry_forms() -> None:
    assert encode_entry({"A": "b"}) == b"A=b\n"
    assert encode_entry({"A": "b\nc"}) == b"A\n" + struct.pack("<Q", 3) + b"b\nc\n"


def test_json_lines_carry_a_message() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    log = get_logger("flowtaskd.test")
    log.info("step_retry", step="fetch", attempt=1, delay=2.0, task="t")
    log.info("something_new", task="backup")
    log.info("a free sentence")
    log.info("step_done", message="kept as given")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["message"] == "step fetch failed (attempt 1), retrying in 2.0s"
    assert list(lines[0])[:5] == ["timestamp", "level", "logger", "event", "message"]
    assert lines[1]["message"] == "something new (backup)"
    assert lines[2]["message"] == "a free sentence"
    assert lines[3]["message"] == "kept as given"


async def test_a_run_end_is_logged_once(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    definition = {
        "name": "once",
        "steps": [{"Command": {"command": [sys.executable, "-c", "pass"]}}],
    }
    async with Task(task=definition, log_dir=tmp_path / "logs") as t:
        await t.run()
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    ends = [e for e in events if e in ("done", "completed", "on_error", "cancelled")]
    assert ends == ["done"]
    line = next(json.loads(x) for x in out.getvalue().splitlines() if '"done"' in x)
    assert line["message"].startswith(f"run {line['run_id']} of once done in ")
