"""Passwords for the account pages: argon2id hashes (argon2-cffi), never the password itself.

Accounts made with the CLI have no password, and cannot sign in, until the operator runs
`pixeldrop accounts set-password`. An unknown email, an account without a password and a wrong
password all raise the same `InvalidCredentials` after the same work (a hash is verified every
time), so neither the answer nor its timing tells which addresses have accounts.

A signed-in browser holds the account id and a *stamp* of the password hash. Setting a new
password changes the stamp, which signs out every browser that signed in with the old one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update

from pixeldrop.errors import AccountNotFound, InvalidCredentials, InvalidInput
from pixeldrop.storage import Account, Database

from .accounts import AccountInfo, create_account, normalise_email

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 would take more; a bound keeps one request's work bounded
INVALID = "Invalid email or password."

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes).
_hasher = PasswordHasher()


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, and the stamp their session must carry to stay valid."""

    account: AccountInfo
    stamp: str


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no account, so both paths cost the same."""
    return _hasher.hash("pixeldrop: there is no such account")


def warm_up() -> None:
    """Make the stand-in hash now, so that even the first unknown email costs what others do."""
    _dummy_hash()


def _stamp(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:32]


def check_password_rules(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"The password must be at most {MAX_LENGTH} characters long.")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def sign_up(db: Database, email: str, password: str, free_credits: int) -> SignedIn:
    """A new account with a password and its free credits (AccountExists if the email is taken)."""
    password_hash = hash_password(password)
    account = create_account(db, email, free_credits, password_hash=password_hash)
    return SignedIn(account, _stamp(password_hash))


def set_password(db: Database, email: str, password: str) -> AccountInfo:
    """Give an account a (new) password; browsers signed in with the old one are signed out."""
    password_hash = hash_password(password)
    address = normalise_email(email)
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.email == address))
        if account is None:
            raise AccountNotFound(f"No account for {address}.")
        account.password_hash = password_hash
        session.flush()
        return AccountInfo(account.id, account.email, account.credits, account.created_at)


def authenticate(db: Database, email: str, password: str) -> SignedIn:
    """The account whose email and password these are, or InvalidCredentials.

    The hash is read in one short transaction and verified outside it: argon2 takes tens of
    milliseconds, which SQLite's write lock must not be held for.
    """
    try:
        address = normalise_email(email)
    except InvalidInput:
        address = None
    row = None
    if address is not None and len(password) <= MAX_LENGTH:
        with db.session() as session:
            row = session.execute(
                select(Account.id, Account.email, Account.credits, Account.created_at, Account.password_hash)
                .where(Account.email == address)
            ).one_or_none()
    stored = row.password_hash if row is not None and row.password_hash else None
    try:
        _hasher.verify(stored or _dummy_hash(), password[:MAX_LENGTH])
        verified = stored is not None
    except (VerificationError, InvalidHashError):
        verified = False
    if not verified:
        raise InvalidCredentials(INVALID)
    if _hasher.check_needs_rehash(stored):
        # The operator's argon2 parameters changed since this hash was made: upgrade it now
        # that the password is known. The stamp changes with it, so the new one is returned.
        stored = _hasher.hash(password)
        with db.session() as session:
            session.execute(update(Account).where(Account.id == row.id).values(password_hash=stored))
    return SignedIn(AccountInfo(row.id, row.email, row.credits, row.created_at), _stamp(stored))


def session_account(db: Database, account_id: int, stamp: str) -> AccountInfo | None:
    """The account a session names, if its password is still the one the session signed in with."""
    with db.session() as session:
        account = session.get(Account, account_id)
        if account is None or not account.password_hash:
            return None
        if not hmac.compare_digest(_stamp(account.password_hash), stamp):
            return None
        return AccountInfo(account.id, account.email, account.credits, account.created_at)
