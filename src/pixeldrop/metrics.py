"""What `GET /metrics` shows, in Prometheus' text format (prometheus-client).

The names are the same whichever engine makes the images: the local worker records queue wait,
generation time and batch size itself; the Ray engine records what its replicas report with
each image. What the engine counts itself (images made, the queue, replicas) is read from it at
each scrape, not counted twice. Each app has a registry of its own (several apps may share a test
process).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "pixeldrop_http_request_duration_seconds", "HTTP requests, by route template and status.",
            ["route", "status"], buckets=_SECONDS, registry=self.registry)
        self.queue_wait = Histogram(
            "pixeldrop_queue_wait_seconds", "From admission to the start of generation.",
            buckets=_SECONDS, registry=self.registry)
        self.generation_duration = Histogram(
            "pixeldrop_generation_seconds", "The pipeline call that made an image.", buckets=_SECONDS,
            registry=self.registry)
        self.batch_size = Histogram(
            "pixeldrop_batch_size", "Images in the pipeline call that made an image.", buckets=(1, 2, 4, 8, 16, 32),
            registry=self.registry)
        self.credits_charged = Counter("pixeldrop_credits_charged", "Credits charged for delivered images.",
                                       registry=self.registry)
        self._queue_depth = Gauge("pixeldrop_queue_depth", "Requests admitted and waiting.", registry=self.registry)
        self._replicas = Gauge("pixeldrop_replicas", "Generator replicas, running and wanted.", ["state"],
                               registry=self.registry)

    def record_image(self, queue_wait: float, generation_seconds: float, batch_size: int) -> None:
        """One image made: how long it waited, the pipeline call that made it, that call's size."""
        self.queue_wait.observe(queue_wait)
        self.generation_duration.observe(generation_seconds)
        self.batch_size.observe(batch_size)

    def watch(self, queue_depth: Callable[[], float], replicas: Callable[[], dict[str, int]],
              images_made: Callable[[], float]) -> None:
        """What is read at each scrape from the engine."""
        self._queue_depth.set_function(queue_depth)
        for state in ("running", "wanted"):
            self._replicas.labels(state).set_function(functools.partial(_count, replicas, state))
        self.registry.register(_ImagesMade(images_made))


class _ImagesMade(Collector):
    """`pixeldrop_images_total`: the engine's own count of the images it made."""

    def __init__(self, images_made: Callable[[], float]):
        self.images_made = images_made
        self.created = time.time()

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("pixeldrop_images", "Images made by the model.", value=self.images_made(),
                                  created=self.created)


def _count(replicas: Callable[[], dict[str, int]], state: str) -> float:
    return replicas()[state]
