"""SendEmail and SendNotify against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.engine.events import EventBus
from flowtaskd.tasks import Task
from tests.servers import free_port, need_binary, need_module

need_module("aiosmtpd", "pip install -e '.[test]'")

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword  # noqa: E402

PASSWORD = "mail-pw-4711"
EVENTS: list[Any] = []


class Inbox:
    def __init__(self) -> None:
        self.mail: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.mail.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.original_content or b""))
        )
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"ann"
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def plain_smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, inbox
    finally:
        ctl.stop()


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[int, Inbox, Path]]:
    openssl = need_binary("openssl", "apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    ctl = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_auth,
        auth_require_tls=True,
    )
    ctl.start()
    try:
        yield port, inbox, cert
    finally:
        ctl.stop()


async def run(steps: list[dict[str, Any]], tmp_path: Path, **header: Any) -> Any:
    env = header.pop("_env", None)
    bus = EventBus()
    events: list[Any] = []
    bus.connect("*", events.append)
    task = {"name": "mail", "steps": steps, **header}
    kw: dict[str, Any] = {"base_env": env} if env else {}
    async with bus, Task(task=task, log_dir=tmp_path / "logs", events=bus, **kw) as t:
        stats = await t.run()
    EVENTS[:] = events
    return stats


async def test_send_email_with_template_attachments_and_bcc(
    plain_smtp: tuple[int, Inbox], tmp_path: Path
) -> None:
    port, inbox = plain_smtp
    (tmp_path / "tpl.html").write_text("<p>Hello {{ who }}, {{ n }} rows</p>")
    (tmp_path / "r1.csv").write_text("a\n")
    (tmp_path / "r2.csv").write_text("b\n")
    step = {
        "SendEmail": {
            "credentials": {"hostname": "127.0.0.1", "port": port, "tls": "none"},
            "from": "flow@example.org",
            "to": "ann@example.org, bob@example.org",
            "cc": ["cy@example.org"],
            "bcc": "hidden@example.org",
            "subject": "Report {today:%Y}",
            "template": str(tmp_path / "tpl.html"),
            "tpl_args": {"who": "{team}", "n": 3},
            "attachments": [str(tmp_path / "r*.csv")],
        }
    }
    stats = await run([step], tmp_path, params={"team": "ops & co"})
    assert stats.status is TaskStatus.DONE, stats.steps["SendEmail_1"].error
    ((rcpts, msg),) = inbox.mail
    assert sorted(rcpts) == [
        "ann@example.org",
        "bob@example.org",
        "cy@example.org",
        "hidden@example.org",
    ]
    assert "Bcc" not in msg and msg["Subject"].startswith("Report 20")
    parts = list(msg.walk())
    html = next(p for p in parts if p.get_content_type() == "text/html")
    assert "Hello ops &amp; co, 3 rows" in html.get_payload(decode=True).decode()
    names = sorted(p.get_filename() for p in parts if p.get_filename())
    assert names == ["r1.csv", "r2.csv"]


async def test_starttls_and_auth_from_secret_env(
    tls_smtp: tuple[int, Inbox, Path], tmp_path: Path
) -> None:
    port, inbox, cert = tls_smtp
    server = {
        "host": "127.0.0.1",
        "port": port,
        "username": "ann",
        "password": "SMTP_PASSWORD",
        "cafile": str(cert),
    }
    step = {
        "SendEmail": {
            "credentials": server,
            "sender": "f@x.org",
            "to": ["t@x.org"],
            "subject": "s",
            "body": "plain body",
        }
    }
    stats = await run(
        [step],
        tmp_path,
        secrets=["SMTP_PASSWORD"],
        _env={"SMTP_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
    )
    assert stats.status is TaskStatus.DONE, stats.steps["SendEmail_1"].error
    assert inbox.mail[0][1].get_payload(decode=True).decode().strip() == "plain body"
    assert PASSWORD not in json.dumps(stats.to_dict()) + json.dumps(EVENTS, default=str)


async def test_wrong_password_fails_without_showing_it(
    tls_smtp: tuple[int, Inbox, Path], tmp_path: Path
) -> None:
    port, inbox, cert = tls_smtp
    server = {
        "host": "127.0.0.1",
        "port": port,
        "username": "ann",
        "password": "{pw}",
        "cafile": str(cert),
    }
    step = {
        "SendEmail": {
            "credentials": server,
            "sender": "f@x.org",
            "to": "t@x.org",
            "subject": "s",
            "body": "b",
        }
    }
    stats = await run([step], tmp_path, secrets=["pw"], params={"pw": "wrong-pw-123"})
    s = stats.steps["SendEmail_1"]
    assert s.status is StepStatus.FAILED and "SMTPAuthenticationError" in s.error
    assert "wrong-pw-123" not in json.dumps(stats.to_dict())
    assert inbox.mail == []


async def test_literal_password_and_missing_attachment_send_nothing(
    plain_smtp: tuple[int, Inbox], tmp_path: Path
) -> None:
    port, inbox = plain_smtp
    server = {
        "hostname": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": "ann",
        "password": "in-clear",
    }
    base = {
        "credentials": server,
        "sender": "f@x.org",
        "to": "t@x.org",
        "subject": "s",
        "body": "b",
    }
    stats = await run([{"SendEmail": base}], tmp_path)
    assert "allow_plaintext_credentials" in stats.steps["SendEmail_1"].error
    stats = await run(
        [
            {
                "SendEmail": {
                    **base,
                    "allow_plaintext_credentials": True,
                    "attachments": [str(tmp_path / "none.pdf")],
                }
            }
        ],
        tmp_path,
    )
    assert "no attachment at" in stats.steps["SendEmail_1"].error
    assert inbox.mail == []


async def test_send_notify_via_email(plain_smtp: tuple[int, Inbox], tmp_path: Path) -> None:
    port, inbox = plain_smtp
    step = {
        "SendNotify": {
            "via": "email",
            "account": {"hostname": "127.0.0.1", "port": port, "tls": "none"},
            "sender": "flow@x.org",
            "recipients": [
                {"name": "Ann", "account": {"address": "ann@x.org"}},
                {"account": {"address": "bob@x.org"}},
            ],
            "message": {"subject": "Task {task} done", "message": "run {run_id}"},
        }
    }
    stats = await run([step], tmp_path)
    assert stats.status is TaskStatus.DONE, stats.steps["SendNotify_1"].error
    ((rcpts, msg),) = inbox.mail
    assert rcpts == ["ann@x.org", "bob@x.org"]
    assert msg["To"] == "Ann <ann@x.org>, bob@x.org" and msg["Subject"] == "Task mail done"


def test_send_notify_other_channels_are_refused() -> None:
    from flowtaskd.components.registry import registry  # noqa: PLC0415
    from flowtaskd.core.schema import validate_definition  # noqa: PLC0415
    from flowtaskd.errors import TaskParseError  # noqa: PLC0415

    step = {
        "SendNotify": {
            "via": "teams",
            "account": {"host": "h"},
            "sender": "a",
            "recipients": [{"account": {"address": "x"}}],
            "message": {},
        }
    }
    with pytest.raises(TaskParseError) as err:
        validate_definition({"name": "n", "steps": [step]}, catalog=registry())
    assert "steps[0].SendNotify.via" in str(err.value)


async def test_notify_and_sendfile_event_actions_send_mail(
    plain_smtp: tuple[int, Inbox], tmp_path: Path
) -> None:
    port, inbox = plain_smtp
    (tmp_path / "report.csv").write_text("a,b\n")
    account = {"hostname": "127.0.0.1", "port": port, "tls": "none"}
    ann = [{"name": "Ann", "account": {"address": "ann@x.org"}}]
    events = {
        "done": [
            {
                "Notify": {  # upstream's form: `type` is the provider
                    "type": "email",
                    "account": account,
                    "sender": "flow@x.org",
                    "recipients": ann,
                    "message": {"subject": "Task {task}: {event}", "message": "run {run_id}"},
                }
            },
            {
                "SendFile": {
                    "credentials": account,
                    "sender": "flow@x.org",
                    "recipients": ann,
                    "directory": str(tmp_path),
                    "filename": "*.csv",
                    "message": {"subject": "the report"},
                }
            },
        ]
    }
    stats = await run([{"Dummy": {}}], tmp_path, events=events)
    assert stats.status is TaskStatus.DONE
    assert len(inbox.mail) == 2  # the Task awaits its actions at close()
    by_subject = {msg["Subject"]: (rcpts, msg) for rcpts, msg in inbox.mail}
    rcpts, note = by_subject["Task mail: done"]
    assert rcpts == ["ann@x.org"] and note.get_payload().strip().startswith("run ")
    _, sent = by_subject["the report"]
    assert [p.get_filename() for p in sent.walk() if p.get_filename()] == ["report.csv"]
