"""Fixtures for the jobs domain: accounts, a model that answers at once, and a helper to run the
job runner's asyncio code from a test. The books' helpers (tests/books.py) are imported here for
the jobs tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PIL import Image

from ..books import Payer, ledger, new_payer, request_outcomes, request_states

__all__ = ["KEEP", "PRICE", "InstantGenerator", "Payer", "ledger", "new_payer", "payer", "request_outcomes",
           "request_states"]

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


@pytest.fixture
def payer(db) -> Payer:
    return new_payer(db, credits=10)


