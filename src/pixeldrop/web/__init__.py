"""The account pages and the playground, served by `pixeldrop serve` beside the API.

`install` adds them to the API's app: the session secret, the static files, the page routers
(whose errors are pages), the API docs with their own assets (docs.py) and Stripe's webhook
(whose errors are JSON, like the API's).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from pixeldrop.accounts import passwords
from pixeldrop.settings import Settings

from . import account, auth, billing, docs, keys, playground, profile, recovery, sessions
from .pages import HERE, SECURITY_HEADERS

__all__ = ["install"]


class _StaticFiles(StaticFiles):
    """The pages' script, style and icon, with the pages' headers (nosniff above all), but cacheable."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        for name, value in SECURITY_HEADERS.items():
            if name != "Cache-Control":
                response.headers.setdefault(name, value)
        return response


def install(app: FastAPI, settings: Settings) -> None:
    sessions.install(app, settings)
    app.mount("/static", _StaticFiles(directory=HERE / "static"), name="static")
    for router in (auth.router, recovery.router, account.router, keys.router, billing.pages, profile.router,
                   playground.router, billing.webhooks):
        app.include_router(router)
    docs.install(app)
    passwords.warm_up()
