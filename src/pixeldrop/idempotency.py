"""Idempotency keys: a paid request sent again with the same key is answered once, and paid once.

A client that did not get its answer (a timeout, a dropped connection) cannot tell whether its
image was made and charged. Sending the request again with the same `Idempotency-Key` is safe:
the first answer comes back, and nothing is charged twice. The rules, for every paid route
(http/idempotency.py is how a route applies them):

- Keys belong to an account: two accounts may use the same key without meeting.
- A key is *claimed* by INSERTing its row (state `running`). The unique constraint on
  (account_id, key) lets exactly one of two concurrent claims win, on SQLite and PostgreSQL
  alike; the other reads the winner's row. No read-then-write decides who runs.
- A claim carries the request's fingerprint (`fingerprint`: method, path, and what the request
  asked for). The same key with another fingerprint is IdempotencyKeyReused (422), whatever
  the state of the row; the same request while the first is `running` is
  IdempotentRequestInProgress (409); once the row is `done`, its stored answer is replayed.
- What is stored, after Stripe: a request that reached execution (its claim was made, so its
  input was valid) has its answer stored, 4xx included: an account out of credits gets its 402
  again on a retry with the same key (use a new key for a new attempt). Unlike Stripe, an
  answer that is a 5xx is not stored, nor a request whose client hung up or that was cancelled:
  those charged nothing (pixeldrop refunds every image that fails, times out or is abandoned),
  and their cause is passing (a full queue, a deadline, storage), so the key is *released*
  (its row deleted) and a retry runs. Refused before the claim (bad input, rate limit,
  unknown key) means nothing is stored either, as with Stripe.
- A stored answer is replayed for `lifetime` (the `idempotency_hours` setting, 24 h) from the
  first request; after that the key runs again, and `forget_expired` (which every server runs
  periodically, from app.py) deletes the row.
- A `running` row whose process died (kill -9, power loss) would refuse its key forever: once
  older than `abandoned_after` (the stale-reservation age, longer than any live request, as
  the settings check) a claim takes it over.
- Charged if and only if answered: a paid answer (a 200 whose images are charged, a 202 whose
  job and reservation are recorded) is stored by `complete_within` in the very transaction that
  charges (credits.settle) or records the job (jobs.store.submit). Should storing fail, or the
  claim have been taken over meanwhile (the key then belongs to the request that took it:
  IdempotencyKeyTakenOver), that transaction rolls back: nothing is charged, the request ends in
  a 5xx and its claim is released. So a process that dies at any moment leaves either a charged
  request whose answer replays, or a `running` row for a request that charged nothing.
- Answers that charge nothing (a 4xx such as an account out of credits) are stored after they
  are made, by `complete`; one that cannot be stored (storage down) is still delivered, and
  leaves a `running` row that counts as abandoned after `abandoned_after`.

Answers are stored whole (status, headers, body: an image of up to a few hundred KiB) for the
key's lifetime; a client that sends no key stores nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pixeldrop.errors import IdempotencyKeyReused, IdempotentRequestInProgress
from pixeldrop.storage import Database, IdempotencyKey, changed_rows, utcnow

RUNNING, DONE = "running", "done"
# A claim that loses a race retries; after this many rounds the other request is surely running.
CLAIM_ROUNDS = 3


@dataclass(frozen=True)
class Answer:
    """A stored answer, replayed as it was first sent."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The right to answer a key's first request: `complete` it with the answer, or `release` it."""

    row_id: int


def fingerprint(method: str, path: str, request: Mapping[str, Any]) -> str:
    """What makes two requests the same request: method, path, and what the request asked for
    (`request`, JSON-serialisable: the parsed fields and the negotiated format, not the raw body,
    whose multipart boundary differs each time a client sends the same form)."""
    canonical = json.dumps([method.upper(), path, request], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replaceable(abandoned_after: timedelta) -> ColumnElement[bool]:
    """Rows a claim may take over: answers past their lifetime, and claims of dead processes."""
    now = utcnow()
    return or_(and_(IdempotencyKey.state == DONE, IdempotencyKey.expires_at <= now),
               and_(IdempotencyKey.state == RUNNING, IdempotencyKey.created_at <= now - abandoned_after))


def claim(db: Database, account_id: int, key: str, request_fingerprint: str, lifetime: timedelta,
          abandoned_after: timedelta) -> Claim | Answer:
    """Claim `key` for this request, or the stored answer of its first request.

    IdempotencyKeyReused when the key was first used for another request; IdempotentRequestInProgress
    while that first request is still being answered.
    """
    for _ in range(CLAIM_ROUNDS):
        try:
            with db.session() as session:
                session.execute(delete(IdempotencyKey).where(
                    IdempotencyKey.account_id == account_id, IdempotencyKey.key == key, _replaceable(abandoned_after)))
                row = IdempotencyKey(account_id=account_id, key=key, fingerprint=request_fingerprint, state=RUNNING,
                                     expires_at=utcnow() + lifetime)
                session.add(row)
                session.flush()  # the INSERT: a second claim of the key fails here
                return Claim(row.id)
        except IntegrityError:
            pass
        with db.session() as session:
            first = session.execute(
                select(IdempotencyKey.fingerprint, IdempotencyKey.state, IdempotencyKey.status, IdempotencyKey.headers,
                       IdempotencyKey.body, _replaceable(abandoned_after).label("replaceable"))
                .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)).one_or_none()
        if first is None or first.replaceable:
            continue  # released or replaceable since: claim again
        if first.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was already used for a different request; "
                                       "use a new key for a new request.")
        if first.state == RUNNING:
            break
        return Answer(first.status, [(name, value) for name, value in json.loads(first.headers)], first.body)
    raise IdempotentRequestInProgress("A request with this Idempotency-Key is still being answered; "
                                      "retry once it has finished.")


def complete(db: Database, claimed: Claim, answer: Answer) -> bool:
    """Store the answer for replays. False if the claim was taken over meanwhile (not stored)."""
    with db.session() as session:
        return complete_within(session, claimed, answer)


def complete_within(session: Session, claimed: Claim, answer: Answer) -> bool:
    """`complete` inside the caller's transaction: the one that charges for the answer."""
    return changed_rows(session, update(IdempotencyKey)
                        .where(IdempotencyKey.id == claimed.row_id, IdempotencyKey.state == RUNNING)
                        .values(state=DONE, status=answer.status, headers=json.dumps(answer.headers),
                                body=answer.body)) == 1


def release(db: Database, claimed: Claim) -> None:
    """Forget the claim: the request stored nothing, and a retry with the key runs again."""
    with db.session() as session:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claimed.row_id,
                                                     IdempotencyKey.state == RUNNING))


def forget_expired(db: Database, abandoned_after: timedelta) -> int:
    """Delete the rows past their lifetime that no claim would honour any more; returns how many."""
    with db.session() as session:
        return changed_rows(session, delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow(),
                                                                  _replaceable(abandoned_after)))

