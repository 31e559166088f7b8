"""What the account page shows of an account's history, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from sqlalchemy import update

from pixeldrop import accounts
from pixeldrop.accounts import credits, usage
from pixeldrop.accounts.outcomes import Outcome
from pixeldrop.errors import RateLimited
from pixeldrop.storage import ImageRequest


def charge(db, account_id: int, key_id: int | None, at: datetime | None = None) -> int:
    reservation = credits.reserve(db, account_id, key_id, 2)
    assert credits.settle(db, reservation)
    if at is not None:  # back-date it, as if it had been made then
        with db.session() as session:
            session.execute(update(ImageRequest).where(ImageRequest.id == reservation.request_id)
                            .values(created_at=at))
    return reservation.request_id


def test_credits_spent_per_day_counts_charged_images_per_utc_day(db):
    account = accounts.create_account(db, "ada@example.com", 100)
    today = date(2026, 3, 10)
    late = datetime(2026, 3, 9, 23, 59, 30, tzinfo=UTC)
    charge(db, account.id, None, late)
    charge(db, account.id, None, late + timedelta(seconds=45))  # 00:00:15 the next day
    charge(db, account.id, None, datetime(2026, 3, 10, 12, 0, tzinfo=timezone(timedelta(hours=-5))))  # 17:00 UTC
    charge(db, account.id, None, datetime(2026, 2, 20, tzinfo=UTC))  # before the window
    refunded = credits.reserve(db, account.id, None, 2)
    credits.refund(db, refunded, Outcome.FAILED)
    credits.reserve(db, account.id, None, 2)  # pending: not spent (yet)
    other = accounts.create_account(db, "bob@example.com", 100)
    charge(db, other.id, None, late)

    days = usage.credits_spent_per_day(db, account.id, days=7, today=today)
    assert [d.day for d in days] == [today - timedelta(days=6 - i) for i in range(7)]
    assert {d.day: d.credits for d in days if d.credits} == {date(2026, 3, 9): 2, date(2026, 3, 10): 4}


def test_recent_requests_name_the_key_and_put_the_newest_first(db):
    account = accounts.create_account(db, "ada@example.com", 6)
    key = accounts.create_key(db, "ada@example.com")
    charge(db, account.id, key.info.id)
    charge(db, account.id, None)
    credits.record_refusal(db, account.id, key.info.id, RateLimited("Too many requests.", retry_after=3, limit=5))
    credits.reserve(db, account.id, key.info.id, 2)  # pending: no outcome yet
    rows = usage.recent_requests(db, account.id)
    assert [(r.key_prefix, r.state, r.outcome, r.credits) for r in rows] == [
        (key.info.prefix, "pending", None, 2), (key.info.prefix, "refused", Outcome.RATE_LIMITED, 0),
        (None, "charged", Outcome.CHARGED, 2), (key.info.prefix, "charged", Outcome.CHARGED, 2),
    ]
    assert all(r.created_at.tzinfo is not None for r in rows)
    assert len(usage.recent_requests(db, account.id, limit=2)) == 2


def test_ledger_lists_every_change_newest_first(db):
    account = accounts.create_account(db, "ada@example.com", 10)
    charge(db, account.id, None)
    credits.add_credits(db, account.id, 500, "purchase", note="Stripe Checkout cs_1", external_ref="evt_1")
    rows = usage.ledger(db, account.id)
    assert [(r.reason, r.delta, r.balance_after) for r in rows] == [
        ("purchase", 500, 508), ("image", -2, 8), ("free", 10, 10),
    ]
    assert rows[0].note == "Stripe Checkout cs_1"
