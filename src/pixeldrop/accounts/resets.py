"""Password resets by e-mail: single-use links that expire.

`start` makes a token for a live account's address (tokens.py: 256 random bits, of which the
database keeps only the SHA-256, like sessions' tokens) valid for `LIFETIME`, for the caller to mail; an address with no
account, or a deleted one, gets None, and the caller answers the same either way. `finish`
checks the token, sets the new password, and in the same transaction deletes every reset token
of the account (the link works once; older links stop working too) and every browser session
of it (whoever knew the old password is signed out). An unknown, used or expired token is one
InvalidInput.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from pixeldrop.errors import InvalidInput
from pixeldrop.storage import Account, Database, PasswordReset

from . import tokens
from .accounts import AccountInfo, account_info, normalise_email
from .passwords import hash_password, replace_password

LIFETIME = timedelta(hours=1)
INVALID = "This link has expired or was already used. Ask for a new one."


def live_account(db: Database, email: str) -> AccountInfo | None:
    """The account with this address, unless there is none, it is no address, or it was deleted."""
    try:
        address = normalise_email(email)
    except InvalidInput:
        return None
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.email == address, Account.deleted_at.is_(None)))
        return None if account is None else account_info(account)


def start(db: Database, email: str) -> tuple[AccountInfo, str] | None:
    """A new reset token for the address's account, and the account; None when there is no live account."""
    account = live_account(db, email)
    if account is None:
        return None
    with db.session() as session:
        token = tokens.issue(session, PasswordReset, account.id, LIFETIME)
    return account, token


def check(db: Database, token: str) -> AccountInfo:
    """The account a live token resets (to show the form), or InvalidInput."""
    with db.session() as session:
        account = tokens.account_of(session, PasswordReset, token)
        if account is None:
            raise InvalidInput(INVALID)
        return account_info(account)


def finish(db: Database, token: str, password: str) -> AccountInfo:
    """Set the password through a live token; the token, the account's other tokens and its sessions end."""
    password_hash = hash_password(password)
    with db.session() as session:
        reset = session.scalar(select(PasswordReset).where(tokens.live(PasswordReset, token)).with_for_update())
        if reset is None:
            raise InvalidInput(INVALID)
        account = session.scalar(select(Account).where(Account.id == reset.account_id,
                                                       Account.deleted_at.is_(None)).with_for_update())
        if account is None:
            raise InvalidInput(INVALID)
        replace_password(session, account, password_hash)
        session.flush()
        return account_info(account)

