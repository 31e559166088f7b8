"""The account's settings page: change the password, delete the account.

Both ask for the current password: a session left open on a shared computer is not enough to
lock the owner out or close their account. A new password ends every other browser's session
and keeps this one. Deleting (pixeldrop/account_deletion.py) revokes the keys, cancels and
refunds the queued jobs and ends every session, in one transaction; the ledger and usage stay
for the operator, and the address cannot sign up again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pixeldrop.account_deletion import delete_account
from pixeldrop.accounts import AccountInfo, passwords
from pixeldrop.errors import InvalidCredentials, InvalidInput
from pixeldrop.http.services import Services

from .pages import PageRoute, render
from .sessions import current_account, require_csrf, session_token, sign_out

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _page(request: Request, status_code: int = 200, **context) -> Response:
    return render(request, "settings.html", status_code=status_code, active_tab="settings", **context)


@router.get("/account/settings")
async def settings_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    return _page(request, password_changed="password_changed" in request.query_params)


@router.post("/account/password", dependencies=[Depends(require_csrf)])
async def change_password(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                          current: Annotated[str, Form()] = "", new: Annotated[str, Form()] = "") -> Response:
    try:
        await run_in_threadpool(passwords.change_password, Services.of(request).db, account.id, current, new,
                                session_token(request))
    except (InvalidCredentials, InvalidInput) as error:
        return _page(request, status_code=400, password_error=error.message)
    return RedirectResponse("/account/settings?password_changed=1", status_code=303)


@router.post("/account/delete", dependencies=[Depends(require_csrf)])
async def delete(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                 password: Annotated[str, Form()] = "") -> Response:
    db = Services.of(request).db
    try:
        await run_in_threadpool(passwords.check_password, db, account.id, password)
    except InvalidCredentials as error:
        return _page(request, status_code=400, delete_error=error.message)
    keep = timedelta(seconds=Services.of(request).settings.job_result_seconds)
    await run_in_threadpool(delete_account, db, account.id, keep)
    await sign_out(request)
    return RedirectResponse("/?deleted=1", status_code=303)
