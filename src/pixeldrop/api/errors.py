"""How the ClipDrop API answers errors: JSON `{"error": "..."}` with the status from the one table
(pixeldrop.http.statuses), and one shape for Starlette's own 404/405/validation errors too."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pixeldrop import errors
from pixeldrop.http.statuses import headers_for, json_error, status_for

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.PixeldropError)
    async def _domain(_request: Request, error: errors.PixeldropError) -> JSONResponse:
        return json_error(status_for(error), error.message, headers_for(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found.", 405: "Method not allowed."}
        message = messages.get(error.status_code, str(error.detail))
        return json_error(error.status_code, message, getattr(error, "headers", None))

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
