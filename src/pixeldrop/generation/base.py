"""The one interface the rest of pixeldrop uses to make images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from PIL import Image

OUTPUT_SIZE = 512  # the contract: every image is 512x512


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
