"""Secret tokens that stand for an account for a while: browser sessions (passwords.py) and
password-reset links (resets.py), each kind in its own table.

A token carries 256 random bits and exists in clear only in the hands it is given to; its row
keeps its SHA-256 (keys.token_hash), its account and when it expires. Issuing a token deletes
its table's expired rows, which keeps the table small. A token stands for its account while it
has not expired and the account is open; ending one early (signing out, a reset used, a new
password) deletes its row.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.orm import Session

from pixeldrop.storage import Account, BrowserSession, PasswordReset, utcnow

from .keys import token_hash

TokenTable = type[BrowserSession] | type[PasswordReset]


def issue(session: Session, table: TokenTable, account_id: int, lifetime: timedelta) -> str:
    """A new token for the account, valid for `lifetime`, in the caller's transaction."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(table).where(table.expires_at <= now))
    session.add(table(token_hash=token_hash(token), account_id=account_id, created_at=now,
                      expires_at=now + lifetime))
    return token


def live(table: TokenTable, token: str) -> ColumnElement[bool]:
    """The condition on `table` that finds the token's row, while it has not expired."""
    return and_(table.token_hash == token_hash(token), table.expires_at > utcnow())


def account_of(session: Session, table: TokenTable, token: str) -> Account | None:
    """The open account a live token stands for; None otherwise."""
    return session.scalar(select(Account).join(table, table.account_id == Account.id)
                          .where(live(table, token), Account.deleted_at.is_(None)))
