"""Forgot password: a reset link by mail, and the page that link opens.

The form answers the same whatever the address ("if an account has this address, a link is on
its way"), and the mail goes after the answer (mailing.py), so neither the page nor its timing
tells which addresses have accounts. Requests count against the sign-in limit per client IP; an
address gets at most `MAILS_PER_ADDRESS_PER_MINUTE` links a minute, past which it gets none (and
the same answer). Without SMTP settings the page tells the user to ask the server's operator.
The link's token is single-use and expires (accounts/resets.py); using it signs every browser
of the account out, and the user logs in with the new password.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop import accounts, mail
from pixeldrop.accounts import resets
from pixeldrop.errors import InvalidInput, RateLimited
from pixeldrop.http.services import Services, base_url

from . import mailing
from .auth import throttle
from .pages import PageRoute, render, retry_headers
from .sessions import require_csrf

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MAILS_PER_ADDRESS_PER_MINUTE = 2


@router.get("/forgot-password")
async def forgot_page(request: Request) -> Response:
    return render(request, "forgot.html", mail_enabled=mail.enabled(Services.of(request).settings),
                  sent="sent" in request.query_params)


@router.post("/forgot-password", dependencies=[Depends(require_csrf)])
async def forgot(request: Request, email: Annotated[str, Form()] = "") -> Response:
    services = Services.of(request)
    if not mail.enabled(services.settings):
        return render(request, "forgot.html", status_code=503, mail_enabled=False)
    try:
        throttle(request)
    except RateLimited as error:
        return render(request, "forgot.html", status_code=429, headers=retry_headers(error), mail_enabled=True,
                      error=error.message, email=email)
    answer = RedirectResponse("/forgot-password?sent=1", status_code=303)
    started = await run_in_threadpool(resets.start, services.db, email) if _may_mail(request, email) else None
    if started is not None:
        account, token = started
        base = base_url(request)
        mailing.reset_link(answer, services.settings, account.email, base,
                           f"{base}/reset-password?token={quote(token)}", int(resets.LIFETIME.total_seconds() // 60))
    return answer


def _may_mail(request: Request, email: str) -> bool:
    """Whether this address may get another link now (whether or not it has an account)."""
    try:
        address = accounts.normalise_email(email)
        Services.of(request).limiter.hit(address, MAILS_PER_ADDRESS_PER_MINUTE, "reset-mail")
    except (InvalidInput, RateLimited):
        return False
    return True


@router.get("/reset-password")
async def reset_page(request: Request, token: str = "") -> Response:
    try:
        account = await run_in_threadpool(resets.check, Services.of(request).db, token)
    except InvalidInput as error:
        return render(request, "reset.html", status_code=400, invalid=error.message)
    return render(request, "reset.html", token=token, email=account.email)


@router.post("/reset-password", dependencies=[Depends(require_csrf)])
async def reset(request: Request, token: Annotated[str, Form()] = "",
                password: Annotated[str, Form()] = "") -> Response:
    db = Services.of(request).db
    try:
        await run_in_threadpool(resets.finish, db, token, password)
    except InvalidInput as error:
        try:
            account = await run_in_threadpool(resets.check, db, token)
        except InvalidInput:
            return render(request, "reset.html", status_code=400, invalid=error.message)
        return render(request, "reset.html", status_code=400, token=token, email=account.email, error=error.message)
    return RedirectResponse("/login?reset=1", status_code=303)
