"""The playground's history: each account's last images, for its owner only.

`add` keeps an image and deletes the account's older ones beyond `KEEP`, in one transaction, so
that the table holds at most `KEEP` images per account. Images are read back only together with
their account's id: another account's image is not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from pixeldrop.storage import Database, PlaygroundImage

KEEP = 12


@dataclass(frozen=True)
class GalleryImage:
    id: int
    prompt: str | None  # None when prompts are not stored
    seed: int | None
    media_type: str
    created_at: datetime


def add(db: Database, account_id: int, media_type: str, data: bytes, prompt: str | None = None,
        seed: int | None = None) -> int:
    """Keep an image; returns its id."""
    with db.session() as session:
        row = PlaygroundImage(account_id=account_id, media_type=media_type, data=data, prompt=prompt, seed=seed)
        session.add(row)
        session.flush()
        kept = select(PlaygroundImage.id).where(PlaygroundImage.account_id == account_id) \
            .order_by(PlaygroundImage.id.desc()).limit(KEEP).scalar_subquery()
        session.execute(delete(PlaygroundImage).where(PlaygroundImage.account_id == account_id,
                                                      PlaygroundImage.id.not_in(kept)))
        return row.id


def recent(db: Database, account_id: int) -> list[GalleryImage]:
    """The account's images, newest first."""
    with db.session() as session:
        rows = session.execute(
            select(PlaygroundImage.id, PlaygroundImage.prompt, PlaygroundImage.seed, PlaygroundImage.media_type,
                   PlaygroundImage.created_at)
            .where(PlaygroundImage.account_id == account_id).order_by(PlaygroundImage.id.desc())
        ).all()
    return [GalleryImage(*row) for row in rows]


def image(db: Database, account_id: int, image_id: int) -> tuple[str, bytes] | None:
    """An image's media type and bytes, if it is the account's; None otherwise."""
    with db.session() as session:
        row = session.execute(select(PlaygroundImage.media_type, PlaygroundImage.data)
                              .where(PlaygroundImage.id == image_id, PlaygroundImage.account_id == account_id)
                              ).one_or_none()
    return None if row is None else (row.media_type, bytes(row.data))
