"""Browser sessions and CSRF tokens for the account pages.

The session is Starlette's SessionMiddleware: a cookie signed with itsdangerous, HttpOnly and
SameSite=Lax (Secure too when the public URL is https). It holds three things: the account id,
the stamp of the password it signed in with (a new password signs every browser out), and a
random CSRF token that every form carries back in a hidden field.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from pixeldrop.accounts import AccountInfo, passwords
from pixeldrop.api.services import Services
from pixeldrop.settings import Settings

COOKIE = "pixeldrop_session"
MAX_AGE = 14 * 24 * 3600
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """The page needs a signed-in account; answered with a redirect to /login."""


class CsrfFailed(Exception):
    """A form came back without this session's token: answered with 403."""


def session_secret(settings: Settings) -> str:
    """The secret that signs session cookies: from settings, else made once under the home folder.

    Kept in a file so that sessions survive a restart. Several servers behind one address must
    share it: set PIXELDROP_SESSION_SECRET for all of them.
    """
    if settings.session_secret:
        return settings.session_secret
    path: Path = settings.home_dir / "session_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside then linked into place: a process starting at the same moment either
        # finds no file or the whole secret, and the first link wins.
        draft = path.with_name(f".session_secret.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use (also for visitors not signed in)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def require_csrf(request: Request) -> None:
    """Dependency of every form POST: the hidden field must equal the session's token."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed()


def sign_in(request: Request, signed_in: passwords.SignedIn) -> None:
    """Start a fresh session: nothing from before signing in (a planted token) carries over."""
    request.session.clear()
    request.session.update(account_id=signed_in.account.id, stamp=signed_in.stamp, csrf=secrets.token_urlsafe(32))


def sign_out(request: Request) -> None:
    request.session.clear()


async def current_account(request: Request) -> AccountInfo:
    """Dependency of every page that needs an account: the signed-in one, or NotSignedIn."""
    account_id, stamp = request.session.get("account_id"), request.session.get("stamp")
    if not isinstance(account_id, int) or not isinstance(stamp, str):
        raise NotSignedIn()
    account = await run_in_threadpool(passwords.session_account, Services.of(request).db, account_id, stamp)
    if account is None:
        sign_out(request)
        raise NotSignedIn()
    request.state.account = account
    return account


async def optional_account(request: Request) -> AccountInfo | None:
    try:
        return await current_account(request)
    except NotSignedIn:
        return None
