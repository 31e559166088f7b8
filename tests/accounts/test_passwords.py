"""Passwords: argon2id hashes, one error for every failed sign-in; sessions: rows that signing out,
a new password or their age end."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from pixeldrop import accounts
from pixeldrop.accounts import passwords
from pixeldrop.errors import AccountExists, AccountNotFound, InvalidCredentials, InvalidInput
from pixeldrop.storage import Account, utcnow
from pixeldrop.storage.models import BrowserSession

PASSWORD = "correct horse battery"


def stored_hash(db, email: str) -> str | None:
    with db.session() as session:
        return session.query(Account.password_hash).filter_by(email=email).scalar()


def test_sign_up_makes_an_account_with_a_hash_and_the_free_credits(sqlite_db):
    account = passwords.sign_up(sqlite_db, "Ada@Example.com", PASSWORD, free_credits=100)
    assert account.email == "ada@example.com" and account.credits == 100
    assert stored_hash(sqlite_db, "ada@example.com").startswith("$argon2id$")
    with pytest.raises(AccountExists):
        passwords.sign_up(sqlite_db, "ada@example.com", PASSWORD, free_credits=100)


def test_a_refused_password_makes_no_account(sqlite_db):
    with pytest.raises(InvalidInput, match="at least 8"):
        passwords.sign_up(sqlite_db, "ada@example.com", "1234567", free_credits=100)
    with pytest.raises(InvalidInput, match="at most"):
        passwords.sign_up(sqlite_db, "ada@example.com", "x" * 1025, free_credits=100)
    assert accounts.count_accounts(sqlite_db) == 0


def test_authenticate_accepts_the_password_in_any_email_case(sqlite_db):
    made = passwords.sign_up(sqlite_db, "ada@example.com", PASSWORD, free_credits=100)
    for spelling in (" ADA@example.com", "ada@ｅxample.com"):  # the second with a fullwidth e
        assert passwords.authenticate(sqlite_db, spelling, PASSWORD).account == made


@pytest.mark.parametrize("email, password", [
    ("ada@example.com", "wrong password"),
    ("ada@example.com", PASSWORD.upper()),
    ("nobody@example.com", PASSWORD),
    ("cli-made@example.com", PASSWORD),  # an account without a password yet
    ("not an email", PASSWORD),
    ("ada@example.com", "x" * 5000),
])
def test_every_failed_sign_in_raises_the_same_error(sqlite_db, email, password):
    passwords.sign_up(sqlite_db, "ada@example.com", PASSWORD, free_credits=100)
    accounts.create_account(sqlite_db, "cli-made@example.com", 10)
    with pytest.raises(InvalidCredentials) as raised:
        passwords.authenticate(sqlite_db, email, password)
    assert raised.value.message == "Invalid email or password."


def test_set_password_replaces_the_hash_and_ends_every_session(db):
    accounts.create_account(db, "cli-made@example.com", 10)
    passwords.set_password(db, "cli-made@example.com", PASSWORD)
    first = passwords.authenticate(db, "cli-made@example.com", PASSWORD)
    second = passwords.authenticate(db, "cli-made@example.com", PASSWORD)
    assert passwords.session_account(db, first.token) == first.account
    assert passwords.session_account(db, second.token) == first.account
    passwords.set_password(db, "cli-made@example.com", "another password")
    assert passwords.session_account(db, first.token) is None
    assert passwords.session_account(db, second.token) is None
    with pytest.raises(InvalidCredentials):
        passwords.authenticate(db, "cli-made@example.com", PASSWORD)
    with pytest.raises(AccountNotFound):
        passwords.set_password(db, "nobody@example.com", PASSWORD)


def test_a_session_ends_when_it_is_signed_out_and_only_that_one(db):
    passwords.sign_up(db, "ada@example.com", PASSWORD, free_credits=100)
    laptop = passwords.authenticate(db, "ada@example.com", PASSWORD)
    phone = passwords.authenticate(db, "ada@example.com", PASSWORD)
    assert laptop.token != phone.token
    passwords.end_session(db, laptop.token)
    assert passwords.session_account(db, laptop.token) is None
    assert passwords.session_account(db, phone.token) == phone.account
    passwords.end_session(db, laptop.token)  # twice is harmless
    assert passwords.session_account(db, "not a token") is None


def test_the_database_keeps_only_a_hash_of_each_session_token(db):
    passwords.sign_up(db, "ada@example.com", PASSWORD, free_credits=100)
    signed_in = passwords.authenticate(db, "ada@example.com", PASSWORD)
    with db.session() as session:
        row = session.scalar(select(BrowserSession))
    assert row.token_hash == hashlib.sha256(signed_in.token.encode()).hexdigest()
    assert row.account_id == signed_in.account.id and len(signed_in.token) >= 43


def test_sessions_expire_and_expired_rows_are_cleared_at_the_next_sign_in(db):
    passwords.sign_up(db, "ada@example.com", PASSWORD, free_credits=100)
    old = passwords.authenticate(db, "ada@example.com", PASSWORD)
    with db.session() as session:
        row = session.scalar(select(BrowserSession))
        lifetime = _aware(row.expires_at) - _aware(row.created_at)
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert lifetime == passwords.SESSION_LIFETIME
    assert passwords.session_account(db, old.token) is None
    new = passwords.authenticate(db, "ada@example.com", PASSWORD)
    with db.session() as session:
        hashes = session.scalars(select(BrowserSession.token_hash)).all()
    assert hashes == [hashlib.sha256(new.token.encode()).hexdigest()]


def test_a_password_set_while_a_sign_in_checks_the_old_one_starts_no_session(db, monkeypatch):
    """The race: the old password verifies, then the operator sets a new one before the session
    starts. The sign-in must fail, or its session would outlive the password change."""
    passwords.sign_up(db, "ada@example.com", PASSWORD, free_credits=100)
    real = passwords._hasher

    class SetPasswordMidway:
        def verify(self, stored, password):
            result = real.verify(stored, password)
            monkeypatch.setattr(passwords, "_hasher", real)
            passwords.set_password(db, "ada@example.com", "a password set meanwhile")
            return result

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(passwords, "_hasher", SetPasswordMidway())
    with pytest.raises(InvalidCredentials):
        passwords.authenticate(db, "ada@example.com", PASSWORD)
    with db.session() as session:
        assert session.scalars(select(BrowserSession)).all() == []


def test_hashes_made_with_old_parameters_are_upgraded_at_sign_in(sqlite_db, monkeypatch):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", weak)
    passwords.sign_up(sqlite_db, "ada@example.com", PASSWORD, free_credits=100)
    monkeypatch.undo()
    signed_in = passwords.authenticate(sqlite_db, "ada@example.com", PASSWORD)
    assert "m=65536" in stored_hash(sqlite_db, "ada@example.com")
    assert passwords.session_account(sqlite_db, signed_in.token) == signed_in.account
    assert passwords.authenticate(sqlite_db, "ada@example.com", PASSWORD).account == signed_in.account


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (in UTC); PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
