"""The pages' mail: a password-reset link, and a notice to an address that someone tried to sign
up with. Each is sent after the answer has gone (a background task), so that the answer, and
how long it takes, is the same whether or not the address has an account. A message that cannot
be sent is logged without its text (a reset link is a secret)."""

from __future__ import annotations

import logging

from starlette.background import BackgroundTask
from starlette.responses import Response

from pixeldrop import mail
from pixeldrop.errors import MailFailed
from pixeldrop.settings import Settings

log = logging.getLogger(__name__)


def _send(settings: Settings, purpose: str, to: str, subject: str, body: str) -> None:
    try:
        mail.send(settings, to, subject, body)
    except MailFailed as error:
        log.warning("could not send the %s mail: %s", purpose, error.message)


def _after(response: Response, settings: Settings, purpose: str, to: str, subject: str, body: str) -> Response:
    response.background = BackgroundTask(_send, settings, purpose, to, subject, body)
    return response


def reset_link(response: Response, settings: Settings, to: str, base: str, link: str, minutes: int) -> Response:
    return _after(response, settings, "password reset", to, "Reset your pixeldrop password",
                  f"Someone, hopefully you, asked to reset the password of the pixeldrop account for {to} at "
                  f"{base}.\n\nTo choose a new password, open this link within {minutes} minutes (it works once):\n\n"
                  f"{link}\n\nIf it was not you, ignore this mail: your password stays as it is.\n")


def signup_attempt(response: Response, settings: Settings, to: str, base: str) -> Response:
    return _after(response, settings, "sign-up notice", to, "Someone tried to sign up with your address",
                  f"Someone tried to sign up to pixeldrop at {base} with {to}, which already has an account "
                  f"there.\n\nIf it was you, log in at {base}/login, or reset your password at "
                  f"{base}/forgot-password.\n\nIf it was not you, there is nothing to do: nothing was changed.\n")
