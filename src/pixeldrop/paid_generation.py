"""One paid image: reserve credits, generate, then settle or refund. Used by the API and the
playground alike, so both charge by the same rules.

Whatever happens between the reservation and the answer (the model raises, the queue is full,
the request task is cancelled because the server shuts down), the `finally` block refunds
unless the image was settled. A process killed outright leaves a `pending` reservation that
`credits.refund_stale` gives back later.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from PIL import Image

from pixeldrop.accounts import credits
from pixeldrop.errors import GenerationFailed, PixeldropError, QueueFull
from pixeldrop.generation import GenerationWorker
from pixeldrop.storage import Database


@dataclass(frozen=True)
class PaidImage:
    image: Image.Image
    charged: int
    remaining: int
    request_id: int


async def generate_paid(
    db: Database, worker: GenerationWorker, account_id: int, api_key_id: int | None, prompt: str, cost: int,
    finish=None,
) -> PaidImage:
    """Make one image at `cost` credits.

    `finish(image)` runs before settling (the API encodes the image there), so a failure to
    deliver is refunded too; exceptions carry their own HTTP meaning.
    """
    reservation = await asyncio.to_thread(credits.reserve, db, account_id, api_key_id, cost)
    settled = False
    status = 500
    try:
        try:
            image = await worker.generate(prompt, secrets.randbits(31))
        except QueueFull:
            status = 503
            raise
        if finish is not None:
            await finish(image)
        if not await asyncio.to_thread(credits.settle, db, reservation):
            raise GenerationFailed("The reservation for this image expired; nothing was charged.")
        settled = True
        return PaidImage(image, cost, reservation.remaining, reservation.request_id)
    except PixeldropError:
        raise
    except Exception as error:
        raise GenerationFailed(f"Image generation failed: {type(error).__name__}") from error
    finally:
        if not settled:
            # Not awaited in a thread: this must run even when the task is being cancelled.
            credits.refund(db, reservation, status)
