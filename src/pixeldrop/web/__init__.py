"""The account pages and the playground, served by `pixeldrop serve` beside the API.

`install` adds them to the API's app: the session middleware, the static files, the page
routers (whose errors are pages) and Stripe's webhook (whose errors are JSON, like the API's).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from pixeldrop.accounts import passwords
from pixeldrop.settings import Settings

from . import account, auth, billing, playground
from .pages import HERE
from .sessions import COOKIE, MAX_AGE, session_secret

__all__ = ["install"]


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(
        SessionMiddleware, secret_key=session_secret(settings), session_cookie=COOKIE, max_age=MAX_AGE,
        same_site="lax", https_only=(settings.public_url or "").startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (auth.router, account.router, billing.pages, playground.router, billing.webhooks):
        app.include_router(router)
    passwords.warm_up()
