"""Accounts: who owns keys and credits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pixeldrop.errors import AccountExists, AccountNotFound, InvalidInput
from pixeldrop.storage import Account, Database

from . import credits


@dataclass(frozen=True)
class AccountInfo:
    id: int
    email: str
    credits: int
    created_at: datetime


def account_info(account: Account) -> AccountInfo:
    return AccountInfo(account.id, account.email, account.credits, account.created_at)


def normalise_email(email: str) -> str:
    """The one form of an address that accounts are stored, found and rate-limited by.

    email-validator's normalisation (NFC; the domain through IDNA, so `ｅxample.com` with a
    fullwidth e is `example.com`), then lower case. Everything that takes an email from outside
    (sign-up, sign-in and its per-email limit, the CLI) goes through this function, so that two
    spellings of one address can never be counted or matched apart.
    """
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise InvalidInput(f"Not a valid email address: {error}") from None


def create_account(db: Database, email: str, free_credits: int, password_hash: str | None = None) -> AccountInfo:
    """A new account with its free credits, granted through the ledger like any credit.

    `password_hash` comes from `passwords.sign_up`, so that an account made on the sign-up page
    never exists, even for a moment, without the password it was made with.
    """
    address = normalise_email(email)
    try:
        with db.session() as session:
            account = Account(email=address, credits=0, password_hash=password_hash)
            session.add(account)
            session.flush()
            if free_credits > 0:
                credits.grant(session, account.id, free_credits, "free", note="free credits for a new account")
            session.refresh(account)
            return account_info(account)
    except IntegrityError:
        raise AccountExists(f"An account for {address} already exists.") from None


def get_account(db: Database, email: str) -> AccountInfo:
    address = normalise_email(email)
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.email == address))
        if account is None:
            raise AccountNotFound(f"No account for {address}.")
        return account_info(account)


def get_account_by_id(db: Database, account_id: int) -> AccountInfo:
    with db.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise AccountNotFound("No such account.")
        return account_info(account)


def count_accounts(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count(Account.id))) or 0
