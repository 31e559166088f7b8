"""API keys: made from a secure random source, shown once, stored only as a hash.

A key looks like `pd_1a2b3c4d_<43 url-safe characters>`. Its first 11 characters, the prefix,
are stored in clear to find it and to show it in lists; the whole key is stored as SHA-256
(keys carry 256 random bits, so a slow password hash would add nothing) and compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from pixeldrop.errors import InvalidApiKey, InvalidInput, KeyNotFound
from pixeldrop.storage import ApiKey, Database, changed_rows, utcnow

from .accounts import get_account

PREFIX_LENGTH = 11  # "pd_" + 8 hex characters
PREFIX_SHAPE = re.compile(r"pd_[0-9a-f]{8}")


@dataclass(frozen=True)
class KeyInfo:
    id: int
    account_id: int
    prefix: str
    name: str
    rate_limit_per_minute: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewKey:
    key: str  # the only time the full key exists outside the caller's hands
    info: KeyInfo


def token_hash(token: str) -> str:
    """How every secret token is kept (API keys, browser sessions, reset links): its SHA-256 in
    hex. The token itself is never stored, so a copy of the database lets nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.account_id, row.prefix, row.name, row.rate_limit_per_minute,
                   row.created_at, row.last_used_at, row.revoked_at)


def create_key(db: Database, email: str, rate_limit_per_minute: int | None = None, name: str = "") -> NewKey:
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise InvalidInput("The rate limit must be at least 1 request per minute.")
    account = get_account(db, email)
    prefix = f"pd_{secrets.token_hex(4)}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    with db.session() as session:
        row = ApiKey(account_id=account.id, prefix=prefix, key_hash=token_hash(key), name=name.strip()[:100],
                     rate_limit_per_minute=rate_limit_per_minute)
        session.add(row)
        session.flush()
        return NewKey(key, _info(row))


def list_keys(db: Database, account_id: int) -> list[KeyInfo]:
    """The account's keys, oldest first, revoked ones included."""
    with db.session() as session:
        rows = session.scalars(select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id))
        return [_info(row) for row in rows]


def revoke_key(db: Database, key_or_prefix: str) -> tuple[KeyInfo, bool]:
    """The operator's revoke (the CLI): any account's key, by prefix or by the whole key.

    Also returns whether this call revoked it (False: it was revoked already), so that the
    operator is told rather than shown a revocation that happened earlier.
    """
    return _revoke(db, key_or_prefix.strip()[:PREFIX_LENGTH], account_id=None)


def revoke_own_key(db: Database, prefix: str, account_id: int) -> KeyInfo:
    """The account pages' revoke: only the account's own keys, and only by prefix.

    Pages name a key in their URLs, which access logs keep: a whole key there would be a
    secret in the logs, so anything but a prefix is not found rather than cut down to one.
    """
    if not PREFIX_SHAPE.fullmatch(prefix):
        raise KeyNotFound("Keys are revoked by their prefix, such as pd_1a2b3c4d.")
    return _revoke(db, prefix, account_id)[0]


def _revoke(db: Database, prefix: str, account_id: int | None) -> tuple[KeyInfo, bool]:
    """The key, revoked, and whether this call revoked it (only a live key's row is updated)."""
    with db.session() as session:
        query = select(ApiKey).where(ApiKey.prefix == prefix)
        if account_id is not None:
            query = query.where(ApiKey.account_id == account_id)
        row = session.scalar(query)
        if row is None:
            raise KeyNotFound(f"No key with prefix {prefix}.")
        revoked = changed_rows(session, update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None))
                               .values(revoked_at=utcnow())) == 1
        session.refresh(row)
        return _info(row), revoked


def verify_key(db: Database, presented: str) -> KeyInfo:
    """The key's record if `presented` is a live key; InvalidApiKey otherwise."""
    presented = presented.strip()
    with db.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == presented[:PREFIX_LENGTH]))
        # Hash and compare even when nothing matched, so timing says nothing about prefixes.
        expected = row.key_hash if row is not None else token_hash("")
        matches = hmac.compare_digest(token_hash(presented), expected)
        if row is None or not matches:
            raise InvalidApiKey("Invalid API key.")
        if row.revoked_at is not None:
            raise InvalidApiKey("This API key has been revoked.")
        return _info(row)

