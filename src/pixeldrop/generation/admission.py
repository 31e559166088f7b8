"""Places in a bounded queue, taken before anything else happens to a request.

An engine admits a request (`Admission.admit`) before the credits are reserved: when every
place is taken, QueueFull is raised at once and the request is refused having changed nothing.
What a place covers is the engine's choice: the local worker holds it until the job starts
running (it bounds the jobs waiting for the model); the Ray engine holds it until the answer
comes back (it bounds what one API process has in flight).
"""

from __future__ import annotations

import threading

from pixeldrop.errors import QueueFull


class Place:
    """One admitted request's place; `release` is idempotent and thread-safe."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._held = True

    def release(self) -> None:
        with self._admission._lock:
            if self._held:
                self._held = False
                self._admission.held -= 1


class Admission:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0
        self._lock = threading.Lock()

    def admit(self) -> Place:
        """A place, or QueueFull at once."""
        with self._lock:
            if self.held >= self.capacity:
                raise QueueFull("The generation queue is full; try again shortly.")
            self.held += 1
        return Place(self)
