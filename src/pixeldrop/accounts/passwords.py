"""Passwords and sign-in sessions for the account pages.

Passwords are argon2id hashes (argon2-cffi), never the password itself. Accounts made with the
CLI have no password, and cannot sign in, until the operator runs `pixeldrop accounts
set-password`. An unknown email, an account without a password and a wrong password all raise
the same `InvalidCredentials` after the same work (a hash is verified every time), so neither
the answer nor its timing tells which addresses have accounts.

Signing in starts a session: a random token for the browser to hold, of which the database
keeps only the SHA-256 (the token carries 256 random bits; a copy of the table signs nobody
in). A session ends when its browser signs out (its row is deleted), when the account's password
is set anew (all the account's rows are deleted), or `SESSION_LIFETIME` after it began. The rows
live in the database, not in a server's memory, so that every server sharing the database
refuses a session the moment it ends.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pixeldrop.errors import AccountNotFound, InvalidCredentials, InvalidInput
from pixeldrop.storage import Account, BrowserSession, Database, PasswordReset, changed_rows

from . import tokens
from .accounts import AccountInfo, account_info, create_account, normalise_email
from .keys import token_hash

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 would take more; a bound keeps one request's work bounded
INVALID = "Invalid email or password."
SESSION_LIFETIME = timedelta(days=14)

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes).
_hasher = PasswordHasher()


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, and the token of their new session (the only time it exists in clear)."""

    account: AccountInfo
    token: str


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no account, so both paths cost the same."""
    return _hasher.hash("pixeldrop: there is no such account")


def warm_up() -> None:
    """Make the stand-in hash now, so that even the first unknown email costs what others do."""
    _dummy_hash()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"The password must be at most {MAX_LENGTH} characters long.")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def sign_up(db: Database, email: str, password: str, free_credits: int) -> AccountInfo:
    """A new account with a password and its free credits (AccountExists if the email is taken).

    It starts no session: whoever signs up then signs in like anyone else, so that the answer
    to signing up can be the same whether or not the email already had an account.
    """
    return create_account(db, email, free_credits, password_hash=hash_password(password))


def replace_password(session: Session, account: Account, password_hash: str, keep_session: str | None = None) -> None:
    """The account's new password, and the end of what the old one let in, in the caller's
    transaction: its browser sessions (but `keep_session`, the browser making an owner's change)
    and its pending reset links. The operator's set-password, the owner's change and a reset all
    come through here."""
    account.password_hash = password_hash
    ended = delete(BrowserSession).where(BrowserSession.account_id == account.id)
    if keep_session is not None:
        ended = ended.where(BrowserSession.token_hash != token_hash(keep_session))
    session.execute(ended)
    session.execute(delete(PasswordReset).where(PasswordReset.account_id == account.id))


def set_password(db: Database, email: str, password: str) -> AccountInfo:
    """Give an account a (new) password, and end every session it had (the operator's command).

    An account its owner deleted opens again: its keys stay revoked.
    """
    password_hash = hash_password(password)
    address = normalise_email(email)
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.email == address))
        if account is None:
            raise AccountNotFound(f"No account for {address}.")
        replace_password(session, account, password_hash)
        account.deleted_at = None
        session.flush()
        return account_info(account)


def check_password(db: Database, account_id: int, password: str) -> str:
    """The account's hash, if `password` is its password now; InvalidCredentials otherwise (the
    signed-in owner confirming a change: their password, not a session, says it is them)."""
    with db.session() as session:
        stored = session.scalar(select(Account.password_hash).where(Account.id == account_id))
    try:
        _hasher.verify(stored or _dummy_hash(), password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):
        raise InvalidCredentials("The current password is not right.") from None
    if stored is None:
        raise InvalidCredentials("The current password is not right.")
    return stored


def change_password(db: Database, account_id: int, current: str, new: str, keep_session: str) -> None:
    """The owner's change: `current` must be the password now (InvalidCredentials otherwise).

    Every other session of the account ends; the one whose token is `keep_session` (the
    browser making the change) goes on.
    """
    new_hash = hash_password(new)
    stored = check_password(db, account_id, current)
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.id == account_id).with_for_update())
        if account is None or account.password_hash != stored:
            raise InvalidCredentials("The password was changed meanwhile; log in again.")
        replace_password(session, account, new_hash, keep_session)


def authenticate(db: Database, email: str, password: str) -> SignedIn:
    """A new session for the account whose email and password these are, or InvalidCredentials.

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
                select(Account.id, Account.password_hash).where(Account.email == address)
            ).one_or_none()
    stored: str | None = row.password_hash if row is not None and row.password_hash else None
    try:
        _hasher.verify(stored or _dummy_hash(), password[:MAX_LENGTH])
        verified = stored is not None
    except (VerificationError, InvalidHashError):
        verified = False
    if not verified or row is None or stored is None:
        raise InvalidCredentials(INVALID)
    # The operator's argon2 parameters changed since this hash was made: upgrade it now that
    # the password is known.
    upgraded = _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None
    return _start_session(db, row.id, stored, upgraded)


def _start_session(db: Database, account_id: int, verified_hash: str, upgraded_hash: str | None) -> SignedIn:
    """A session for an account whose password is still the one just verified.

    The account's row is locked while that is checked, so a password set at the same moment
    either comes first (and this sign-in fails) or after (and ends this session with the rest).
    Expired sessions of every account are deleted here, which keeps the table small.
    """
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.id == account_id).with_for_update())
        if account is None or account.password_hash != verified_hash:
            raise InvalidCredentials(INVALID)
        if upgraded_hash is not None:
            account.password_hash = upgraded_hash
        token = tokens.issue(session, BrowserSession, account.id, SESSION_LIFETIME)
        session.flush()
        return SignedIn(account_info(account), token)


def session_account(db: Database, token: str) -> AccountInfo | None:
    """The account a session token belongs to, while that session lasts; None otherwise."""
    with db.session() as session:
        account = tokens.account_of(session, BrowserSession, token)
        return None if account is None else account_info(account)


def end_session(db: Database, token: str) -> None:
    """Sign the session out: its token is refused from now on, by every server."""
    with db.session() as session:
        session.execute(delete(BrowserSession).where(BrowserSession.token_hash == token_hash(token)))


def keep_flash(db: Database, token: str, sealed: str) -> None:
    """Keep a message (already sealed by the caller) on the session for its next page."""
    with db.session() as session:
        session.execute(update(BrowserSession).where(BrowserSession.token_hash == token_hash(token))
                        .values(flash=sealed))


def take_flash(db: Database, token: str) -> str | None:
    """The session's message, read and cleared: of two pages asking at once, only one gets it
    (the clearing is conditional on the message read)."""
    hashed = token_hash(token)
    with db.session() as session:
        sealed = session.scalar(select(BrowserSession.flash).where(BrowserSession.token_hash == hashed))
        if sealed is None:
            return None
        taken = changed_rows(session, update(BrowserSession).where(BrowserSession.token_hash == hashed,
                                                                   BrowserSession.flash == sealed)
                             .values(flash=None))
        return sealed if taken == 1 else None
