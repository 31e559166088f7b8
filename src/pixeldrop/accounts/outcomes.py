"""How an image request ended, in words: what the usage table records, never an HTTP status.

A request's `state` says where its credits are (pending, charged, refunded, refused); its
`outcome` says what happened to it. A request that reserved credits ends `charged`, or is
refunded as `failed` (the model failed, or made fewer images than were paid for), `busy` (the
queue was full, the deadline passed, storage was unavailable), `abandoned` (the client hung up)
or `canceled` (its owner canceled a queued job). A request refused before any credit moved
records why, by the kind of domain error that refused it: `refusal_outcome` looks the error's
class up along its MRO in `REFUSALS`, one table, so a new error class ends as its nearest listed
ancestor does (every ServerBusy is `busy`) and anything unlisted as plain `refused`. Each
surface turns the same errors into its own HTTP statuses (pixeldrop.http.statuses).
"""

from __future__ import annotations

from enum import StrEnum

from pixeldrop import errors


class Outcome(StrEnum):
    CHARGED = "charged"
    FAILED = "failed"
    BUSY = "busy"
    ABANDONED = "abandoned"
    CANCELED = "canceled"
    # Refused before any credit moved
    INVALID_REQUEST = "invalid_request"
    BAD_KEY = "bad_key"
    OUT_OF_CREDITS = "out_of_credits"
    RATE_LIMITED = "rate_limited"
    NOT_ACCEPTABLE = "not_acceptable"
    BODY_TOO_LARGE = "body_too_large"
    BODY_TIMEOUT = "body_timeout"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    REFUSED = "refused"  # any other refusal


REFUSALS: dict[type[errors.PixeldropError], Outcome] = {
    errors.PixeldropError: Outcome.REFUSED,
    errors.InvalidRequest: Outcome.INVALID_REQUEST,
    errors.InvalidInput: Outcome.INVALID_REQUEST,
    errors.TooManyHeaders: Outcome.INVALID_REQUEST,
    errors.MissingApiKey: Outcome.BAD_KEY,
    errors.InvalidApiKey: Outcome.BAD_KEY,
    errors.OutOfCredits: Outcome.OUT_OF_CREDITS,
    errors.RateLimited: Outcome.RATE_LIMITED,
    errors.NotAcceptable: Outcome.NOT_ACCEPTABLE,
    errors.BodyTooLarge: Outcome.BODY_TOO_LARGE,
    errors.BodyTimeout: Outcome.BODY_TIMEOUT,
    errors.IdempotencyKeyReused: Outcome.IDEMPOTENCY_CONFLICT,
    errors.IdempotentRequestInProgress: Outcome.IDEMPOTENCY_CONFLICT,
    errors.ServerBusy: Outcome.BUSY,
    errors.ClientGone: Outcome.ABANDONED,
    errors.GenerationFailed: Outcome.FAILED,
}


def refusal_outcome(error: errors.PixeldropError) -> Outcome:
    """The outcome of a request refused by `error`: its nearest listed class's."""
    return next(REFUSALS[cls] for cls in type(error).__mro__ if cls in REFUSALS)
