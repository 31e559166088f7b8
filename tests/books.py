"""The books, as tests read them: a new account with a key, its ledger, its usage rows, and the
check that the balance is what the ledger adds up to."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from pixeldrop import accounts
from pixeldrop.accounts import credits as balances
from pixeldrop.storage import ImageRequest, LedgerEntry


@dataclass(frozen=True)
class Payer:
    """An account and one API key of it."""

    key: str  # the key itself, as a client sends it
    key_id: int
    account_id: int
    email: str


def new_payer(db, email: str = "payer@example.com", credits: int = 100, rate_limit: int | None = None) -> Payer:
    account = accounts.create_account(db, email, free_credits=credits)
    created = accounts.create_key(db, email, rate_limit_per_minute=rate_limit)
    return Payer(created.key, created.info.id, account.id, email)


def ledger(db, account_id: int) -> list[tuple[str, int]]:
    """The account's ledger rows, `(reason, delta)`, oldest first."""
    with db.session() as session:
        return [(reason, delta) for reason, delta in session.execute(
            select(LedgerEntry.reason, LedgerEntry.delta).where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id))]


def _requests(db, account_id: int) -> list[tuple[str, str | None]]:
    """`(state, outcome)` of each of the account's usage rows, oldest first (one read)."""
    with db.session() as session:
        return [(state, outcome) for state, outcome in session.execute(
            select(ImageRequest.state, ImageRequest.outcome).where(ImageRequest.account_id == account_id)
            .order_by(ImageRequest.id))]


def request_states(db, account_id: int) -> list[str]:
    """The state of each of the account's usage rows, oldest first."""
    return [state for state, _ in _requests(db, account_id)]


def request_outcomes(db, account_id: int) -> list[str | None]:
    """How each of the account's requests ended, in words (None: pending), oldest first."""
    return [outcome for _, outcome in _requests(db, account_id)]


def requests_by_state(db, account_id: int) -> dict[str, list[str | None]]:
    """`{state: [outcome, ...]}` of the account's usage rows, oldest first."""
    found: dict[str, list[str | None]] = {}
    for state, outcome in _requests(db, account_id):
        found.setdefault(state, []).append(outcome)
    return found


def assert_books_balance(db, account_id: int) -> None:
    """The balance is what the ledger adds up to, and every charged image is in it once."""
    with db.session() as session:
        total = session.scalar(select(func.sum(LedgerEntry.delta)).where(LedgerEntry.account_id == account_id))
    assert total == balances.balance(db, account_id)
