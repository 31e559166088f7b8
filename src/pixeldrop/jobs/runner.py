"""The job runner: in each server process (unless the `run_jobs` setting is off), asyncio tasks
that take queued jobs from the database and make them, and that deliver their webhooks.

- A job is claimed only once the engine has a place for it (`admit`): while the generation queue
  is full, jobs wait in the database, where nothing is lost, rather than fail.
- At most `jobs_at_once` of this process's jobs run at a time, each within the generation
  deadline (past it: failed and refunded, as a synchronous request would be).
- On start, jobs abandoned by dead processes are queued again (store.requeue_abandoned); then
  every SWEEP_SECONDS (pixeldrop.periodic) too, with the charges of succeeded jobs whose process
  died before charging them, and the deletion of expired results.
- On stop, the jobs this process is running go back to the queue, for the next server.
- A submit in this process `wake`s the runner; jobs that other processes accepted are found by
  looking every POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta

import httpx
from PIL import Image

from pixeldrop.accounts.outcomes import Outcome
from pixeldrop.errors import InvalidRequest, PixeldropError, ServerBusy, StorageUnavailable
from pixeldrop.generation import Engine, Place
from pixeldrop.generation.formats import FORMATS
from pixeldrop.metrics import Metrics
from pixeldrop.periodic import SWEEP_SECONDS, every
from pixeldrop.settings import Settings
from pixeldrop.storage import Database

from . import store, webhooks

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BUSY_RETRY_SECONDS = 0.5  # while the generation queue is full


class JobRunner:
    def __init__(self, db: Database, engine: Engine, settings: Settings, metrics: Metrics | None = None):
        self.db = db
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.keep = timedelta(seconds=settings.job_result_seconds)
        self.stale_after = timedelta(seconds=settings.stale_reservation_seconds)
        self.process = f"{socket.gethostname()[:60]}:{os.getpid()}"  # in `jobs.claimed_by`, with the claim
        self._jobs_wanted = asyncio.Event()
        self._webhooks_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._runs: set[asyncio.Task] = set()
        self._claims: set[str] = set()  # this process's runs not yet ended

    async def start(self) -> None:
        if not self.settings.run_jobs:
            return
        try:
            await asyncio.to_thread(store.requeue_abandoned, self.db, self.stale_after, self.db.dialect == "sqlite")
        except StorageUnavailable:
            # A server on read-only or locked storage still starts and answers 503 where it must;
            # the sweep queues abandoned jobs again once they are older than the stale age.
            log.warning("could not queue abandoned jobs again at start (storage unavailable); the sweep will")
        self._tasks = [asyncio.create_task(self._claim_forever()), asyncio.create_task(self._deliver_forever()),
                       asyncio.create_task(every(SWEEP_SECONDS, "sweep jobs", self._sweep, now=True))]

    async def stop(self) -> None:
        """Stop running jobs and put the ones begun back in the queue."""
        for task in [*self._tasks, *self._runs]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._runs, return_exceptions=True)
        try:
            await asyncio.to_thread(store.requeue, self.db, sorted(self._claims))
        except Exception:
            log.warning("could not queue this process's running jobs again; they will be, once abandoned")

    def wake(self) -> None:
        """A job was submitted or ended here: look for work now rather than at the next poll."""
        self._jobs_wanted.set()
        self._webhooks_wanted.set()

    # Jobs

    async def _claim_forever(self) -> None:
        slots = asyncio.Semaphore(self.settings.jobs_at_once)
        while True:
            await slots.acquire()
            place = await self._place()
            run = await self._claim(place)
            if run is None:
                place.release()
                slots.release()
                await _woken_or_after(self._jobs_wanted, POLL_SECONDS)
                continue
            task = asyncio.create_task(self._run(run, place))
            self._runs.add(task)
            task.add_done_callback(functools.partial(self._ran, slots, run.claim))

    async def _place(self) -> Place:
        while True:
            try:
                return self.engine.admit()
            except ServerBusy:
                await asyncio.sleep(BUSY_RETRY_SECONDS)

    async def _claim(self, place: Place) -> store.Claimed | None:
        """The next job, claimed; a claim made while this task is being stopped is recorded, so
        that `stop` puts its job back."""
        claiming = asyncio.ensure_future(asyncio.to_thread(store.claim_next, self.db, self.process))
        try:
            run = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            place.release()
            with contextlib.suppress(Exception):
                if (made := await claiming) is not None:
                    self._claims.add(made.claim)
            raise
        except Exception:
            log.warning("could not look for queued jobs (storage unavailable?); retrying")
            return None
        if run is not None:
            self._claims.add(run.claim)
        return run

    def _ran(self, slots: asyncio.Semaphore, claim: str, task: asyncio.Task) -> None:
        slots.release()
        self._runs.discard(task)
        if not task.cancelled():  # a cancelled run's job is still running: `stop` queues it again
            self._claims.discard(claim)

    async def _run(self, run: store.Claimed, place: Place) -> None:
        """Make the job's image and end the job: succeeded (charged) or failed (refunded)."""
        try:
            try:
                async with asyncio.timeout(self.settings.generation_deadline_seconds):
                    image = await self.engine.generate(place, run.prompt, run.seed)
                    png = await asyncio.to_thread(self._png, image, run)
            finally:
                place.release()
        except TimeoutError:
            await self._end(store.fail, run, f"The image was not ready within "
                            f"{self.settings.generation_deadline_seconds:g} seconds.", Outcome.BUSY, self.keep)
        except Exception as error:
            message = error.message if isinstance(error, PixeldropError) else \
                f"Image generation failed: {type(error).__name__}"
            await self._end(store.fail, run, message, Outcome.FAILED, self.keep)
        else:
            if await self._end(store.succeed, run, png, self.keep) and self.metrics is not None:
                self.metrics.credits_charged.inc(run.reservation.amount)

    def _png(self, image: Image.Image, run: store.Claimed) -> bytes:
        parameters = None
        if self.settings.image_metadata:
            parameters = self.engine.model.image_parameters(run.prompt, run.seed)
        return FORMATS["png"].encode(image, self.settings.jpeg_quality, parameters)

    async def _end(self, how: Callable[..., bool], run: store.Claimed, *args: object) -> bool:
        """`store.succeed` or `store.fail`; when storage fails, the job stays running until it
        counts as abandoned, and is then made again."""
        try:
            ended = await asyncio.to_thread(how, self.db, run, *args)
        except Exception as error:
            log.warning("could not end job %s (%s); it runs again once abandoned", run.public_id,
                        type(error).__name__)
            return False
        self._webhooks_wanted.set()
        return ended

    async def _sweep(self) -> None:
        """Queue abandoned jobs again, charge succeeded ones whose process died first, delete
        expired results and, unless the operator stores prompts, forget ended jobs' prompts."""
        await asyncio.to_thread(store.requeue_abandoned, self.db, self.stale_after)
        await asyncio.to_thread(store.settle_succeeded, self.db)
        await asyncio.to_thread(store.expire_results, self.db, self.keep)
        if not self.settings.store_prompts:
            await asyncio.to_thread(store.forget_prompts, self.db)

    # Webhooks

    async def _deliver_forever(self) -> None:
        async with httpx.AsyncClient(timeout=webhooks.TIMEOUT_SECONDS, follow_redirects=False,
                                     trust_env=False) as client:
            while True:
                try:
                    due = await asyncio.to_thread(webhooks.claim_due, self.db)
                except Exception:
                    log.warning("could not look for webhooks to send (storage unavailable?); retrying")
                    due = []
                if due:
                    await asyncio.gather(*(self._deliver(client, delivery) for delivery in due))
                else:
                    await _woken_or_after(self._webhooks_wanted, POLL_SECONDS)

    async def _deliver(self, client: httpx.AsyncClient, delivery: webhooks.Delivery) -> None:
        try:
            # Checked again now: the name may point somewhere else than when the job was submitted.
            target = await asyncio.to_thread(webhooks.resolve, delivery.url, self.settings.webhook_allow_private)
        except InvalidRequest as refused:
            error: str | None = refused.message
        else:
            error = await webhooks.attempt(client, delivery, target)
        try:
            await asyncio.to_thread(webhooks.record, self.db, delivery, error,
                                    timedelta(seconds=self.settings.webhook_retry_seconds))
        except Exception:
            log.warning("could not record webhook %s's attempt; it is tried again", delivery.id)


async def _woken_or_after(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass
    event.clear()
