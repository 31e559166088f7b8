"""Stored images (the OpenAI route's URLs): the same account only, until they expire, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pixeldrop import accounts, images_store
from pixeldrop.errors import ImageNotFound
from pixeldrop.storage import StoredImage


def test_an_image_is_read_back_by_its_account_only_until_it_expires(db):
    owner = accounts.create_account(db, "owner@example.com", free_credits=0).id
    stranger = accounts.create_account(db, "stranger@example.com", free_credits=0).id
    kept = images_store.store(db, owner, "image/png", [b"first", b"second"], timedelta(minutes=60))
    gone = images_store.store(db, owner, "image/webp", [b"old"], timedelta(seconds=-1))

    assert len(set(kept)) == 2 and all(len(image_id) >= 32 for image_id in kept)
    assert [images_store.fetch(db, image_id, owner).data for image_id in kept] == [b"first", b"second"]
    assert images_store.fetch(db, kept[0], owner).media_type == "image/png"
    for image_id, account_id in [(kept[0], stranger), (gone[0], owner), ("no-such-image", owner)]:
        with pytest.raises(ImageNotFound):
            images_store.fetch(db, image_id, account_id)

    assert images_store.delete_expired(db) == 1
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(StoredImage)) == 2
    assert images_store.delete_expired(db) == 0
