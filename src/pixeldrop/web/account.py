"""The account page: balance, API keys (create, revoke), usage, the ledger, and credit packs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop import accounts, payments
from pixeldrop.accounts import AccountInfo, KeyInfo, NewKey, usage
from pixeldrop.accounts.keys import revoke_own_key
from pixeldrop.http.services import Services
from pixeldrop.storage import Database

from .pages import PageRoute, render
from .sessions import current_account, require_csrf

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CHART_DAYS = 14
NOTICES = {
    "welcome": "Welcome to pixeldrop! Create an API key to start, or try the playground.",
    "revoked": "The key was revoked. Requests made with it are now refused.",
    "success": "Thank you! Your credits are added as soon as Stripe confirms the payment, usually within seconds.",
    "cancelled": "Checkout was cancelled; nothing was charged.",
}


@dataclass(frozen=True)
class Overview:
    account: AccountInfo
    keys: list[KeyInfo]
    requests: list[usage.RequestRow]
    days: list[usage.DaySpend]
    ledger: list[usage.LedgerRow]


def _overview(db: Database, account_id: int) -> Overview:
    account = accounts.get_account_by_id(db, account_id)
    return Overview(account, accounts.list_keys(db, account.email), usage.recent_requests(db, account.id),
                    usage.credits_spent_per_day(db, account.id, CHART_DAYS), usage.ledger(db, account.id))


def _notice(request: Request) -> str | None:
    query = request.query_params
    for name in ("welcome", "revoked"):
        if name in query:
            return NOTICES[name]
    return NOTICES.get(query.get("purchase", ""))


async def _page(request: Request, account: AccountInfo, new_key: NewKey | None = None, status_code: int = 200,
                error: str | None = None) -> Response:
    services = Services.of(request)
    overview = await run_in_threadpool(_overview, services.db, account.id)
    peak = max((day.credits for day in overview.days), default=0)
    return render(
        request, "account.html", status_code=status_code, account=overview.account, overview=overview,
        new_key=new_key, notice=None if new_key or error else _notice(request), error=error, chart_peak=peak,
        spent=sum(day.credits for day in overview.days), active_keys=sum(key.active for key in overview.keys),
        default_rate_limit=services.settings.rate_limit_per_minute,
        credits_per_image=services.settings.credits_per_image,
        packs=payments.packs(services.settings), buying=payments.enabled(services.settings),
    )


@router.get("/account")
async def account_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    return await _page(request, account)


@router.post("/account/keys", dependencies=[Depends(require_csrf)])
async def create_key(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                     name: Annotated[str, Form()] = "") -> Response:
    """Answered with the page itself, not a redirect: the full key exists only in this answer."""
    new = await run_in_threadpool(accounts.create_key, Services.of(request).db, account.email, name=name)
    return await _page(request, account, new_key=new)


@router.post("/account/keys/{prefix}/revoke", dependencies=[Depends(require_csrf)])
async def revoke_key(request: Request, prefix: str,
                     account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    """Only the signed-in account's own keys, by prefix only: another account's prefix, or a
    whole key in the URL (access logs keep URLs), is not found (404)."""
    await run_in_threadpool(revoke_own_key, Services.of(request).db, prefix, account.id)
    return RedirectResponse("/account?revoked=1#keys", status_code=303)
