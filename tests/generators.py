"""Generators for tests of what surrounds the model: one that breaks, one held at a gate."""

from __future__ import annotations

import threading


class FailingGenerator:
    """A model that breaks: what a CUDA out-of-memory or a corrupt checkpoint looks like."""

    steps = 1

    def generate(self, prompts, seeds, progress=None):
        raise RuntimeError("the model fell over")

    def describe(self):
        return {"model": "failing"}


class GatedGenerator:
    """Wraps a generator; holds every call until the test opens the gate, and records the prompts
    that reached it (so a test can tell that a job never used the model)."""

    steps = 1

    def __init__(self, inner):
        self.inner = inner
        self.started = threading.Event()
        self.gate = threading.Event()
        self.prompts: list[str] = []

    def generate(self, prompts, seeds, progress=None):
        self.prompts.extend(prompts)
        self.started.set()
        assert self.gate.wait(timeout=60)
        return self.inner.generate(prompts, seeds)

    def describe(self):
        return self.inner.describe()
