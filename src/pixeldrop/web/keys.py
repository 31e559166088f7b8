"""The API keys page: the account's keys, Create key, and Revoke behind a confirmation.

Create key answers with a redirect (POST-redirect-GET) to the keys page, which shows the new
key once: it travels in the session's flash (sessions.py), so reloading that page, or opening
it again, shows no key and makes none. Revoke is two steps: the button in the table opens a
page that names the key and asks; only its form (a POST) revokes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop import accounts
from pixeldrop.accounts import AccountInfo
from pixeldrop.accounts.keys import revoke_own_key
from pixeldrop.errors import KeyNotFound
from pixeldrop.http.services import Services

from .pages import PageRoute, render
from .sessions import current_account, flash, require_csrf, take_flash

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/account/keys")
async def keys_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    services = Services.of(request)
    kept = await take_flash(request) if "created" in request.query_params else {}
    keys = await run_in_threadpool(accounts.list_keys, services.db, account.id)
    return render(request, "keys.html", active_tab="keys", keys=keys, new_key=kept.get("new_key"),
                  created="created" in request.query_params, revoked="revoked" in request.query_params,
                  default_rate_limit=services.settings.rate_limit_per_minute)


@router.post("/account/keys", dependencies=[Depends(require_csrf)])
async def create_key(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                     name: Annotated[str, Form()] = "") -> Response:
    new = await run_in_threadpool(accounts.create_key, Services.of(request).db, account.email, name=name)
    await flash(request, new_key=new.key)
    return RedirectResponse("/account/keys?created=1", status_code=303)


async def _own_active_key(request: Request, account: AccountInfo, prefix: str) -> accounts.KeyInfo:
    keys = await run_in_threadpool(accounts.list_keys, Services.of(request).db, account.id)
    key = next((key for key in keys if key.prefix == prefix), None)
    if key is None:
        raise KeyNotFound(f"No key with prefix {prefix}.")
    return key


@router.get("/account/keys/{prefix}/revoke")
async def confirm_revoke(request: Request, prefix: str,
                         account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    """The question before a key stops working for whoever uses it."""
    key = await _own_active_key(request, account, prefix)
    if not key.active:
        return RedirectResponse("/account/keys", status_code=303)
    return render(request, "revoke.html", active_tab="keys", key=key)


@router.post("/account/keys/{prefix}/revoke", dependencies=[Depends(require_csrf)])
async def revoke_key(request: Request, prefix: str,
                     account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    """Only the signed-in account's own keys, by prefix only: another account's prefix, or a
    whole key in the URL (access logs keep URLs), is not found (404)."""
    await run_in_threadpool(revoke_own_key, Services.of(request).db, prefix, account.id)
    return RedirectResponse("/account/keys?revoked=1", status_code=303)
