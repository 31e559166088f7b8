"""The `Idempotency-Key` header on paid POSTs, for any surface: the rules are pixeldrop.idempotency's.

A paid route applies it with one check and one call (api/routes.py's ClipDrop route does):

    key = idempotency_key(request)  # among the route's checks, before anything is paid: 400 if malformed
    ...                             # parse and check the rest of the request
    return await idempotent(request, account_id, key, {"prompt": prompt, "seed": seed, "format": fmt},
                            answer, render_error)

- `asked` (the dict) is what the request asked for, parsed: what makes two requests the same one.
- `answer(keeper)` does the paid work and returns the Response: a plain `Response` with its body
  (not a stream), since the body is stored for replays. It may raise the surface's domain errors.
  It builds its paid answer before the charge and has `keeper.keep(session, response)` store it
  in the transaction that charges (`purchase.on_charge(lambda session: keeper.keep(session, response))`,
  or jobs.store.submit's `also`): charged if and only if stored (pixeldrop.idempotency).
- `render_error(error)` is the surface's own error shape (the ClipDrop API's `error_response`), so
  that a stored 4xx replays exactly as it was first sent. Answers not kept by `keeper` (a 4xx) are
  stored once made; a 5xx, a hang-up or a cancellation releases the key.

Without the header, `idempotent` is `answer(keeper)` with a keeper that keeps nothing: nothing is
stored and nothing changes. With it, a replay is the first answer's status, headers and body, plus
`Idempotent-Replayed: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from pixeldrop import idempotency
from pixeldrop.errors import ClientGone, IdempotencyKeyTakenOver, InvalidRequest, PixeldropError

from .services import Services
from .statuses import status_for

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_CHARS = 255

# For the routes' OpenAPI documents.
OPENAPI_PARAMETER: dict[str, Any] = {
    "name": HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
    "description": "Makes retrying safe: the same key with the same request within 24 hours (by default) "
                   "answers the first answer again (same status and bytes, `Idempotent-Replayed: true`) and "
                   "charges nothing more. The same key with another request: 422; while the first is still "
                   "running: 409. Per account.",
}
OPENAPI_REPLAYED_HEADER: dict[str, Any] = {
    "description": "`true` when this is the stored first answer to a request with the same Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (None without one); InvalidRequest unless 1 to 255 characters."""
    key = request.headers.get(HEADER)
    if key is not None and not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequest(f"The {HEADER} header must be 1 to {MAX_KEY_CHARS} characters long.")
    return key


class Keeper:
    """Stores a paid answer as its key's answer, in the transaction that charges for it."""

    def __init__(self, claim: idempotency.Claim | None):
        self.claim = claim  # None: the request has no key, and nothing is kept
        # Stored in the transaction that charged; read once `answer` has returned (a transaction
        # that failed after storing raised through `answer`).
        self.stored = False

    def keep(self, session: Session, response: Response) -> None:
        """Store `response` in `session`'s transaction; IdempotencyKeyTakenOver (rolling it back,
        charge included) if another request took the key meanwhile."""
        if self.claim is None:
            return
        if not idempotency.complete_within(session, self.claim, _stored(response)):
            raise IdempotencyKeyTakenOver("This request took so long that a later request with its Idempotency-Key "
                                          "took the key over; nothing was charged. Retry with the same key.")
        self.stored = True


async def idempotent(request: Request, account_id: int, key: str | None, asked: Mapping[str, Any],
                     answer: Callable[[Keeper], Awaitable[Response]],
                     render_error: Callable[[PixeldropError], Response]) -> Response:
    """`answer(keeper)`'s Response, run at most once per (account, key); see the module docstring."""
    if key is None:
        return await answer(Keeper(None))
    services = Services.of(request)
    settings = services.settings
    abandoned_after = timedelta(seconds=settings.stale_reservation_seconds)
    found = await run_in_threadpool(idempotency.claim, services.db, account_id, key,
                                    idempotency.fingerprint(request.method, request.url.path, asked),
                                    timedelta(hours=settings.idempotency_hours), abandoned_after)
    if isinstance(found, idempotency.Answer):
        return _replay(found)
    keeper = Keeper(found)
    try:
        response = await answer(keeper)
    except PixeldropError as error:
        if not _kept(error):
            await _to_the_end(idempotency.release, services.db, found)
            raise
        response = render_error(error)
    except BaseException:
        await _to_the_end(idempotency.release, services.db, found)
        raise
    if response.status_code >= 500:
        await _to_the_end(idempotency.release, services.db, found)
    elif not keeper.stored:  # (a paid answer is stored with its charge)
        await _to_the_end(idempotency.complete, services.db, found, _stored(response))
    return response


def _kept(error: PixeldropError) -> bool:
    """Whether an error is the request's answer, to replay: a 4xx; not a 5xx nor a hang-up (499)."""
    return not isinstance(error, ClientGone) and status_for(error) < 500


def _stored(response: Response) -> idempotency.Answer:
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers]
    return idempotency.Answer(response.status_code, headers, bytes(response.body))


def _replay(answer: idempotency.Answer) -> Response:
    replay = Response(content=answer.body, status_code=answer.status)
    replay.raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    replay.raw_headers.append((REPLAYED.lower().encode(), b"true"))
    return replay


async def _to_the_end(call: Callable[..., object], *args: Any) -> None:
    """Store or release in a worker thread that a cancelled request does not stop. If storage fails,
    the answer still goes out: the key stays `running` until it counts as abandoned (logged)."""
    work = asyncio.ensure_future(asyncio.to_thread(call, *args))
    work.add_done_callback(_log_failure)
    with contextlib.suppress(Exception):
        await asyncio.shield(work)


def _log_failure(work: asyncio.Future) -> None:
    if not work.cancelled() and work.exception() is not None:
        log.warning("could not update an idempotency key (%s); it counts as abandoned after the stale age",
                    type(work.exception()).__name__)
