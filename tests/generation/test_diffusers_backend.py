"""The diffusers backend and the worker, on a tiny real pipeline the tests build."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from pixeldrop.errors import QueueFull
from pixeldrop.generation import GenerationWorker, load_generator
from pixeldrop.generation.diffusers_backend import read_recipe


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_loads_by_folder_with_its_recipe(tiny_generator, tiny_model):
    assert tiny_generator.describe()["pipeline"] == "StableDiffusionPipeline"
    assert tiny_generator.num_inference_steps == 2 == read_recipe(tiny_model).num_inference_steps


def test_images_are_512_deterministic_per_seed_and_batch_independent(tiny_generator):
    a, b, c = tiny_generator.generate(["a red apple", "a red apple", "a blue car"], [1, 2, 1])
    assert a.size == b.size == c.size == (512, 512) and a.mode == "RGB"
    (again,) = tiny_generator.generate(["a red apple"], [1])
    assert np.abs(pixels(a) - pixels(again)).max() <= 1, "same prompt and seed, same image, alone or batched"
    assert np.abs(pixels(a) - pixels(b)).mean() > 1, "different seeds differ"
    assert np.abs(pixels(a) - pixels(c)).mean() > 0.5, "different prompts differ"


def test_settings_override_the_recipe(settings):
    settings.num_inference_steps = 3
    settings.guidance_scale = 0.0
    generator = load_generator(settings)
    assert (generator.num_inference_steps, generator.guidance_scale) == (3, 0.0)
    steps = []
    generator.generate(["x"], [0], progress=steps.append)
    assert steps == [1, 2, 3]


class RecordingGenerator:
    """Wraps a real generator and records the batches the worker hands it."""

    steps = 1

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def generate(self, prompts, seeds, progress=None):
        self.started.set()
        self.gate.wait(timeout=60)
        self.batches.append(list(prompts))
        return self.inner.generate(prompts, seeds)

    def describe(self):
        return {}


def test_worker_batches_requests_that_wait_together(tiny_generator):
    recorder = RecordingGenerator(tiny_generator)
    worker = GenerationWorker(recorder, queue_size=8, max_batch=4, batch_wait_ms=50).start()
    try:
        futures = [worker.submit(worker.admit(), f"prompt {i}", i) for i in range(5)]
        recorder.gate.set()
        images = [f.result(timeout=60) for f in futures]
    finally:
        worker.stop()
    assert all(image.size == (512, 512) for image in images)
    sizes = [len(b) for b in recorder.batches]
    assert sum(sizes) == 5 and max(sizes) <= 4
    assert max(sizes) > 1, "jobs queued together share a pipeline call"


def test_worker_refuses_when_the_queue_is_full(tiny_generator):
    recorder = RecordingGenerator(tiny_generator)
    worker = GenerationWorker(recorder, queue_size=2, max_batch=1).start()
    try:
        first = worker.submit(worker.admit(), "a", 0)
        accepted = [first]
        with pytest.raises(QueueFull):
            for i in range(10):
                accepted.append(worker.submit(worker.admit(), "b", i))
        assert 2 <= len(accepted) <= 3
        recorder.gate.set()
        assert all(f.result(timeout=60).size == (512, 512) for f in accepted)
    finally:
        worker.stop()


def test_worker_is_awaitable_from_the_event_loop(tiny_generator):
    worker = GenerationWorker(tiny_generator).start()
    try:
        image = asyncio.run(worker.generate(worker.admit(), "a cat", 5))
    finally:
        worker.stop()
    assert image.size == (512, 512)


def test_a_job_given_up_before_it_starts_never_reaches_the_model(tiny_generator):
    recorder = RecordingGenerator(tiny_generator)
    worker = GenerationWorker(recorder, queue_size=1, max_batch=1).start()
    try:
        running = worker.submit(worker.admit(), "running", 0)
        assert recorder.started.wait(timeout=30)
        waiting = worker.submit(worker.admit(), "given up", 1)
        with pytest.raises(QueueFull):
            worker.admit()
        assert waiting.cancel()
        worker.admit().release()  # the queue place is free again at once, not once the job is skipped
        recorder.gate.set()
        assert running.result(timeout=60).size == (512, 512)
        assert worker.submit(worker.admit(), "after", 2).result(timeout=60).size == (512, 512)
    finally:
        worker.stop()
    assert [prompt for batch in recorder.batches for prompt in batch] == ["running", "after"]
