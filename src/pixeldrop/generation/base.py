"""The two interfaces the rest of pixeldrop uses to make images: a Generator (a model), and an
Engine (what runs generators and queues requests for them: a local thread, or Ray Serve)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from .admission import Place

if TYPE_CHECKING:
    from .metadata import ServedModel  # which imports DEFAULT_STEPS from here

OUTPUT_SIZE = 512  # the contract: every image is 512x512
DEFAULT_STEPS = 50  # what diffusers' pipelines run when neither the settings nor the model name a step count


class Generator(Protocol):
    """Anything that turns prompts into 512x512 RGB images.

    `seeds[i]` fixes the noise of `prompts[i]`: the same prompt and seed give the same image,
    whatever else is in the batch.
    """

    def generate(
        self, prompts: Sequence[str], seeds: Sequence[int], progress: Callable[[int], None] | None = None
    ) -> list[Image.Image]:
        """`progress(step)` is called after each denoising step, for progress bars."""
        ...

    @property
    def steps(self) -> int:
        """Denoising steps per image (what a progress bar counts to)."""
        ...

    def describe(self) -> dict:
        """What /healthz shows about the model."""
        ...


class Engine(Protocol):
    """Runs a Generator for the API: admission first, then images, cancellable while queued."""

    name: str  # as in the `engine` setting
    images_made: int  # by this process's engine since it started (/healthz, and /metrics' pixeldrop_images)
    model: ServedModel  # what the model is called and does, worked out once when the engine starts

    def admit(self) -> Place:
        """A place for one request, or QueueFull at once (nothing else has happened yet)."""
        ...

    async def generate(self, place: Place, prompt: str, seed: int) -> Image.Image:
        """The image. Cancelling the caller gives the job up; one not started never runs."""
        ...

    @property
    def queued(self) -> int:
        """Requests admitted and waiting."""
        ...

    @property
    def busy(self) -> bool:
        ...

    def replicas(self) -> dict[str, int]:
        """`{"running": n, "wanted": m}`: processes holding the model."""
        ...

    def stop(self) -> None:
        ...
