"""How the ClipDrop API answers errors: JSON `{"error": "..."}` with the status from the one table
(pixeldrop.http.statuses), and one shape for Starlette's own 404/405/validation errors too; except
that Starlette's 404 and 405 on the OpenAI-compatible paths come in OpenAI's shape, as every other
error there does."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from pixeldrop import errors
from pixeldrop.http.statuses import headers_for, json_error, status_for

from . import openai

log = logging.getLogger(__name__)


def error_response(error: errors.PixeldropError) -> JSONResponse:
    """A domain error as the ClipDrop API answers it (also what an Idempotency-Key replays)."""
    return json_error(status_for(error), error.message, headers_for(error))


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route takes at this path. Starlette's 405 names only the first route that
    matches the path, and FastAPI makes one route per method (GET and DELETE /v1/jobs/{id})."""
    return [method for method in METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in app.router.routes)]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.PixeldropError)
    async def _domain(_request: Request, error: errors.PixeldropError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found.", 405: "Method not allowed."}
        message = messages.get(error.status_code, str(error.detail))
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        if openai.serves(request.url.path):
            return openai.error_answer(error.status_code, message, headers)
        return json_error(error.status_code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        return json_error(400, "Malformed request.")

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, _error: ClientDisconnect) -> JSONResponse:
        # Nobody is left to read an answer: one line, not the catch-all's traceback (logged twice).
        log.info("%s %s: the client disconnected before sending its whole body", request.method, request.url.path)
        return json_error(400, "The client disconnected before sending its whole body.")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return json_error(500, "Internal error; it has been logged.")
