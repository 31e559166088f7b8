"""Mail from pixeldrop (password-reset links, sign-up notices) through the operator's SMTP server.

`PIXELDROP_SMTP_URL` names the server, and mail is sent only when it is set:
- `smtp://host:port` (port 25 by default): STARTTLS whenever the server offers it, and required
  when the URL has a user: a password never crosses the network in clear;
- `smtps://user:pass@host:465` (port 465 by default): TLS from the first byte.
A user and password in the URL are percent-encoded (`%40` for `@`). TLS certificates are
verified against the system's certificate authorities (OpenSSL's `SSL_CERT_FILE` adds one).
Messages come from `PIXELDROP_MAIL_FROM`; each is sent on a connection of its own, built with
the standard library's `smtplib` and `email`. What a message says is the caller's: it may hold
a secret (a reset link), so nothing here logs it.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pixeldrop.errors import MailFailed

if TYPE_CHECKING:
    from pixeldrop.settings import Settings

TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool  # smtps://
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp://host:port` or `smtps://user:pass@host:port` as a server, or ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"the SMTP URL must start with smtp:// or smtps://, not {url.split(':', 1)[0]!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the SMTP URL's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the SMTP URL has no host, as in smtp://mail.example.com:587")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("the SMTP URL is smtp[s]://[user:password@]host[:port], with nothing after the port")
    implicit_tls = parts.scheme == "smtps"
    return SmtpServer(parts.hostname, port or (465 if implicit_tls else 25), implicit_tls,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password is not None else None)


def enabled(settings: Settings) -> bool:
    return settings.smtp_url is not None


def send(settings: Settings, to: str, subject: str, body: str) -> None:
    """Send a plain-text message; MailFailed (without the message) when the server cannot be used."""
    if settings.smtp_url is None:
        raise MailFailed("No SMTP server is configured.")
    server = parse_smtp_url(settings.smtp_url)
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        _deliver(server, message)
    except (OSError, smtplib.SMTPException) as error:
        raise MailFailed(f"The mail server {server.host}:{server.port} refused or failed: "
                         f"{type(error).__name__}") from None


def _deliver(server: SmtpServer, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    connection: smtplib.SMTP
    if server.implicit_tls:
        connection = smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        connection = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS)
    with connection:
        connection.ehlo()
        if not server.implicit_tls:
            if connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            elif server.user:
                raise MailFailed(f"{server.host} does not offer STARTTLS: the password is not sent in clear "
                                 "(use smtps:// or a server with STARTTLS)")
        if server.user:
            connection.login(server.user, server.password or "")
        connection.send_message(message)
