"""Fixtures for the jobs domain: accounts, a model that answers at once, and a helper to run the
job runner's asyncio code from a test."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select

from pixeldrop import accounts
from pixeldrop.storage import ImageRequest, LedgerEntry

KEEP = timedelta(hours=24)
PRICE = 2


class InstantGenerator:
    """A model that paints each image one colour, from its seed: instant, and never the same twice."""

    steps = 3

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompts, seeds, progress=None):
        self.prompts.extend(prompts)
        return [Image.new("RGB", (512, 512), (seed % 256, (seed >> 8) % 256, 7)) for seed in seeds]

    def describe(self):
        return {"model": "instant", "num_inference_steps": self.steps}


@dataclass(frozen=True)
class Payer:
    account_id: int
    key_id: int
    email: str


def new_payer(db, email: str = "payer@example.com", credits: int = 10) -> Payer:
    account = accounts.create_account(db, email, free_credits=credits)
    key = accounts.create_key(db, email).info
    return Payer(account.id, key.id, email)


@pytest.fixture
def payer(db) -> Payer:
    return new_payer(db)


def ledger(db, account_id: int) -> list[tuple[str, int]]:
    with db.session() as session:
        return [tuple(row) for row in session.execute(
            select(LedgerEntry.reason, LedgerEntry.delta).where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id))]


def request_states(db, account_id: int) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(ImageRequest.state).where(ImageRequest.account_id == account_id)
                                    .order_by(ImageRequest.id)))


def request_outcomes(db, account_id: int) -> list[str | None]:
    """How each of the account's requests ended, in words (None: pending), oldest first."""
    with db.session() as session:
        return list(session.scalars(select(ImageRequest.outcome).where(ImageRequest.account_id == account_id)
                                    .order_by(ImageRequest.id)))
