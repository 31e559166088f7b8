"""Generation: the Generator and Engine interfaces, the diffusers backend, and the engines that
run it: the local worker thread, or Ray Serve replicas. `ENGINES` is the registry the `engine`
setting picks from.

Nothing outside this package imports torch, diffusers or Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pixeldrop.metrics import Metrics
from pixeldrop.models.tiny import WEIGHTS_DIR
from pixeldrop.settings import Settings

from .admission import Place
from .base import OUTPUT_SIZE, Engine, Generator
from .worker import GenerationWorker

__all__ = ["ENGINES", "OUTPUT_SIZE", "Engine", "Generator", "GenerationWorker", "Place", "default_model",
           "load_generator", "start_engine", "warmed_up"]

log = logging.getLogger(__name__)


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
        verbose=settings.verbose,
    )


def warmed_up(generator: Generator, settings: Settings) -> Generator:
    """`generator`, having made one image if the settings ask for it (the local engine and every
    Ray replica), so that the first request does not pay for compilation and lazy loading."""
    if settings.warm_up:
        # Said before it starts: with a compiled UNet, this first image takes minutes.
        compiling = settings.resolved_compile or settings.resolved_precision == "int8"  # int8 always compiles
        log.info("warming up with one image%s", " (compiling the UNet: minutes)" if compiling else "")
        generator.generate(["warm-up"], [0])
    return generator


def _start_local(settings: Settings, generator: Generator | None, metrics: Metrics | None) -> Engine:
    model = warmed_up(generator or load_generator(settings), settings)
    return GenerationWorker(model, settings.queue_size, settings.max_batch, settings.batch_wait_ms, metrics).start()


def _start_ray(settings: Settings, generator: Generator | None, metrics: Metrics | None) -> Engine:
    if generator is not None:
        raise ValueError("the ray engine loads its model in its replicas; it takes no generator object")
    from .ray_engine import RayEngine

    return RayEngine(settings, metrics).start()


ENGINES: dict[str, Callable[[Settings, Generator | None, Metrics | None], Engine]] = {
    "local": _start_local,
    "ray": _start_ray,
}


def start_engine(settings: Settings, generator: Generator | None = None, metrics: Metrics | None = None) -> Engine:
    """The engine the settings name, started (model loaded, replicas running)."""
    return ENGINES[settings.engine](settings, generator, metrics)
