from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from pixeldrop import accounts
from pixeldrop.accounts import credits
from pixeldrop.accounts.keys import PREFIX_LENGTH, revoke_own_key
from pixeldrop.errors import InvalidApiKey, KeyNotFound
from pixeldrop.storage import ApiKey


def test_keys_are_stored_hashed_and_listed_by_prefix(db):
    accounts.create_account(db, "alice@example.com", free_credits=100)
    new = accounts.create_key(db, "alice@example.com", rate_limit_per_minute=5, name="laptop")
    assert new.key.startswith(new.info.prefix + "_")
    assert len(new.key) > 40
    with db.session() as session:
        row = session.scalar(select(ApiKey))
    assert new.key not in (row.key_hash, row.prefix)
    assert row.key_hash == hashlib.sha256(new.key.encode()).hexdigest()
    listed = accounts.list_keys(db, accounts.get_account(db, "alice@example.com").id)
    assert [(k.prefix, k.name, k.rate_limit_per_minute, k.active) for k in listed] \
        == [(new.info.prefix, "laptop", 5, True)]


def test_verify_rejects_unknown_tampered_and_revoked_keys(db):
    accounts.create_account(db, "bob@example.com", free_credits=100)
    new = accounts.create_key(db, "bob@example.com")
    assert accounts.verify_key(db, new.key).id == new.info.id
    with pytest.raises(InvalidApiKey):
        accounts.verify_key(db, "pd_00000000_nothing")
    with pytest.raises(InvalidApiKey):
        accounts.verify_key(db, new.key[:-1] + ("A" if new.key[-1] != "A" else "B"))
    accounts.revoke_key(db, new.info.prefix)
    with pytest.raises(InvalidApiKey, match="revoked"):
        accounts.verify_key(db, new.key)
    with pytest.raises(KeyNotFound):
        accounts.revoke_key(db, "pd_ffffffff")


def test_revoking_a_key_keeps_the_accounts_credits(db):
    account = accounts.create_account(db, "carol@example.com", free_credits=100)
    old = accounts.create_key(db, "carol@example.com")
    credits.settle(db, credits.reserve(db, account.id, old.info.id, 2))
    accounts.revoke_key(db, old.key)
    new = accounts.create_key(db, "carol@example.com")
    assert accounts.verify_key(db, new.key).account_id == account.id
    assert credits.balance(db, account.id) == 98


def test_revoke_scoped_to_an_account_cannot_touch_others(db):
    dave = accounts.create_account(db, "dave@example.com", free_credits=0)
    mallory = accounts.create_account(db, "mallory@example.com", free_credits=0)
    victim = accounts.create_key(db, "dave@example.com")
    with pytest.raises(KeyNotFound):
        revoke_own_key(db, victim.info.prefix, mallory.id)
    assert accounts.verify_key(db, victim.key).active
    assert not revoke_own_key(db, victim.info.prefix, dave.id).active


def test_an_accounts_own_revoke_takes_a_prefix_never_a_whole_key(db):
    """The pages put what they revoke in a URL, which access logs keep."""
    account = accounts.create_account(db, "erin@example.com", free_credits=0)
    new = accounts.create_key(db, "erin@example.com")
    for named in (new.key, new.key[:12], f" {new.info.prefix}", new.info.prefix.upper()):
        with pytest.raises(KeyNotFound) as refused:
            revoke_own_key(db, named, account.id)
        assert new.key[PREFIX_LENGTH:] not in refused.value.message
    assert accounts.verify_key(db, new.key).active


def test_revoking_a_revoked_key_says_it_was_revoked_already(db):
    accounts.create_account(db, "erin@example.com", free_credits=0)
    new = accounts.create_key(db, "erin@example.com")
    first, revoked_now = accounts.revoke_key(db, new.info.prefix)
    assert revoked_now and not first.active
    again, revoked_again = accounts.revoke_key(db, new.key)
    assert not revoked_again and again.revoked_at == first.revoked_at, "the first revocation stands"
