"""The credit rules, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pixeldrop import accounts
from pixeldrop.accounts import credits
from pixeldrop.accounts.outcomes import Outcome
from pixeldrop.errors import AccountExists, InvalidInput, OutOfCredits
from pixeldrop.storage import Account, ImageRequest, LedgerEntry


def ledger_sum(db, account_id: int) -> int:
    with db.session() as session:
        return session.scalar(select(func.coalesce(func.sum(LedgerEntry.delta), 0))
                              .where(LedgerEntry.account_id == account_id))


def test_new_account_gets_free_credits_through_the_ledger(db):
    account = accounts.create_account(db, "Alice@Example.com", free_credits=100)
    assert account.email == "alice@example.com"
    assert account.credits == 100
    assert ledger_sum(db, account.id) == 100
    with pytest.raises(AccountExists):
        accounts.create_account(db, "alice@example.com", free_credits=100)
    with pytest.raises(InvalidInput):
        accounts.create_account(db, "not an email", free_credits=100)


def test_reserve_settle_and_refund(db):
    account = accounts.create_account(db, "bob@example.com", free_credits=5)
    first = credits.reserve(db, account.id, None, 2)
    assert first.remaining == 3
    assert credits.settle(db, first)
    assert not credits.settle(db, first), "a settled reservation cannot be settled again"
    assert credits.refund(db, first, Outcome.FAILED) is None, "a settled reservation cannot be refunded"

    second = credits.reserve(db, account.id, None, 2)
    assert second.remaining == 1
    assert credits.refund(db, second, Outcome.FAILED) == 3
    assert credits.refund(db, second, Outcome.FAILED) is None, "refunds happen once"
    assert not credits.settle(db, second), "a refunded reservation cannot be charged"

    assert credits.balance(db, account.id) == 3
    assert ledger_sum(db, account.id) == 3


def test_what_settle_stores_with_the_charge_commits_with_it_or_neither_does(db):
    account = accounts.create_account(db, "also@example.com", free_credits=10)
    reservation = credits.reserve(db, account.id, None, 2)

    def fails(session):
        raise RuntimeError("the answer could not be stored")

    with pytest.raises(RuntimeError):
        credits.settle(db, reservation, also=fails)
    with db.session() as session:
        assert session.scalar(select(ImageRequest.state).where(ImageRequest.id == reservation.request_id)) == "pending"

    seen = []
    assert credits.settle(db, reservation, also=seen.append)
    assert len(seen) == 1, "it ran once, with the charge"
    assert not credits.settle(db, reservation, also=seen.append)
    assert len(seen) == 1, "no charge made, nothing more stored"
    assert credits.balance(db, account.id) == 8 and ledger_sum(db, account.id) == 8


def test_out_of_credits_takes_nothing(db):
    account = accounts.create_account(db, "carol@example.com", free_credits=1)
    with pytest.raises(OutOfCredits) as refused:
        credits.reserve(db, account.id, None, 2)
    assert refused.value.remaining == 1
    assert credits.balance(db, account.id) == 1
    with db.session() as session:
        states = session.scalars(select(ImageRequest.state).where(ImageRequest.account_id == account.id)).all()
    assert states == ["refused"]


def test_concurrent_reservations_never_overdraw(db):
    """12 requests at once with credits for 5: exactly 5 reservations, never a negative balance."""
    account = accounts.create_account(db, "dave@example.com", free_credits=10)
    barrier = threading.Barrier(12)
    results: list[str] = []
    lock = threading.Lock()

    def attempt():
        barrier.wait()
        try:
            credits.reserve(db, account.id, None, 2)
            outcome = "reserved"
        except OutOfCredits:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("reserved") == 5
    assert results.count("refused") == 7
    assert credits.balance(db, account.id) == 0
    assert ledger_sum(db, account.id) == 0


def test_stale_reservations_are_refunded_once(db):
    account = accounts.create_account(db, "erin@example.com", free_credits=10)
    crashed = credits.reserve(db, account.id, None, 2)
    live = credits.reserve(db, account.id, None, 2)
    assert credits.refund_stale(db, timedelta(hours=1)) == 0, "young reservations are left alone"
    # A process died holding `crashed`: age it past the limit, as time would.
    with db.session() as session:
        row = session.get(ImageRequest, crashed.request_id)
        row.created_at = row.created_at - timedelta(hours=2)
    assert credits.refund_stale(db, timedelta(hours=1)) == 1
    assert credits.refund_stale(db, timedelta(hours=1)) == 0
    assert credits.balance(db, account.id) == 8
    assert credits.settle(db, live)
    assert not credits.settle(db, crashed)
    assert ledger_sum(db, account.id) == credits.balance(db, account.id) == 8


def test_external_grants_apply_once(db):
    account = accounts.create_account(db, "frank@example.com", free_credits=0)
    assert credits.add_credits(db, account.id, 500, "purchase", external_ref="evt_1") == 500
    assert credits.add_credits(db, account.id, 500, "purchase", external_ref="evt_1") is None
    assert credits.balance(db, account.id) == 500
    with pytest.raises(InvalidInput):
        credits.add_credits(db, account.id, -5, "operator")


def test_balance_cannot_go_negative_even_by_direct_update(db):
    """The CHECK constraint is the last line of defence behind the conditional UPDATE."""
    from sqlalchemy.exc import IntegrityError

    account = accounts.create_account(db, "gina@example.com", free_credits=1)
    with pytest.raises(IntegrityError):
        with db.session() as session:
            session.get(Account, account.id).credits = -1


def test_the_operator_removes_credits_through_the_ledger_never_below_zero(db):
    account = accounts.create_account(db, "olga@example.com", free_credits=10)
    assert credits.remove_credits(db, account.id, 4, note="test credits") == 6
    with db.session() as session:
        row = session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account.id)
                              .order_by(LedgerEntry.id.desc())).first()
    assert (row.delta, row.balance_after, row.reason, row.note) == (-4, 6, "operator-remove", "test credits")

    with pytest.raises(InvalidInput, match="has 6 credits"):
        credits.remove_credits(db, account.id, 7)
    with pytest.raises(InvalidInput):
        credits.remove_credits(db, account.id, -1)
    assert credits.balance(db, account.id) == 6 == ledger_sum(db, account.id), "a refusal changes nothing"
    assert credits.remove_credits(db, account.id, 6) == 0
