"""What an account has done: its last requests, credits spent per day, and its credit ledger.

Read-only queries for the account page; each is one short transaction. Days are UTC days. A
request shows how it ended in words (`outcome`, accounts/outcomes.py), as the domain recorded it;
what status a client saw is the HTTP surfaces' business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from pixeldrop.storage import ApiKey, Database, ImageRequest, LedgerEntry, as_utc

from .credits import CHARGED
from .outcomes import Outcome


@dataclass(frozen=True)
class RequestRow:
    created_at: datetime
    key_prefix: str | None  # None: made in the playground, without a key
    state: str
    outcome: Outcome | None  # None while pending
    credits: int
    prompt: str | None  # None: not stored (the operator's choice) or refused before it was read


@dataclass(frozen=True)
class DaySpend:
    day: date
    credits: int


@dataclass(frozen=True)
class LedgerRow:
    created_at: datetime
    delta: int
    balance_after: int
    reason: str
    note: str


def recent_requests(db: Database, account_id: int, limit: int = 20) -> list[RequestRow]:
    """The account's last requests, newest first, with the prefix of the key that made each."""
    with db.session() as session:
        rows = session.execute(
            select(ImageRequest.created_at, ApiKey.prefix, ImageRequest.state, ImageRequest.outcome,
                   ImageRequest.credits, ImageRequest.prompt)
            .outerjoin(ApiKey, ApiKey.id == ImageRequest.api_key_id)
            .where(ImageRequest.account_id == account_id)
            .order_by(ImageRequest.id.desc())
            .limit(limit)
        ).all()
    return [RequestRow(as_utc(created), prefix, state, None if outcome is None else Outcome(outcome), credits, prompt)
            for created, prefix, state, outcome, credits, prompt in rows]


def _utc_day(db: Database, column):
    """A column's UTC calendar day as 'YYYY-MM-DD' text, on either database."""
    if db.dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def credits_spent_per_day(db: Database, account_id: int, days: int = 14, today: date | None = None) -> list[DaySpend]:
    """Credits charged for images on each of the last `days` UTC days, oldest first, zeros included."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    with db.session() as session:
        day = _utc_day(db, ImageRequest.created_at)
        totals: dict[str, int] = dict(session.execute(
            select(day, func.sum(ImageRequest.credits))
            .where(ImageRequest.account_id == account_id, ImageRequest.state == CHARGED,
                   ImageRequest.created_at >= since)
            .group_by(day)
        ).all())
    return [DaySpend(first + timedelta(days=i), int(totals.get((first + timedelta(days=i)).isoformat(), 0) or 0))
            for i in range(days)]


def ledger(db: Database, account_id: int, limit: int = 20) -> list[LedgerRow]:
    """The account's last credit changes, newest first."""
    with db.session() as session:
        rows = session.execute(
            select(LedgerEntry.created_at, LedgerEntry.delta, LedgerEntry.balance_after, LedgerEntry.reason,
                   LedgerEntry.note)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        ).all()
    return [LedgerRow(as_utc(created), delta, balance, reason, note) for created, delta, balance, reason, note in rows]
