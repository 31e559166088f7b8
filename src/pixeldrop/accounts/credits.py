"""Credits: the only module that changes an account's balance.

The rules, all here:
- every change is one transaction holding a conditional UPDATE of `accounts.credits` and a
  ledger row with the balance after it;
- an image's price is *reserved* before generation (`reserve`: UPDATE ... WHERE credits >= cost,
  so concurrent requests can never overdraw), then either *settled* (`settle`) or given back
  (`refund`); both are conditional on the request still being `pending`, so neither can happen
  twice;
- every request records its outcome in words (accounts/outcomes.py), never an HTTP status:
  `charged` when settled, the caller's reason when refunded, and for a request refused before
  any credit moved (`record_refusal`, and `reserve`'s `out_of_credits`) the outcome of the
  domain error that refused it;
- a reservation left `pending` by a crashed process is refunded by `refund_stale`, which every
  server runs at start-up and then periodically, skipping the reservations it is serving itself
  and those a job owns (`Job.OWNS_RESERVATION`: queued, running or succeeded): a job waits in the
  database as long as it must, and pixeldrop.jobs settles its reservation when it succeeds (or,
  if its process died right then, at its next sweep); a failed or canceled job's reservation is
  refunded by pixeldrop.jobs, or here if its process died first;
- the operator adds credits with `add_credits` (reason "operator") and takes them away with
  `remove_credits` (reason "operator-remove"): all of the amount or nothing, never below zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pixeldrop.errors import AccountNotFound, InvalidInput, OutOfCredits, PixeldropError
from pixeldrop.storage import Account, ApiKey, Database, ImageRequest, Job, LedgerEntry, changed_rows, utcnow

from .outcomes import Outcome, refusal_outcome

PENDING, CHARGED, REFUNDED, REFUSED = "pending", "charged", "refunded", "refused"


@dataclass(frozen=True)
class Reservation:
    request_id: int
    account_id: int
    amount: int
    remaining: int  # balance right after the reservation


def _change_balance(session: Session, account_id: int, delta: int) -> int | None:
    """Add `delta` (may be negative) unless the balance would go below zero.

    Returns the new balance, or None when the account is missing or cannot pay.
    """
    statement = (
        update(Account)
        .where(Account.id == account_id)
        .values(credits=Account.credits + delta)
        .returning(Account.credits)
    )
    if delta < 0:
        statement = statement.where(Account.credits >= -delta)
    return session.execute(statement).scalar_one_or_none()


def _ledger(session: Session, account_id: int, delta: int, balance: int, reason: str, **extra) -> None:
    session.add(LedgerEntry(account_id=account_id, delta=delta, balance_after=balance, reason=reason, **extra))


def _balance(session: Session, account_id: int) -> int:
    """The account's credits now, inside the caller's transaction, or AccountNotFound."""
    credits = session.scalar(select(Account.credits).where(Account.id == account_id))
    if credits is None:
        raise AccountNotFound("No such account.")
    return credits


def balance(db: Database, account_id: int) -> int:
    with db.session() as session:
        return _balance(session, account_id)


def grant(
    session: Session, account_id: int, amount: int, reason: str, note: str = "", external_ref: str | None = None
) -> int:
    """Add credits inside the caller's transaction (account creation, operator, payments)."""
    if amount <= 0:
        raise InvalidInput("The number of credits to add must be positive.")
    new_balance = _change_balance(session, account_id, amount)
    if new_balance is None:
        raise AccountNotFound("No such account.")
    _ledger(session, account_id, amount, new_balance, reason, note=note, external_ref=external_ref)
    return new_balance


def add_credits(db: Database, account_id: int, amount: int, reason: str, note: str = "",
                external_ref: str | None = None) -> int | None:
    """Add credits in a transaction of their own.

    With `external_ref` (a payment event id) the grant happens at most once: a replay returns
    None and changes nothing, even when two replays race (the ledger's unique constraint).
    """
    try:
        with db.session() as session:
            if external_ref and session.scalar(select(LedgerEntry.id).where(LedgerEntry.external_ref == external_ref)):
                return None
            return grant(session, account_id, amount, reason, note, external_ref)
    except IntegrityError:
        if external_ref:
            return None
        raise


def remove_credits(db: Database, account_id: int, amount: int, note: str = "") -> int:
    """Take `amount` credits away in a transaction of their own; returns the new balance.

    The balance never goes below zero: an account holding fewer credits loses none, and the
    error says how many it has.
    """
    if amount <= 0:
        raise InvalidInput("The number of credits to remove must be positive.")
    with db.session() as session:
        new_balance = _change_balance(session, account_id, -amount)
        if new_balance is None:
            current = _balance(session, account_id)
            raise InvalidInput(f"The account has {current} credits: {amount} cannot be removed (the balance "
                               "may not go below 0).")
        _ledger(session, account_id, -amount, new_balance, "operator-remove", note=note)
        return new_balance


def reserve(db: Database, account_id: int, api_key_id: int | None, amount: int,
            prompt: str | None = None) -> Reservation:
    """Take `amount` credits for one image, or raise OutOfCredits and take nothing.

    `prompt` is kept on the request for its account's own usage page; None stores none.
    """
    with db.session() as session:
        new_balance = _change_balance(session, account_id, -amount)
        if new_balance is not None:
            request = ImageRequest(account_id=account_id, api_key_id=api_key_id, state=PENDING, credits=amount,
                                   prompt=prompt)
            session.add(request)
            session.flush()
            _ledger(session, account_id, -amount, new_balance, "image", request_id=request.id)
            if api_key_id is not None:
                session.execute(update(ApiKey).where(ApiKey.id == api_key_id).values(last_used_at=utcnow()))
            return Reservation(request.id, account_id, amount, new_balance)
        current = _balance(session, account_id)
        session.add(ImageRequest(account_id=account_id, api_key_id=api_key_id, state=REFUSED,
                                 outcome=Outcome.OUT_OF_CREDITS, credits=0, finished_at=utcnow(), prompt=prompt))
    raise OutOfCredits("Your account has no remaining credits.", remaining=current)


def settle(db: Database, reservation: Reservation, also: Callable[[Session], None] | None = None) -> bool:
    """The image was delivered: the reservation becomes a charge. False if it was refunded.

    `also(session)` runs in the same transaction once the charge is made (an Idempotency-Key's
    stored answer): both commit, or, should it raise, neither does.
    """
    with db.session() as session:
        settled = changed_rows(session, update(ImageRequest)
                               .where(ImageRequest.id == reservation.request_id, ImageRequest.state == PENDING)
                               .values(state=CHARGED, outcome=Outcome.CHARGED, finished_at=utcnow())) == 1
        if settled and also is not None:
            also(session)
        return settled


def refund(db: Database, reservation: Reservation, outcome: Outcome) -> int | None:
    """Give a reservation back, the request having ended as `outcome` (failed, busy, abandoned,
    canceled). Returns the new balance, None if already done."""
    with db.session() as session:
        return refund_within(session, reservation, outcome)


def refund_within(session: Session, reservation: Reservation, outcome: Outcome) -> int | None:
    """`refund` inside the caller's transaction (closing an account refunds its queued jobs in it)."""
    return _refund(session, reservation.request_id, reservation.account_id, reservation.amount, outcome)


def _refund(session: Session, request_id: int, account_id: int, amount: int, outcome: Outcome) -> int | None:
    done = changed_rows(session, update(ImageRequest)
                        .where(ImageRequest.id == request_id, ImageRequest.state == PENDING)
                        .values(state=REFUNDED, outcome=outcome, credits=0, finished_at=utcnow()))
    if done != 1:
        return None
    new_balance = _change_balance(session, account_id, amount)
    if new_balance is None:
        raise AccountNotFound("No such account.")  # impossible while a reservation of it exists
    _ledger(session, account_id, amount, new_balance, "refund", request_id=request_id)
    return new_balance


def refund_stale(db: Database, older_than: timedelta, live: frozenset[int] = frozenset()) -> int:
    """Refund reservations whose process died mid-generation, except the caller's `live` ones
    and those a job owns (queued, running, or succeeded and about to be settled).

    Returns how many were refunded.
    """
    cutoff: datetime = utcnow() - older_than
    owned_by_a_job = (select(Job.id).where(Job.request_id == ImageRequest.id, Job.status.in_(Job.OWNS_RESERVATION))
                      .exists())
    with db.session() as session:
        stale = session.execute(
            select(ImageRequest.id, ImageRequest.account_id, ImageRequest.credits)
            .where(ImageRequest.state == PENDING, ImageRequest.created_at < cutoff, ~owned_by_a_job)
        ).all()
        return sum(_refund(session, rid, aid, amount, Outcome.FAILED) is not None
                   for rid, aid, amount in stale if rid not in live)


def record_refusal(db: Database, account_id: int, api_key_id: int | None, error: PixeldropError) -> None:
    """Note a request refused by `error` before any reservation (rate limited, invalid, queue
    full...), with the error's outcome: it costs nothing."""
    with db.session() as session:
        session.add(ImageRequest(account_id=account_id, api_key_id=api_key_id, state=REFUSED,
                                 outcome=refusal_outcome(error), credits=0, finished_at=utcnow()))
