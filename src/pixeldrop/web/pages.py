"""Rendering pages, and answering errors on pages with pages.

The JSON API's error handlers (api/errors.py) answer every error as `{"error": ...}`, which is
right for API clients and wrong for a browser. Page routes use `PageRoute`, which catches what
their handler raises and answers HTML: a redirect to /login when the page needs an account, a
page with the message otherwise. It also reads every POST's form within the forms' limits before
the handler sees it (forms.py), and puts the session cookie a request changed on its answer.

Every page gets headers that keep it out of frames and caches (it shows balances and keys), and
a Content-Security-Policy that allows only this site's own script, style and images (and data:
images: the playground shows its result as one). The templates therefore carry no inline
script, style or event handler. There is no `form-action`: browsers apply it to the redirect
that follows a form, and the Buy form's redirect goes to Stripe Checkout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from pixeldrop.accounts import passwords
from pixeldrop.errors import PixeldropError, RateLimited
from pixeldrop.http.services import Services
from pixeldrop.http.statuses import status_for

from . import forms
from .sessions import CSRF_FIELD, CsrfFailed, NotSignedIn, csrf_token, send_cookie

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = _when
templates.env.filters["thousands"] = lambda n: f"{n:,}"
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD


def render(request: Request, name: str, status_code: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> Response:
    """A page; every template gets the CSRF token, the signed-in account (or None), whether
    visitors may sign up (so no page links to a closed sign-up form) and the shortest password
    the server accepts (for the new-password fields, templates/_fields.html)."""
    context.setdefault("account", getattr(request.state, "account", None))
    context["signups_open"] = Services.of(request).settings.signups_open
    context["password_min_length"] = passwords.MIN_LENGTH
    context["csrf_token"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)


def error_page(request: Request, status: int, title: str, message: str,
               headers: dict[str, str] | None = None) -> Response:
    return render(request, "error.html", status_code=status, headers=headers, status=status, title=title,
                  message=message)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on this site, never another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/account"


def retry_headers(error: RateLimited) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)}


class PageRoute(APIRoute):
    """A route whose errors are pages, not JSON."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                if request.method == "POST":
                    request = await forms.bounded(request)
                response = await handler(request)
            except NotSignedIn:
                target = request.url.path if request.method == "GET" else "/account"
                response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            except CsrfFailed:
                response = error_page(request, 403, "This form has expired",
                                      "The form was not sent from this session's page. Go back, reload the page, "
                                      "and try again.")
            except RateLimited as error:
                response = error_page(request, 429, "Slow down", error.message, retry_headers(error))
            except PixeldropError as error:
                response = error_page(request, status_for(error), "That did not work", error.message)
            except RequestValidationError:
                response = error_page(request, 400, "That did not work", "The form is missing a field.")
            except HTTPException as error:
                response = error_page(request, error.status_code, "That did not work", str(error.detail))
            except Exception:
                log.exception("unexpected error on %s", request.url.path)
                response = error_page(request, 500, "Something went wrong",
                                      "An unexpected error happened; it has been logged.")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            send_cookie(request, response)
            return response

        return page
