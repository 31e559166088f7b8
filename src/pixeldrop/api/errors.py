"""Domain errors -> HTTP answers, in one table. Every error answer is JSON `{"error": ...}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pixeldrop import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.InvalidRequest: 400,
    errors.InvalidInput: 400,
    errors.MissingApiKey: 401,
    errors.OutOfCredits: 402,
    errors.InvalidApiKey: 403,
    errors.AccountNotFound: 404,
    errors.KeyNotFound: 404,
    errors.NotAcceptable: 406,
    errors.AccountExists: 409,
    errors.BodyTimeout: 408,
    errors.BodyTooLarge: 413,
    errors.TooManyHeaders: 431,
    errors.RateLimited: 429,
    errors.GenerationFailed: 500,
    errors.ServerBusy: 503,
    errors.ClientGone: 499,  # nginx's code: nobody reads it, the usage table shows it
    errors.InvalidCredentials: 401,
    errors.InvalidWebhook: 400,
    errors.PaymentProviderError: 502,
    errors.PaymentsDisabled: 503,
}


def status_for(error: errors.PixeldropError) -> int:
    return next((code for cls, code in STATUS.items() if isinstance(error, cls)), 500)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def headers_for(error: errors.PixeldropError) -> dict[str, str]:
    if isinstance(error, errors.RateLimited):
        return {
            "Retry-After": str(error.retry_after),
            "RateLimit-Limit": str(error.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(error.retry_after),
        }
    if isinstance(error, errors.ServerBusy):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, errors.OutOfCredits):
        return {"x-remaining-credits": str(error.remaining), "x-credits-consumed": "0"}
    if isinstance(error, errors.BodyTimeout):
        return {"Connection": "close"}  # the rest of the body may still come: the connection is unusable
    return {}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.PixeldropError)
    async def _domain(_request: Request, error: errors.PixeldropError) -> JSONResponse:
        return error_response(status_for(error), error.message, headers_for(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found.", 405: "Method not allowed."}
        message = messages.get(error.status_code, str(error.detail))
        return error_response(error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "Malformed request.")

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, _error: ClientDisconnect) -> JSONResponse:
        # Nobody is left to read an answer: one line, not the catch-all's traceback (logged twice).
        log.info("%s %s: the client disconnected before sending its whole body", request.method, request.url.path)
        return error_response(400, "The client disconnected before sending its whole body.")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "Internal error; it has been logged.")
