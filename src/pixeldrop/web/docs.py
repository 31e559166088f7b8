"""The API's documentation pages, Swagger UI at /docs and ReDoc at /redoc, served whole from here.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc its fonts from Google), so
a server without internet access showed blank docs. The assets come from the PyPI package
`fastapi-offline` instead, served under /docs/assets; Swagger UI's online validator badge is
off, and ReDoc uses the browser's fonts. ReDoc still shows its maker's logo from their CDN: its
page's Content-Security-Policy keeps it (and anything else) to this server, so the pages make no
request outside it.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
# ReDoc styles itself with inline styles and searches in a worker made from a blob.
REDOC_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def install(app: FastAPI) -> None:
    """Serve the docs pages for `app`, which must be made with `docs_url=None, redoc_url=None`."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} API",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg",
                                   swagger_ui_parameters={"validatorUrl": None})

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=openapi_url, title=f"{title} API",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url="/static/favicon.svg", with_google_fonts=False)
        page.headers["Content-Security-Policy"] = REDOC_POLICY
        return page

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.include_router(router)
