"""The billing page (balance, credit packs, the ledger), the Buy button's redirect to Stripe
Checkout, and Stripe's webhook.

Where the operator has not connected Stripe, the page says only that buying is not available on
this server: how an operator adds credits or connects Stripe is in the README, not on a
customer's page. The Stripe calls themselves are in `pixeldrop.payments`. The webhook is for
Stripe's servers, not a browser, so it is a plain API route: its errors are JSON, from
api/errors.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop import payments
from pixeldrop.accounts import AccountInfo, usage
from pixeldrop.http.bodies import read_body
from pixeldrop.http.services import Services, base_url

from .pages import PageRoute, render
from .sessions import current_account, require_csrf

pages = APIRouter(route_class=PageRoute, include_in_schema=False)
webhooks = APIRouter()

WEBHOOK_BODY_LIMIT = 1024 * 1024  # Stripe's events are a few kilobytes


PURCHASE_NOTICES = {
    "success": "Thank you! Your credits are added as soon as Stripe confirms the payment, usually within seconds.",
    "cancelled": "Checkout was cancelled; nothing was charged.",
}


@pages.get("/account/billing")
async def billing_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    settings = Services.of(request).settings
    db = Services.of(request).db
    ledger = await run_in_threadpool(usage.ledger, db, account.id)
    return render(request, "billing.html", account=account, active_tab="billing", ledger=ledger,
                  notice=PURCHASE_NOTICES.get(request.query_params.get("purchase", "")),
                  packs=payments.packs(settings), buying=payments.enabled(settings),
                  credits_per_image=settings.credits_per_image)


@pages.post("/account/buy", dependencies=[Depends(require_csrf)])
async def buy(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
              credits: Annotated[int, Form()]) -> Response:
    """Off to Stripe's payment page. Nothing is credited here, nor on the way back."""
    base = base_url(request)
    url = await run_in_threadpool(payments.start_checkout, Services.of(request).settings, account, credits,
                                  f"{base}/account/billing?purchase=success",
                                  f"{base}/account/billing?purchase=cancelled")
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
