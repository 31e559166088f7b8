"""Browser sessions and CSRF tokens for the account pages.

The cookie holds one thing: a random token (256 bits) that tells a reader nothing. When signed
in, the token's hash is a session row in the database (see accounts/passwords.py), and signing
out deletes that row: a copied cookie stops working at once, on every server sharing the
database. A visitor who is not signed in holds a token with no row. Signing in always hands out
a new token, so a token planted before (session fixation) never becomes a session. The cookie
is HttpOnly, SameSite=Lax, and Secure when the public URL is https.

CSRF tokens are not stored anywhere: a form's token is an HMAC of the cookie's token under the
session secret (a "signed double-submit" token). It is the same on every server that shares the
secret, changes with every sign-in, and does not reveal the cookie.

Every successful form POST answers with a redirect (POST-redirect-GET), so that reloading the
page that follows sends nothing again. What that page must show once, a new API key, travels
as the session's flash: kept on the session's row, encrypted (Fernet) under a key derived from
the cookie's token, which the database does not hold, so a copy of the table reveals no key;
taken (read and cleared) by the first page that asks, and unreadable after `FLASH_SECONDS`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pixeldrop.accounts import AccountInfo, passwords
from pixeldrop.http.services import Services
from pixeldrop.settings import Settings

COOKIE = "pixeldrop_session"
MAX_AGE = int(passwords.SESSION_LIFETIME.total_seconds())
CSRF_FIELD = "csrf_token"
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
FLASH_SECONDS = 300


class NotSignedIn(Exception):
    """The page needs a signed-in account; answered with a redirect to /login."""


class CsrfFailed(Exception):
    """A form came back without this session's token: answered with 403."""


def session_secret(settings: Settings) -> str:
    """The secret that CSRF tokens are made with: from settings, else made once under the home folder.

    Kept in a file so that forms open in a browser survive a restart. Several servers behind one
    address must share it: set PIXELDROP_SESSION_SECRET for all of them.
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


def install(app: FastAPI, settings: Settings) -> None:
    app.state.csrf_key = session_secret(settings).encode()


def _token(request: Request) -> str | None:
    """The browser's token, as this request leaves it (a sign-in or sign-out changes it)."""
    pending = getattr(request.state, "session_cookie", None)
    if pending is not None:
        return pending or None
    value = request.cookies.get(COOKIE, "")
    return value if _TOKEN_SHAPE.fullmatch(value) else None


def _send(request: Request, token: str) -> None:
    """Have the answer set the cookie to `token`; an empty token deletes it."""
    request.state.session_cookie = token


def send_cookie(request: Request, response: Response) -> None:
    """Put the cookie this request changed, if it did, on its answer (PageRoute calls this)."""
    token = getattr(request.state, "session_cookie", None)
    if token is None:
        return
    secure = (Services.of(request).settings.public_url or "").startswith("https://")
    if token:
        response.set_cookie(COOKIE, token, max_age=MAX_AGE, path="/", secure=secure, httponly=True, samesite="lax")
    else:
        response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


def _csrf_for(request: Request, token: str) -> str:
    return hmac.new(request.app.state.csrf_key, token.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The CSRF token for this browser's forms; a first visit is given its token here."""
    token = _token(request)
    if token is None:
        token = secrets.token_urlsafe(32)
        _send(request, token)
    return _csrf_for(request, token)


async def require_csrf(request: Request) -> None:
    """Dependency of every form POST: the hidden field must be this browser's CSRF token.

    It reads the form that PageRoute parsed within the forms' limits (web/forms.py).
    """
    sent = request.state.form.get(CSRF_FIELD)
    token = _token(request)
    if not isinstance(sent, str) or token is None:
        raise CsrfFailed()
    if not hmac.compare_digest(sent.encode(), _csrf_for(request, token).encode()):
        raise CsrfFailed()


def session_token(request: Request) -> str:
    """The signed-in browser's own token (to keep its session when the others end)."""
    token = _token(request)
    if token is None:
        raise NotSignedIn()
    return token


def sign_in(request: Request, signed_in: passwords.SignedIn) -> None:
    """The browser gets the new session's token; nothing it held before carries over."""
    _send(request, signed_in.token)


async def sign_out(request: Request) -> None:
    """End the session in the database (for every server) and drop the cookie."""
    token = _token(request)
    if token is not None:
        await run_in_threadpool(passwords.end_session, Services.of(request).db, token)
    _send(request, "")


async def current_account(request: Request) -> AccountInfo:
    """Dependency of every page that needs an account: the signed-in one, or NotSignedIn."""
    token = _token(request)
    account = None if token is None else await run_in_threadpool(passwords.session_account,
                                                                  Services.of(request).db, token)
    if account is None:
        raise NotSignedIn()
    request.state.account = account
    return account


async def optional_account(request: Request) -> AccountInfo | None:
    try:
        return await current_account(request)
    except NotSignedIn:
        return None


def _sealer(token: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hmac.new(token.encode(), b"pixeldrop flash", hashlib.sha256).digest()))


async def flash(request: Request, **message: str) -> None:
    """Keep `message` for the signed-in browser's next page (which `take_flash` gives it to)."""
    token = _token(request)
    if token is None:
        raise NotSignedIn()
    sealed = _sealer(token).encrypt(json.dumps(message).encode()).decode()
    await run_in_threadpool(passwords.keep_flash, Services.of(request).db, token, sealed)


async def take_flash(request: Request) -> dict[str, str]:
    """The message kept for this page, once: a reload, another tab or a late arrival gets {}."""
    token = _token(request)
    sealed = None if token is None else await run_in_threadpool(passwords.take_flash, Services.of(request).db, token)
    if token is None or sealed is None:
        return {}
    try:
        return json.loads(_sealer(token).decrypt(sealed.encode(), ttl=FLASH_SECONDS))
    except InvalidToken:
        return {}
