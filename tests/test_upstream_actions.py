"""``flowtaskd.engine.upstream_actions``: upstream's event actions, performed for real: log
lines, files copied and deleted, ``Notify`` / ``SendFile`` through the ``SendNotify``
component to an SMTP server (aiosmtpd) and ``TeamsMessage`` to an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any, ClassVar

import httpx
import pytest
from structlog.testing import capture_logs

from flowtaskd.components.registry import registry
from flowtaskd.engine.upstream_actions import UPSTREAM_ACTIONS, perform_upstream
from flowtaskd.errors import FlowtaskError
from tests.servers import free_port, need_module

need_module("aiosmtpd", "pip install -e '.[test]'")

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import Envelope  # noqa: E402

PAYLOAD = {"task": "nightly", "run_id": "r7", "event": "done", "status": "done"}
VALUES = {"task": "nightly", "run_id": "r7", "event": "done", "status": "done", "day": "08"}


def put(folder: Path, name: str, text: str = "x") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_actions_upstream_has() -> None:
    assert {
        "Dummy",
        "LogEvent",
        "LogError",
        "Notify",
        "SendNotify",
        "SendFile",
        "TeamsMessage",
        "FileCopy",
        "FileDelete",
    } == UPSTREAM_ACTIONS


# -- log actions ---------------------------------------------------------------------------


async def test_log_event_logs_its_message_with_placeholders_and_its_other_params() -> None:
    with capture_logs() as logs:
        await perform_upstream(
            "LogEvent",
            {"message": "run {run_id} of {task} on {day}", "use_notice": True, "tag": 1},
            PAYLOAD,
            VALUES,
        )
    assert logs == [
        {
            "event": "task_event_log",
            "message": "run r7 of nightly on 08",
            "task": "nightly",
            "run_id": "r7",
            "on": "done",
            "params": {"tag": 1},
            "log_level": "info",
        }
    ]


async def test_dummy_logs_a_default_message_and_keeps_unknown_placeholders() -> None:
    with capture_logs() as logs:
        await perform_upstream("Dummy", {}, PAYLOAD, VALUES)
        await perform_upstream("Dummy", {"message": "{nope} left"}, PAYLOAD, VALUES)
    assert [e["message"] for e in logs] == ["task nightly done", "{nope} left"]
    assert "params" not in logs[0]


async def test_log_error_is_an_error_line() -> None:
    payload = {**PAYLOAD, "event": "error", "status": "failed"}
    values = {**VALUES, "event": "error", "status": "failed"}
    with capture_logs() as logs:
        await perform_upstream("LogError", {}, payload, values)
        await perform_upstream("LogError", {"message": "{task} broke"}, payload, values)
    assert [(e["event"], e["log_level"], e["message"]) for e in logs] == [
        ("task_event_error", "error", "task nightly error: failed"),
        ("task_event_error", "error", "nightly broke"),
    ]


# -- file actions --------------------------------------------------------------------------


async def test_file_copy_copies_names_and_globs_and_warns_of_a_missing_file(tmp_path: Path) -> None:
    src = tmp_path / "out"
    put(src, "a.csv", "A")
    put(src, "b.csv", "B")
    put(src, "c.txt", "C")
    p = {
        "directory": str(src),
        "filename": ["*.csv", "gone.txt"],
        "destination": str(tmp_path / "archive/2026"),
    }
    with capture_logs() as logs:
        await perform_upstream("FileCopy", p, PAYLOAD, VALUES)
    assert sorted(f.name for f in (tmp_path / "archive/2026").iterdir()) == ["a.csv", "b.csv"]
    assert (src / "a.csv").exists()
    assert logs == [
        {"event": "action_file_missing", "file": str(src / "gone.txt"), "log_level": "warning"}
    ]


async def test_file_copy_move_and_create_destination(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", "A")
    p = {
        "directory": str(tmp_path),
        "filename": "a.csv",
        "destination": str(tmp_path / "d"),
        "move": True,
    }
    await perform_upstream("FileCopy", p, PAYLOAD, VALUES)
    assert (tmp_path / "d" / "a.csv").read_text() == "A" and not (tmp_path / "a.csv").exists()
    put(tmp_path, "b.csv")
    p = {
        "directory": str(tmp_path),
        "filename": "b.csv",
        "destination": str(tmp_path / "none"),
        "create_destination": False,
    }
    with pytest.raises(FileNotFoundError):  # the caller logs it as the action's failure
        await perform_upstream("FileCopy", p, PAYLOAD, VALUES)


async def test_file_delete_deletes_what_is_there(tmp_path: Path) -> None:
    put(tmp_path, "a.tmp")
    put(tmp_path, "b.tmp")
    put(tmp_path, "keep.csv")
    with capture_logs() as logs:
        await perform_upstream(
            "FileDelete",
            {"directory": str(tmp_path), "filename": ["*.tmp", "x.tmp"]},
            PAYLOAD,
            VALUES,
        )
    assert [f.name for f in tmp_path.iterdir()] == ["keep.csv"]
    assert [e["file"] for e in logs] == [str(tmp_path / "x.tmp")]


# -- Notify / SendFile through SendNotify ------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.mail: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.mail.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.original_content or b""))
        )
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, inbox
    finally:
        ctl.stop()


def notify(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "email",  # upstream's name for `via`
        "account": {"hostname": "127.0.0.1", "port": port, "tls": "none"},
        "sender": "flow@x.org",
        "recipients": [{"name": "Ann", "account": {"address": "ann@x.org"}}],
        "message": {"subject": "{task} {event}", "message": "run {run_id}"},
        **extra,
    }


async def test_notify_sends_through_the_send_notify_component(smtp: tuple[int, Inbox]) -> None:
    port, inbox = smtp
    await perform_upstream("Notify", notify(port), PAYLOAD, VALUES)
    ((rcpts, msg),) = inbox.mail
    assert rcpts == ["ann@x.org"] and msg["Subject"] == "nightly done"
    assert msg.get_payload(decode=True).decode().strip() == "run r7"  # type: ignore[union-attr]


async def test_send_file_attaches_directory_and_filename(
    smtp: tuple[int, Inbox], tmp_path: Path
) -> None:
    port, inbox = smtp
    put(tmp_path, "r1.csv", "1")
    put(tmp_path, "r2.csv", "2")
    p = notify(port, directory=str(tmp_path), filename="r*.csv")
    p["credentials"] = p.pop("account")  # upstream's SendFile names the server so
    await perform_upstream("SendFile", p, PAYLOAD, VALUES)
    ((_, msg),) = inbox.mail
    assert [part.get_filename() for part in msg.walk() if part.get_filename()] == [
        "r1.csv",
        "r2.csv",
    ]


async def test_upstreams_type_is_send_notifys_via(smtp: tuple[int, Inbox]) -> None:
    port, inbox = smtp
    with pytest.raises(FlowtaskError, match=r"(?s)do not fit SendNotify: .*\nvia\n"):
        await perform_upstream("Notify", notify(port, type="sms"), PAYLOAD, VALUES)
    assert inbox.mail == []


async def test_notify_whose_params_do_not_fit_send_notify() -> None:
    with pytest.raises(FlowtaskError, match=r"^action Notify: parameters do not fit SendNotify: "):
        await perform_upstream("Notify", {"type": "email", "recipients": []}, PAYLOAD, VALUES)


async def test_notify_that_cannot_send_raises_the_components_error() -> None:
    port = free_port()  # no server
    with pytest.raises(FlowtaskError, match=r"^action SendNotify: .*(refused|Errno 111)"):
        await perform_upstream("SendNotify", notify(port), PAYLOAD, VALUES)


async def test_notify_without_the_send_notify_component() -> None:
    shipped = registry().pop("SendNotify")
    try:
        with pytest.raises(FlowtaskError, match=r"^action SendFile needs the SendNotify component"):
            await perform_upstream("SendFile", notify(1), PAYLOAD, VALUES)
    finally:
        registry()["SendNotify"] = shipped


# -- TeamsMessage --------------------------------------------------------------------------


class Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[Any]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        Hook.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(Hook.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.got, Hook.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/teams"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_teams_message_posts_a_message_card(hook: str) -> None:
    await perform_upstream(
        "TeamsMessage", {"webhook": hook, "title": "Nightly {day}"}, PAYLOAD, VALUES
    )
    assert Hook.got == [
        {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": "Task Summary: nightly",
            "title": "\u2705 Nightly 08",
            "text": "Task nightly: done",
            "themeColor": "2EB886",
        }
    ]


async def test_teams_message_of_a_failure_with_stats(hook: str) -> None:
    stats = {"steps": {"fetch": {"status": "done"}, "load": {"status": "failed"}}}
    payload = {**PAYLOAD, "event": "error", "status": "failed", "stats": stats}
    await perform_upstream(
        "TeamsMessage",
        {"webhook": hook, "text": "{task} failed", "with_stats": True},
        payload,
        VALUES,
    )
    (card,) = Hook.got
    assert card["title"] == "\U0001f6d1 Task Info:" and card["themeColor"] == "D00000"
    assert card["text"] == "nightly failed"
    assert card["sections"] == [
        {"facts": [{"name": "fetch", "value": "done"}, {"name": "load", "value": "failed"}]}
    ]


async def test_teams_message_refused_by_the_server_raises(hook: str) -> None:
    Hook.status = 400
    with pytest.raises(httpx.HTTPStatusError, match="400"):
        await perform_upstream("TeamsMessage", {"webhook": hook}, PAYLOAD, VALUES)
