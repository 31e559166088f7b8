"""Paid images: places in the queue, one reservation, the images, then a charge or a refund.

The API, the OpenAI route and the playground all go through `PaidGeneration.image`, so all charge
by the same rules, in this order:
0. the surface's own checks (rate limit, body, prompt, format...) run inside `refusals`, which
   records a request any of them refuses, with its outcome (accounts/outcomes.py), and re-raises:
   every refusal is in the account's usage, recorded one way;
1. a place in the generation queue is taken for each image first, all of them or none, so a full
   queue refuses the request (`busy`) before any credit moves (no reservation, no ledger rows);
2. the price of every image is reserved at once, in one conditional UPDATE: all of it or nothing
   (OutOfCredits takes nothing and gives the places back);
3. the caller's block makes the images, each in its own place, at the same time
   (`Purchase.generate_each`, or `generate` for one), and encodes (and stores) them, all within
   the generation deadline;
4. a block that ends normally having made every image it paid for settles the reservation: the
   images are charged, together, and what the block handed over with `Purchase.on_charge` (the
   answer kept for an Idempotency-Key) is stored in the same transaction: both commit, or, should
   storing fail, neither does and the request is refunded. Anything else refunds all of it and
   records how it ended, in words, never as an HTTP status: the model failed (`failed`), the
   deadline passed (`busy`), the client hung up or the server stopped (`abandoned`: its task is
   cancelled; a job that had not started never reaches the model), or the block made fewer
   images than it paid for (`failed`).
   When one of several images fails, the others are given up.

Refunds run in a worker thread, shielded from cancellation: the event loop never waits on the
database, and a cancelled request still gets its refund. A refund that fails (storage down) is
kept and retried by `sweep`, which the app runs every SWEEP_SECONDS (pixeldrop.periodic). `sweep`
also refunds reservations left pending by processes that died, but never one that is live in
this process; and since the deadline is shorter than the stale age (the settings check it), no
process's live request looks stale.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from PIL import Image
from sqlalchemy.orm import Session

from pixeldrop.accounts import credits
from pixeldrop.accounts.credits import Reservation
from pixeldrop.accounts.outcomes import Outcome
from pixeldrop.errors import GenerationFailed, GenerationTimedOut, PixeldropError, ServerBusy
from pixeldrop.generation import Engine, Place
from pixeldrop.metrics import Metrics
from pixeldrop.storage import Database

log = logging.getLogger(__name__)


@dataclass
class Purchase:
    """Images being paid for, one place each; `remaining` is the balance once they are charged."""

    engine: Engine
    places: tuple[Place, ...]
    reservation: Reservation
    made: bool = field(default=False, init=False)  # every image paid for was made
    with_charge: Callable[[Session], None] | None = field(default=None, init=False)  # from `on_charge`

    @property
    def count(self) -> int:
        return len(self.places)

    @property
    def charged(self) -> int:
        return self.reservation.amount

    @property
    def remaining(self) -> int:
        return self.reservation.remaining

    def on_charge(self, store: Callable[[Session], None]) -> None:
        """Have `store(session)` run in the transaction that charges for the images, so that what
        it stores commits with the charge, or neither does."""
        self.with_charge = store

    async def generate(self, prompt: str, seed: int) -> Image.Image:
        """The image of a purchase of one."""
        (image,) = await self.generate_each(prompt, [seed])
        return image

    async def generate_each(self, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        """One image per seed, each in its own place, all at the same time. When one fails, the
        others are given up and its error is raised. A purchase makes its images once."""
        if self.made or len(seeds) != self.count:
            raise ValueError(f"a purchase makes its {self.count} images once, one per seed")
        try:
            async with asyncio.TaskGroup() as group:
                jobs = [group.create_task(self.engine.generate(place, prompt, seed))
                        for place, seed in zip(self.places, seeds, strict=True)]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure, as a lone request would raise it
        self.made = True
        return [job.result() for job in jobs]


class PaidGeneration:
    def __init__(self, db: Database, engine: Engine, cost: int, deadline_seconds: float, stale_after: timedelta,
                 metrics: Metrics | None = None, store_prompts: bool = True):
        self.db = db
        self.store_prompts = store_prompts  # shown to the account's owner in its recent requests
        self.engine = engine
        self.metrics = metrics
        self.cost = cost  # per image
        self.deadline_seconds = deadline_seconds
        self.stale_after = stale_after
        self._live: set[int] = set()  # request ids of reservations this process is serving
        self._unrefunded: dict[int, tuple[Reservation, Outcome]] = {}  # refunds that failed, to retry

    @asynccontextmanager
    async def refusals(self, account_id: int, api_key_id: int | None) -> AsyncIterator[None]:
        """Record a request that the checks inside the block refuse (any PixeldropError) in the
        account's usage, with the error's outcome, then let the error go on to the caller."""
        try:
            yield
        except PixeldropError as error:
            await asyncio.to_thread(credits.record_refusal, self.db, account_id, api_key_id, error)
            raise

    @asynccontextmanager
    async def image(self, account_id: int, api_key_id: int | None, count: int = 1,
                    prompt: str | None = None) -> AsyncIterator[Purchase]:
        """Pay for the `count` images made inside the block: charged, together, if the block
        ends normally having made them all; otherwise nothing is."""
        if count < 1:
            raise ValueError("a purchase is of one image or more")
        async with self.refusals(account_id, api_key_id):
            places = self._admit(count)
        try:
            reservation = await asyncio.to_thread(credits.reserve, self.db, account_id, api_key_id, self.cost * count,
                                                  prompt if self.store_prompts else None)
        except BaseException:
            _release(places)
            raise
        self._live.add(reservation.request_id)
        purchase = Purchase(self.engine, places, reservation)
        try:
            try:
                async with asyncio.timeout(self.deadline_seconds):
                    yield purchase
            except TimeoutError:
                what = "image was" if count == 1 else "images were"
                raise GenerationTimedOut(
                    f"The {what} not ready within {self.deadline_seconds:g} seconds; try again shortly.") from None
            if not purchase.made:
                raise GenerationFailed("The images paid for were not all made; nothing was charged.")
            if not await asyncio.to_thread(credits.settle, self.db, reservation, purchase.with_charge):
                raise GenerationFailed("The reservation for this image expired; nothing was charged.")
            if self.metrics is not None:
                self.metrics.credits_charged.inc(reservation.amount)
        except BaseException as error:
            await self._refund(reservation, _ending(error))
            if isinstance(error, PixeldropError) or not isinstance(error, Exception):
                raise  # cancellation (client gone, server stopping) included
            raise GenerationFailed(f"Image generation failed: {type(error).__name__}") from error
        finally:
            _release(places)
            self._live.discard(reservation.request_id)

    def _admit(self, count: int) -> tuple[Place, ...]:
        """`count` places in the queue, or QueueFull having kept none of them."""
        places: list[Place] = []
        try:
            for _ in range(count):
                places.append(self.engine.admit())
        except BaseException:
            _release(places)
            raise
        return tuple(places)

    async def _refund(self, reservation: Reservation, outcome: Outcome) -> None:
        refund = asyncio.ensure_future(asyncio.to_thread(credits.refund, self.db, reservation, outcome))
        try:
            await asyncio.shield(refund)
        except asyncio.CancelledError:
            # Cancelled again while refunding: the thread goes on; a failure is still retried.
            refund.add_done_callback(functools.partial(self._keep_if_failed, reservation, outcome))
            raise
        except Exception:
            self._keep(reservation, outcome)

    def _keep_if_failed(self, reservation: Reservation, outcome: Outcome, refund: asyncio.Future) -> None:
        if refund.exception() is not None:
            self._keep(reservation, outcome)

    def _keep(self, reservation: Reservation, outcome: Outcome) -> None:
        log.warning("could not refund request %d yet; retrying", reservation.request_id)
        self._unrefunded[reservation.request_id] = (reservation, outcome)

    async def sweep(self) -> int:
        """Retry failed refunds, then refund dead processes' reservations. Returns how many."""
        done = 0
        for request_id, (reservation, outcome) in list(self._unrefunded.items()):
            try:
                await asyncio.to_thread(credits.refund, self.db, reservation, outcome)
            except Exception as error:
                log.warning("refund of request %d still failing (%s); next sweep", request_id, type(error).__name__)
            else:
                del self._unrefunded[request_id]
                done += 1
        stale = await asyncio.to_thread(credits.refund_stale, self.db, self.stale_after, frozenset(self._live))
        if stale:
            log.warning("refunded %d reservations left by a crashed process", stale)
        return done + stale


def _release(places: Sequence[Place]) -> None:
    for place in places:
        place.release()


def _ending(error: BaseException) -> Outcome:
    """How a paid request that reserved its credits ended, from what ended its block."""
    if isinstance(error, asyncio.CancelledError):
        return Outcome.ABANDONED
    if isinstance(error, (ServerBusy, TimeoutError)):
        return Outcome.BUSY
    return Outcome.FAILED
