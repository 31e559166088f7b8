"""One thread owns the model; a bounded queue feeds it.

The event loop never runs the model. A caller first takes a *place* in the queue (`admit`),
which fails at once with QueueFull when `queue_size` places are taken, so that a full server
refuses a request (busy) before anything else happens (no credits are reserved for a request
that cannot be queued). It then hands its job in (`submit` or `generate`) and awaits the result.

A place is held from admission until the job starts running, or until the caller gives it
up (its client hung up, its deadline passed). A job given up before it starts never reaches
the model. Jobs that arrive within `batch_wait` of each other share one pipeline call, up to
`max_batch` (useful on GPUs).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from PIL import Image

from pixeldrop.errors import GenerationFailed
from pixeldrop.metrics import Metrics

from .admission import Admission, Place
from .base import Generator
from .metadata import ServedModel

log = logging.getLogger(__name__)


@dataclass
class _Job:
    prompt: str
    seed: int
    place: Place
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)


def _release_if_cancelled(place: Place, future: Future) -> None:
    """A job given up while queued frees its place at once, not when the worker skips it."""
    if future.cancelled():
        place.release()


class GenerationWorker:
    """The local engine (see `Engine`): one model, in this process."""

    name = "local"

    def __init__(self, generator: Generator, queue_size: int = 32, max_batch: int = 1, batch_wait_ms: float = 5.0,
                 metrics: Metrics | None = None):
        self.generator = generator
        self.model = ServedModel.of(generator.describe())
        self.metrics = metrics
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self._admission = Admission(queue_size)
        # Unbounded on purpose: admission bounds what is waiting, cancelled jobs may linger here.
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pixeldrop-generation", daemon=True)
        self.images_made = 0
        self.busy = False

    def start(self) -> GenerationWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    @property
    def queued(self) -> int:
        """Requests admitted and not yet running."""
        return self._admission.held

    def admit(self) -> Place:
        """A place in the queue (held until the job starts), or QueueFull at once."""
        return self._admission.admit()

    def replicas(self) -> dict[str, int]:
        running = int(self._thread.is_alive())
        return {"running": running, "wanted": 1}

    def submit(self, place: Place, prompt: str, seed: int) -> Future:
        """Queue one image; cancelling the future before the job starts keeps it from the model."""
        job = _Job(prompt, seed, place)
        job.future.add_done_callback(functools.partial(_release_if_cancelled, place))
        self._queue.put(job)
        return job.future

    async def generate(self, place: Place, prompt: str, seed: int) -> Image.Image:
        """The image, awaited; cancelling this coroutine gives up the job (and its place) at once."""
        return await asyncio.wrap_future(self.submit(place, prompt, seed))

    def _next_batch(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.batch_wait
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # let the loop see the stop signal after this batch
                break
            batch.append(job)
        return batch

    def _start(self, batch: list[_Job]) -> list[_Job]:
        """The jobs still wanted; each leaves its place in the queue as it starts or is dropped."""
        started = []
        for job in batch:
            if job.future.set_running_or_notify_cancel():
                started.append(job)
            job.place.release()
        return started

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch = self._start(batch)
            if not batch:
                continue
            self.busy = True
            started = time.monotonic()
            try:
                images = self.generator.generate([j.prompt for j in batch], [j.seed for j in batch])
            except Exception as error:  # the model failed: every caller gets an error, no crash
                log.exception("generation failed")
                for job in batch:
                    job.future.set_exception(GenerationFailed(f"Image generation failed: {type(error).__name__}"))
            else:
                self.images_made += len(images)
                seconds = time.monotonic() - started
                for job, image in zip(batch, images, strict=True):
                    if self.metrics is not None:
                        self.metrics.record_image(started - job.submitted, seconds, len(batch))
                    job.future.set_result(image)
            finally:
                self.busy = False
