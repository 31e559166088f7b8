"""The signed-in account's overview and usage pages.

The overview is where a new user starts: the balance, a quickstart with this server's own base
URL and a curl command for the ClipDrop route, and links to the other account pages (API keys in
keys.py, billing in billing.py, settings in profile.py). The usage page shows the chart of
credits spent per day and the last requests, with their prompts: only the account's own, and
only when the operator stores prompts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pixeldrop import accounts
from pixeldrop.accounts import AccountInfo, usage
from pixeldrop.http.services import Services, base_url
from pixeldrop.jobs import webhooks

from .pages import PageRoute, render
from .sessions import current_account

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CHART_DAYS = 14
EXAMPLE_PROMPT = "a red apple"  # one the default model draws well (its model card says what it can draw)
NOTICES = {
    "welcome": "Welcome to pixeldrop! Create an API key to start, or try the playground.",
}


def _spent(days: list[usage.DaySpend]) -> int:
    return sum(day.credits for day in days)


@router.get("/account")
async def account_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    services = Services.of(request)
    db = services.db
    days = await run_in_threadpool(usage.credits_spent_per_day, db, account.id, CHART_DAYS)
    keys = await run_in_threadpool(accounts.list_keys, db, account.id)
    return render(
        request, "account.html", account=account, active_tab="overview",
        notice=NOTICES["welcome"] if "welcome" in request.query_params else None,
        spent=_spent(days), days=len(days), active_keys=sum(key.active for key in keys),
        credits_per_image=services.settings.credits_per_image,
        default_rate_limit=services.settings.rate_limit_per_minute,
        base_url=base_url(request), example_prompt=EXAMPLE_PROMPT,
        webhook_secret=await run_in_threadpool(webhooks.account_secret, db, account.id),  # the jobs' webhooks
    )


@router.get("/account/usage")
async def usage_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    services = Services.of(request)
    days = await run_in_threadpool(usage.credits_spent_per_day, services.db, account.id, CHART_DAYS)
    requests = await run_in_threadpool(usage.recent_requests, services.db, account.id)
    return render(request, "usage.html", active_tab="usage", days=days, requests=requests, spent=_spent(days),
                  chart_peak=max((day.credits for day in days), default=0),
                  store_prompts=services.settings.store_prompts)
