"""Buying credit packs: the Buy button's redirect to Stripe Checkout, and Stripe's webhook.

The Stripe calls themselves are in `pixeldrop.payments`. The webhook is for Stripe's servers,
not a browser, so it is a plain API route: its errors are JSON, from api/errors.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop import payments
from pixeldrop.accounts import AccountInfo
from pixeldrop.http.bodies import read_body
from pixeldrop.http.services import Services

from .pages import PageRoute
from .sessions import current_account, require_csrf

pages = APIRouter(route_class=PageRoute, include_in_schema=False)
webhooks = APIRouter()

WEBHOOK_BODY_LIMIT = 1024 * 1024  # Stripe's events are a few kilobytes


def _base_url(request: Request) -> str:
    """Where Stripe sends the buyer back: the configured public URL, else the one they came by."""
    configured = Services.of(request).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


@pages.post("/account/buy", dependencies=[Depends(require_csrf)])
async def buy(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
              credits: Annotated[int, Form()]) -> Response:
    """Off to Stripe's payment page. Nothing is credited here, nor on the way back."""
    base = _base_url(request)
    url = await run_in_threadpool(payments.start_checkout, Services.of(request).settings, account, credits,
                                  f"{base}/account?purchase=success#buy", f"{base}/account?purchase=cancelled#buy")
    return RedirectResponse(url, status_code=303)


@webhooks.post("/webhooks/stripe", summary="Stripe webhook: credits paid Checkout Sessions",
               responses={400: {"description": "The signature does not verify"},
                          503: {"description": "Stripe is not configured on this server"}})
async def stripe_webhook(request: Request) -> JSONResponse:
    """Send `checkout.session.completed` (and `checkout.session.async_payment_succeeded`) here."""
    services = Services.of(request)
    body = await read_body(request, WEBHOOK_BODY_LIMIT)
    outcome = await run_in_threadpool(payments.handle_webhook, services.db, services.settings, body,
                                      request.headers.get("stripe-signature"))
    return JSONResponse({"received": True, "event": outcome.event_id, "credited": outcome.credited})
