"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the mail tests.

`tls` gives it a certificate for 127.0.0.1, made here and trusted by the test through OpenSSL's
`SSL_CERT_FILE`: `implicit` serves TLS from the first byte (smtps://), otherwise STARTTLS is
offered. With `password`, it accepts only that user and password, and only over TLS.
"""

from __future__ import annotations

import datetime
import email
import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ..server import free_port

USER = "mailer@example.com"
LINK = re.compile(r"https?://\S+/reset-password\?token=\S+")


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]

    def reset_link(self, address: str) -> str:
        """The reset link in the last mail to `address`."""
        return LINK.search(self.to(address)[-1].get_content()).group(0)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def smtp_server(certificate: tuple[Path, Path] | None = None, implicit: bool = False,
                password: str | None = None) -> Iterator[Mailbox]:
    import ssl

    mailbox = Mailbox(free_port())
    options: dict = {}
    if certificate is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        options = {"ssl_context": context} if implicit else {"tls_context": context}
    if password is not None:
        def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER \
                and auth_data.password.decode() == password
            if ok:
                mailbox.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        # aiosmtpd counts only STARTTLS as TLS; a smtps:// connection is TLS from its first byte.
        options.update(authenticator=check, auth_required=True, auth_require_tls=not implicit)
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port, **options)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
