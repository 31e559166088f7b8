"""Domain errors -> HTTP statuses and headers, in one table, for every surface.

`status_for` looks an error's class up along its MRO, so a subclass answers as its nearest
listed ancestor (every ServerBusy is a 503) unless it is listed itself. Each surface renders
the error in its own shape (the ClipDrop API as `{"error": "..."}`, the OpenAI-compatible
routes as OpenAI's `{"error": {"message", "type", "param", "code"}}`, pages as pages); what
answers before any route is known (server limits) uses `json_error`, the ClipDrop shape.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from pixeldrop import errors

STATUS: dict[type[errors.PixeldropError], int] = {
    errors.InvalidRequest: 400,
    errors.InvalidInput: 400,
    errors.InvalidWebhook: 400,
    errors.MissingApiKey: 401,
    errors.InvalidCredentials: 401,
    errors.OutOfCredits: 402,
    errors.InvalidApiKey: 403,
    errors.AccountNotFound: 404,
    errors.KeyNotFound: 404,
    errors.ImageNotFound: 404,
    errors.JobNotFound: 404,
    errors.NotAcceptable: 406,
    errors.BodyTimeout: 408,
    errors.AccountExists: 409,
    errors.IdempotentRequestInProgress: 409,
    errors.JobStateConflict: 409,
    errors.JobResultExpired: 410,
    errors.BodyTooLarge: 413,
    errors.IdempotencyKeyReused: 422,
    errors.RateLimited: 429,
    errors.TooManyHeaders: 431,
    errors.ClientGone: 499,  # nginx's code: nobody reads it (the client has gone)
    errors.GenerationFailed: 500,
    errors.PaymentProviderError: 502,
    errors.ServerBusy: 503,
    errors.PaymentsDisabled: 503,
}


# OpenAI's API answers a key it cannot use with 401 (its clients raise AuthenticationError);
# the OpenAI-compatible routes (api/openai.py) follow it there. ClipDrop's answer is 403.
OPENAI_STATUS: dict[type[errors.PixeldropError], int] = {**STATUS, errors.InvalidApiKey: 401}


def status_for(error: errors.PixeldropError, table: dict[type[errors.PixeldropError], int] = STATUS) -> int:
    return next((table[cls] for cls in type(error).__mro__ if cls in table), 500)


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


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
