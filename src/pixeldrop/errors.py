"""Every error pixeldrop's domain can raise, in one place.

The domain packages raise these; `pixeldrop.http.statuses` maps each to an HTTP status in one
table, and each surface renders them in its own shape. None of them knows about HTTP.
"""

from __future__ import annotations


class PixeldropError(Exception):
    """Base class: `message` is safe to show to the API caller."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# Requests
class InvalidRequest(PixeldropError):
    """The request is malformed: missing or bad prompt, wrong body type."""


class InvalidParameter(InvalidRequest):
    """One named field of the request is missing, of the wrong type or out of range (`param`: its name)."""

    def __init__(self, message: str, param: str | None):
        super().__init__(message)
        self.param = param


class BodyTooLarge(PixeldropError):
    pass


class BodyTimeout(PixeldropError):
    """The client did not send its whole body within the body timeout (or stalled mid-body)."""


class TooManyHeaders(PixeldropError):
    pass


class NotAcceptable(PixeldropError):
    pass


# Keys and accounts
class MissingApiKey(PixeldropError):
    pass


class InvalidApiKey(PixeldropError):
    """Unknown or revoked: the caller is told the same either way."""


class AccountNotFound(PixeldropError):
    pass


class AccountExists(PixeldropError):
    pass


class KeyNotFound(PixeldropError):
    pass


class InvalidInput(PixeldropError):
    """An operator's or user's input (email, amount) is not acceptable."""


# Credits and limits
class OutOfCredits(PixeldropError):
    def __init__(self, message: str, remaining: int):
        super().__init__(message)
        self.remaining = remaining


class RateLimited(PixeldropError):
    def __init__(self, message: str, retry_after: int, limit: int):
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit


# Capacity: the request was fine, the server cannot take it now (nothing is charged)
class ServerBusy(PixeldropError):
    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(ServerBusy):
    pass


class GenerationTimedOut(ServerBusy):
    """The image was not made within the generation deadline."""


class StorageUnavailable(ServerBusy):
    """The database cannot be reached, is locked past its busy timeout, or is read-only."""


class TooManyConnections(ServerBusy):
    """As many connections are open (or requests in flight) as the server takes."""


# Generation
class GenerationFailed(PixeldropError):
    pass


class ClientGone(PixeldropError):
    """The client hung up before its image was delivered: nothing is charged."""


class ImageNotFound(PixeldropError):
    """A stored image that does not exist, has expired, or belongs to another account: told the same."""


# Jobs (pixeldrop.jobs)
class JobNotFound(PixeldropError):
    """No such job, or another account's: told the same."""


class JobStateConflict(PixeldropError):
    """The job's state does not allow it: its result before it succeeded, canceling it once started."""


class JobResultExpired(PixeldropError):
    """The job's image was made, kept for the `job_result_seconds` setting, then deleted."""


# Safe retries (pixeldrop.idempotency)
class IdempotencyKeyReused(PixeldropError):
    """The Idempotency-Key was first used with another request (body, path or format)."""


class IdempotentRequestInProgress(PixeldropError):
    """The first request with this Idempotency-Key is still being answered."""


class IdempotencyKeyTakenOver(ServerBusy):
    """This request ran so long that its Idempotency-Key counted as abandoned and another request
    took it: its answer cannot be stored, so it charged nothing (a 503, like any passing cause)."""


# Sign-in and payments
class InvalidCredentials(PixeldropError):
    """Unknown email or wrong password: the caller is told the same either way."""


class PaymentsDisabled(PixeldropError):
    """The operator has not connected a payment provider."""


class InvalidWebhook(PixeldropError):
    """A payment provider's webhook whose signature or body does not verify."""


class PaymentProviderError(PixeldropError):
    """The payment provider could not be reached or refused the request."""


# Mail
class MailFailed(PixeldropError):
    """The SMTP server could not be reached, refused the message, or would need a password sent in clear."""
