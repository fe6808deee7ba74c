"""``SendEmail`` and ``SendNotify`` (its ``via: email``): mail over SMTP.

STARTTLS (the default), implicit TLS (``tls: ssl``) or none; the password is a credential
(see :mod:`flowtaskd.components.support`). The body is text, or a Jinja2 template file
rendered with ``tpl_args`` (the ``mail`` extra); attachments are paths or globs, and a
missing one fails the step before anything is sent. :func:`send_mail` is the one sender
(for an event action too). ``smtplib`` runs in a thread; a cancel or timeout closes its
socket, so the thread returns at once.
"""

from __future__ import annotations

import contextlib
import glob
import mimetypes
import os
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AliasChoices, BeforeValidator, Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.support import importable
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    import smtplib
    from email.message import EmailMessage

    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "MailServer", "send_mail"]


class Security(StrEnum):
    STARTTLS = "starttls"
    SSL = "ssl"
    NONE = "none"


class MailServer(StrictModel):
    """Upstream's ``credentials`` / ``account`` of a mail step."""

    hostname: str = Field(validation_alias=AliasChoices("hostname", "host"))
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = Field(default=None, validation_alias=AliasChoices("username", "user"))
    password: str | None = None
    tls: Security = Security.STARTTLS
    verify_ssl: bool = True
    cafile: str | None = Field(default=None, description="CA bundle for a private server.")


def _addresses(value: Any) -> Any:
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    return value


Addresses = Annotated[
    list[str], BeforeValidator(_addresses, json_schema_input_type=str | list[str])
]


def _needs_jinja(template: str | None) -> None:
    if template and not importable("jinja2"):
        raise ValueError(
            "a template needs jinja2, which is not installed: pip install 'flowtaskd[mail]'"
        )


class SendEmailParams(StrictModel):
    credentials: MailServer = Field(validation_alias=AliasChoices("credentials", "account"))
    sender: str = Field(
        validation_alias=AliasChoices("sender", "from"), description="The From address."
    )
    to: Addresses
    cc: Addresses = Field(default_factory=list)
    bcc: Addresses = Field(default_factory=list)
    subject: str
    body: str | None = None
    html: bool = Field(default=False, description="The body (or template) is HTML.")
    template: str | None = Field(default=None, description="A Jinja2 file rendered as the body.")
    tpl_args: dict[str, Any] = Field(default_factory=dict, description="The template's values.")
    attachments: list[str] = Field(default_factory=list, description="Paths or globs.")
    allow_plaintext_credentials: bool = False

    @model_validator(mode="after")
    def _content(self) -> SendEmailParams:
        _needs_jinja(self.template)
        if not (self.to or self.cc or self.bcc):
            raise ValueError("no recipient: give `to`, `cc` or `bcc`")
        return self


class Via(StrEnum):
    EMAIL = "email"


class Actor(StrictModel):
    name: str | None = None
    account: dict[str, str] = Field(description="{address: ...} for email.")


class NotifyMessage(StrictModel):
    subject: str = ""
    message: str | None = Field(default=None, validation_alias=AliasChoices("message", "body"))
    template: str | None = None


class SendNotifyParams(StrictModel):
    via: Via = Field(default=Via.EMAIL, description="Only email ships; others are plugins.")
    account: MailServer = Field(validation_alias=AliasChoices("account", "credentials"))
    sender: str = Field(validation_alias=AliasChoices("sender", "from"))
    recipients: list[Actor] = Field(min_length=1)
    message: NotifyMessage
    tpl_args: dict[str, Any] = Field(default_factory=dict)
    attachments: list[str] = Field(default_factory=list)
    allow_plaintext_credentials: bool = False

    @model_validator(mode="after")
    def _addresses(self) -> SendNotifyParams:
        _needs_jinja(self.message.template)
        for i, r in enumerate(self.recipients):
            if "address" not in r.account:
                raise ValueError(f"recipients[{i}].account needs an `address` for email")
        return self


def _attachments(ctx: StepContext, patterns: list[str]) -> list[Path]:
    from flowtaskd.components.support import local_path  # noqa: PLC0415

    found: list[Path] = []
    for pattern in patterns:
        path = str(local_path(ctx, pattern))
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"no attachment at {path}")
        found.extend(Path(m) for m in matches)
    return found


def _render(ctx: StepContext, template: str, values: dict[str, Any]) -> str:
    import jinja2  # noqa: PLC0415

    from flowtaskd.components.support import local_path  # noqa: PLC0415

    path = local_path(ctx, template)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(path.name).render(**values)


def build_message(
    sender: str,
    to: list[str],
    cc: list[str],
    subject: str,
    body: str,
    html: bool,
    files: list[Path],
) -> EmailMessage:
    from email.message import EmailMessage  # noqa: PLC0415 - it imports socket
    from email.utils import formatdate, make_msgid  # noqa: PLC0415

    msg = EmailMessage()
    msg["From"], msg["Subject"] = sender, subject
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid()
    msg.set_content(body, subtype="html" if html else "plain")
    for f in files:
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        main, sub = ctype.split("/", 1)
        msg.add_attachment(f.read_bytes(), maintype=main, subtype=sub, filename=f.name)
    return msg


class _Sender:
    """One SMTP conversation in a thread; ``abort`` (from the loop) closes its socket."""

    def __init__(self) -> None:
        self.smtp: smtplib.SMTP | None = None
        self.lock = threading.Lock()
        self.aborted = False

    def abort(self, how: int) -> None:
        """``how``: ``socket.SHUT_RDWR`` (the caller imports socket, at run time)."""
        with self.lock:
            self.aborted = True
            if self.smtp is not None and self.smtp.sock is not None:
                with contextlib.suppress(OSError):
                    self.smtp.sock.shutdown(how)

    def send(
        self,
        server: MailServer,
        user: str | None,
        password: str | None,
        msg: EmailMessage,
        rcpts: list[str],
        timeout: float,
    ) -> None:
        import smtplib  # noqa: PLC0415
        import ssl  # noqa: PLC0415

        context = ssl.create_default_context(cafile=server.cafile)
        if not server.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if server.tls is Security.SSL:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                server.hostname, server.port or 465, timeout=timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(server.hostname, server.port or 587, timeout=timeout)
        with self.lock:
            self.smtp = smtp
            if self.aborted:
                smtp.close()
                raise ConnectionAbortedError("cancelled")
        with smtp:
            if server.tls is Security.STARTTLS:
                smtp.starttls(context=context)
            if user and password is not None:
                smtp.login(user, password)
            smtp.send_message(msg, to_addrs=rcpts)


async def send_mail(
    ctx: StepContext,
    server: MailServer,
    allow_plaintext: bool,
    msg: EmailMessage,
    rcpts: list[str],
) -> None:
    """Send ``msg``; raises ``CredentialError``, ``smtplib.SMTPException`` or ``OSError``."""
    import asyncio  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from flowtaskd.components.support import credential, plain_value  # noqa: PLC0415

    user = plain_value(ctx, server.username)
    password = credential(
        ctx, server.password, "credentials.password", allow_plaintext=allow_plaintext
    )
    sender = _Sender()
    work = asyncio.ensure_future(
        asyncio.to_thread(sender.send, server, user, password, msg, rcpts, ctx.timeout or 60.0)
    )
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        sender.abort(socket.SHUT_RDWR)
        await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the cancel is what is reported
        raise


async def _send_step(
    ctx: StepContext,
    server: MailServer,
    allow: bool,
    build: Any,
    rcpts: list[str],
) -> StepOutcome:
    import asyncio  # noqa: PLC0415
    import smtplib  # noqa: PLC0415

    from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
    from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
    from flowtaskd.components.support import CredentialError  # noqa: PLC0415

    try:
        msg: EmailMessage = await asyncio.to_thread(build)
    except (OSError, ValueError) as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    except Exception as exc:  # a template error (jinja2's own types)
        return StepOutcome(StepStatus.FAILED, error=f"template: {type(exc).__name__}: {exc}")
    try:
        async with asyncio.timeout(ctx.timeout):
            await send_mail(ctx, server, allow, msg, rcpts)
    except TimeoutError:
        return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
    except CredentialError as exc:
        return StepOutcome(StepStatus.FAILED, error=str(exc))
    except (smtplib.SMTPException, OSError) as exc:
        error = f"SMTP {server.hostname}: {type(exc).__name__}: {exc}"
        return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
    output = f"sent {msg['Message-ID']} to {len(rcpts)} recipient(s)"
    return StepOutcome(StepStatus.DONE, output=output)


class SendEmailComponent(Component):
    name = "SendEmail"
    Params: ClassVar[type[StrictModel]] = SendEmailParams
    needs_env = True
    summary = "Send an email over SMTP (STARTTLS/TLS), with a template and attachments."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = SendEmailParams.model_validate(ctx.params)

        def build() -> EmailMessage:
            body = _render(ctx, p.template, p.tpl_args) if p.template else (p.body or "")
            html = p.html or bool(p.template and p.template.endswith((".html", ".htm")))
            files = _attachments(ctx, p.attachments)
            return build_message(p.sender, p.to, p.cc, p.subject, body, html, files)

        rcpts = [*p.to, *p.cc, *p.bcc]
        return await _send_step(ctx, p.credentials, p.allow_plaintext_credentials, build, rcpts)


class SendNotifyComponent(Component):
    name = "SendNotify"
    Params: ClassVar[type[StrictModel]] = SendNotifyParams
    needs_env = True
    summary = "Notify recipients (via email) with a message or a template."

    async def run(self, ctx: StepContext) -> StepOutcome:
        p = SendNotifyParams.model_validate(ctx.params)
        to = [
            f"{r.name} <{r.account['address']}>" if r.name else r.account["address"]
            for r in p.recipients
        ]
        m = p.message

        def build() -> EmailMessage:
            body = _render(ctx, m.template, p.tpl_args) if m.template else (m.message or "")
            html = bool(m.template and m.template.endswith((".html", ".htm")))
            files = _attachments(ctx, p.attachments)
            return build_message(p.sender, to, [], m.subject, body, html, files)

        rcpts = [r.account["address"] for r in p.recipients]
        return await _send_step(ctx, p.account, p.allow_plaintext_credentials, build, rcpts)


COMPONENTS: list[type[Component]] = [SendEmailComponent, SendNotifyComponent]
