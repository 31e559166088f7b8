"""One thread owns the model; a bounded queue feeds it.

The event loop never runs the model: `submit` puts a job on the queue and returns a future
the caller awaits. When the queue is full, `submit` raises QueueFull at once (the API answers
503 with Retry-After) instead of letting requests pile up. Jobs that arrive within
`batch_wait` of each other share one pipeline call, up to `max_batch` (useful on GPUs).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from PIL import Image

from pixeldrop.errors import GenerationFailed, QueueFull

from .base import Generator

log = logging.getLogger(__name__)


@dataclass
class _Job:
    prompt: str
    seed: int
    future: Future = field(default_factory=Future)


class GenerationWorker:
    def __init__(self, generator: Generator, queue_size: int = 32, max_batch: int = 1, batch_wait_ms: float = 5.0):
        self.generator = generator
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="pixeldrop-generation", daemon=True)
        self.images_made = 0
        self.busy = False

    def start(self) -> "GenerationWorker":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit_nowait(self, prompt: str, seed: int) -> Future:
        job = _Job(prompt, seed)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull("The generation queue is full; try again shortly.") from None
        return job.future

    async def generate(self, prompt: str, seed: int) -> Image.Image:
        return await asyncio.wrap_future(self.submit_nowait(prompt, seed))

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

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.busy = True
            try:
                images = self.generator.generate([j.prompt for j in batch], [j.seed for j in batch])
            except Exception as error:  # the model failed: every caller gets an error, no crash
                log.exception("generation failed")
                for job in batch:
                    job.future.set_exception(GenerationFailed(f"Image generation failed: {type(error).__name__}"))
            else:
                self.images_made += len(images)
                for job, image in zip(batch, images):
                    job.future.set_result(image)
            finally:
                self.busy = False
