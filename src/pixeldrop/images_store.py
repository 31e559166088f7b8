"""Images kept for a while so that a client can fetch them by URL (the OpenAI route's
`response_format: url`).

The rules, all here:
- an image is stored under a random id (192 bits from `secrets`), for one account, until it
  expires; the caller stores it before the request is charged, so an image that could not be
  stored is never paid for;
- it is read back only by the same account and only before it expires: an unknown id, another
  account's image and an expired one are the same ImageNotFound, so ids cannot be probed;
- expired rows are deleted by `delete_expired`, which the app's sweep runs periodically; until
  then they are already unreadable.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from pixeldrop.errors import ImageNotFound
from pixeldrop.storage import Database, StoredImage, changed_rows, utcnow


@dataclass(frozen=True)
class ImageFile:
    media_type: str
    data: bytes


def store(db: Database, account_id: int, media_type: str, images: Sequence[bytes], lifetime: timedelta) -> list[str]:
    """Keep `images` for `account_id` for `lifetime`, in one transaction; their ids, in order."""
    now = utcnow()
    ids = [secrets.token_urlsafe(24) for _ in images]
    with db.session() as session:
        session.add_all(StoredImage(id=image_id, account_id=account_id, media_type=media_type, data=data,
                                    created_at=now, expires_at=now + lifetime)
                        for image_id, data in zip(ids, images, strict=True))
    return ids


def fetch(db: Database, image_id: str, account_id: int) -> ImageFile:
    """The account's image by its id, or ImageNotFound (unknown, another account's, or expired)."""
    with db.session() as session:
        found = session.execute(
            select(StoredImage.media_type, StoredImage.data)
            .where(StoredImage.id == image_id, StoredImage.account_id == account_id, StoredImage.expires_at > utcnow())
        ).one_or_none()
    if found is None:
        raise ImageNotFound("No such image: it never existed, belongs to another account, or has expired.")
    return ImageFile(found.media_type, found.data)


def delete_expired(db: Database) -> int:
    """Delete every expired image; returns how many."""
    with db.session() as session:
        return changed_rows(session, delete(StoredImage).where(StoredImage.expires_at <= utcnow()))

