"""Generation: the Generator interface, the diffusers backend, and the worker that runs it.

Nothing outside this package imports torch or diffusers.
"""

from __future__ import annotations

from pixeldrop.models.tiny import WEIGHTS_DIR
from pixeldrop.settings import Settings

from .base import OUTPUT_SIZE, Generator
from .worker import GenerationWorker

__all__ = ["OUTPUT_SIZE", "Generator", "GenerationWorker", "default_model", "load_generator"]


def default_model() -> str:
    """pixeldrop-tiny, shipped inside the package: needs no network."""
    return str(WEIGHTS_DIR)


def load_generator(settings: Settings) -> Generator:
    from .diffusers_backend import DiffusersGenerator

    return DiffusersGenerator(
        settings.model or default_model(),
        device=settings.device,
        precision=settings.resolved_precision,
        decoder=settings.resolved_decoder,
        compile=settings.resolved_compile,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
    )
