"""Signing up, in and out.

Sign-in attempts are counted per email and per client IP (the same limiter as API keys, in its
own namespaces), and counted before the password is checked, so that guessing is slow whether
the guesses are right or wrong. The per-email count is keyed by `accounts.normalise_email`, the
very function that finds the account, so no other spelling of an address (case, a fullwidth
letter) gets a count of its own. An unknown email and a wrong password get the same page.

Signing up does not tell whether the email already had an account: a new address and a taken
one get the same answer, a redirect to the sign-in page, and neither is signed in; a taken
account is left as it was. Where the operator set up mail, the taken address's owner is told by
mail (sent after the answer, mailing.py), with links to log in or reset the password.

Visitors who are not signed in find a landing page at `/`: what the service is, sign-up, log-in
and the API docs.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop import accounts, mail
from pixeldrop.accounts import AccountInfo, passwords, resets
from pixeldrop.errors import AccountExists, InvalidCredentials, InvalidInput, RateLimited
from pixeldrop.http.services import Services, base_url

from . import mailing
from .pages import PageRoute, render, retry_headers, safe_next
from .sessions import optional_account, require_csrf, sign_in, sign_out

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SIGNED_UP = f"/login?signed_up=1&next={quote('/account?welcome=1', safe='/')}"


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _address(email: str) -> str | None:
    """The address as accounts know it; None when it is no address, so it can name no account."""
    try:
        return accounts.normalise_email(email)
    except InvalidInput:
        return None


def throttle(request: Request, email: str | None = None) -> None:
    """Count one attempt for the client's IP (and the email); RateLimited past the settings' limits."""
    services = Services.of(request)
    address = None if email is None else _address(email)
    try:
        services.limiter.hit(_client_ip(request), services.settings.login_attempts_per_ip_per_minute, "sign-in-ip")
        if address is not None:
            services.limiter.hit(address, services.settings.login_attempts_per_minute, "sign-in-email")
    except RateLimited as error:
        raise RateLimited(f"Too many attempts. Try again in {error.retry_after} seconds.",
                          retry_after=error.retry_after, limit=error.limit) from None


@router.get("/")
async def home(request: Request, account: Annotated[AccountInfo | None, Depends(optional_account)]) -> Response:
    if account is not None:
        return RedirectResponse("/account", status_code=303)
    settings = Services.of(request).settings
    return render(request, "landing.html", free_credits=settings.free_credits,
                  credits_per_image=settings.credits_per_image, deleted="deleted" in request.query_params)


def _signups_closed(request: Request) -> Response:
    return render(request, "signup.html", status_code=403)


@router.get("/signup")
async def signup_page(request: Request, account: Annotated[AccountInfo | None, Depends(optional_account)]) -> Response:
    if account is not None:
        return RedirectResponse("/account", status_code=303)
    settings = Services.of(request).settings
    if not settings.signups_open:
        return _signups_closed(request)
    return render(request, "signup.html", free_credits=settings.free_credits)


@router.post("/signup", dependencies=[Depends(require_csrf)])
async def signup(request: Request, email: Annotated[str, Form()] = "",
                 password: Annotated[str, Form()] = "") -> Response:
    services = Services.of(request)
    if not services.settings.signups_open:
        return _signups_closed(request)
    taken = None
    try:
        throttle(request)
        await run_in_threadpool(passwords.sign_up, services.db, email, password, services.settings.free_credits)
    except AccountExists:
        # Answered as a new account is: whether an address has an account is told only to its owner.
        if mail.enabled(services.settings):
            taken = await run_in_threadpool(resets.live_account, services.db, email)
    except (InvalidInput, RateLimited) as error:
        status = 429 if isinstance(error, RateLimited) else 400
        headers = retry_headers(error) if isinstance(error, RateLimited) else None
        return render(request, "signup.html", status_code=status, headers=headers, error=error.message, email=email,
                      free_credits=services.settings.free_credits)
    answer = RedirectResponse(SIGNED_UP, status_code=303)
    if taken is not None:
        mailing.signup_attempt(answer, services.settings, taken.email, base_url(request))
    return answer


@router.get("/login")
async def login_page(request: Request, account: Annotated[AccountInfo | None, Depends(optional_account)],
                     next: str = "/account", signed_out: bool = False, signed_up: bool = False,
                     reset: bool = False) -> Response:
    if account is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), signed_out=signed_out, signed_up=signed_up,
                  reset=reset)


@router.post("/login", dependencies=[Depends(require_csrf)])
async def login(request: Request, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/account") -> Response:
    services = Services.of(request)
    try:
        throttle(request, email)
        signed_in = await run_in_threadpool(passwords.authenticate, services.db, email, password)
    except (InvalidCredentials, RateLimited) as error:
        status = 429 if isinstance(error, RateLimited) else 401
        headers = retry_headers(error) if isinstance(error, RateLimited) else None
        return render(request, "login.html", status_code=status, headers=headers, error=error.message, email=email,
                      next=safe_next(next))
    sign_in(request, signed_in)
    return RedirectResponse(safe_next(next), status_code=303)


@router.get("/logout")
async def logout_page(request: Request, account: Annotated[AccountInfo | None, Depends(optional_account)]) -> Response:
    """Signing out is a POST (a link elsewhere must not sign anyone out); this page offers the button."""
    if account is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, "logout.html")


@router.post("/logout", dependencies=[Depends(require_csrf)])
async def logout(request: Request) -> Response:
    await sign_out(request)
    return RedirectResponse("/login?signed_out=1", status_code=303)
