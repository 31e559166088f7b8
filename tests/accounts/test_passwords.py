"""Passwords: argon2id hashes, one error for every failed sign-in, stamps that end old sessions."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from pixeldrop import accounts
from pixeldrop.accounts import passwords
from pixeldrop.errors import AccountExists, AccountNotFound, InvalidCredentials, InvalidInput
from pixeldrop.storage import Account

PASSWORD = "correct horse battery"


def stored_hash(db, email: str) -> str | None:
    with db.session() as session:
        return session.query(Account.password_hash).filter_by(email=email).scalar()


def test_sign_up_makes_an_account_with_a_hash_and_the_free_credits(sqlite_db):
    signed_in = passwords.sign_up(sqlite_db, "Ada@Example.com", PASSWORD, free_credits=100)
    assert signed_in.account.email == "ada@example.com" and signed_in.account.credits == 100
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
    signed_in = passwords.authenticate(sqlite_db, " ADA@example.com", PASSWORD)
    assert signed_in.account.id == made.account.id and signed_in.stamp == made.stamp


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


def test_set_password_replaces_the_hash_and_the_stamp(sqlite_db):
    accounts.create_account(sqlite_db, "cli-made@example.com", 10)
    passwords.set_password(sqlite_db, "cli-made@example.com", PASSWORD)
    first = passwords.authenticate(sqlite_db, "cli-made@example.com", PASSWORD)
    assert passwords.session_account(sqlite_db, first.account.id, first.stamp) == first.account
    passwords.set_password(sqlite_db, "cli-made@example.com", "another password")
    assert passwords.session_account(sqlite_db, first.account.id, first.stamp) is None
    with pytest.raises(InvalidCredentials):
        passwords.authenticate(sqlite_db, "cli-made@example.com", PASSWORD)
    with pytest.raises(AccountNotFound):
        passwords.set_password(sqlite_db, "nobody@example.com", PASSWORD)


def test_session_account_refuses_wrong_stamps_and_missing_accounts(sqlite_db):
    made = passwords.sign_up(sqlite_db, "ada@example.com", PASSWORD, free_credits=100)
    assert passwords.session_account(sqlite_db, made.account.id, "0" * 32) is None
    assert passwords.session_account(sqlite_db, made.account.id + 1, made.stamp) is None


def test_hashes_made_with_old_parameters_are_upgraded_at_sign_in(sqlite_db, monkeypatch):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", weak)
    made = passwords.sign_up(sqlite_db, "ada@example.com", PASSWORD, free_credits=100)
    monkeypatch.undo()
    signed_in = passwords.authenticate(sqlite_db, "ada@example.com", PASSWORD)
    assert "m=65536" in stored_hash(sqlite_db, "ada@example.com")
    assert signed_in.stamp != made.stamp
    assert passwords.session_account(sqlite_db, made.account.id, signed_in.stamp) is not None
