"""The CUDA-graph path for 1-step models computes the pipeline's own picture.

On a GPU, `GraphedOneStep` replays a captured graph of the same function that runs eagerly
here; bench/gpu.py checks the capture itself on a lent GPU (76 dB against the pipeline). What
these tests hold it to, on the tests' tiny model with SD-Turbo's scheduler: the same noise for
the same seeds, the same Euler step and decode as diffusers' pipeline, images independent of
their batch (padding included), and the path chosen only where it is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny, DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline

from pixeldrop.generation.one_step import GraphedOneStep, applies

PROMPTS = ["a red apple", "a rocket", "a cat face"]
SEEDS = [3, 4, 4_294_967_295]


@pytest.fixture(scope="module")
def turbo_like(tiny_model):
    """The tests' tiny model with SD-Turbo's sampler (Euler, epsilon, trailing) and a TAESD decoder."""
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_model)
    pipeline.scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                prediction_type="epsilon", timestep_spacing="trailing",
                                                steps_offset=1)
    pipeline.vae = AutoencoderTiny.from_pretrained(f"{tiny_model}/vae_tiny")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _pipeline_pixels(pipeline, prompts, seeds, size) -> np.ndarray:
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    with torch.no_grad():
        images = pipeline(prompts, num_inference_steps=1, guidance_scale=0.0, generator=generators, height=size,
                          width=size, output_type="pt").images
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_one_step_makes_the_pipelines_picture(turbo_like):
    size = turbo_like.unet.config.sample_size * turbo_like.vae_scale_factor
    graphed = GraphedOneStep(turbo_like, size)
    with torch.no_grad():
        ours = graphed.pixels(PROMPTS, SEEDS).numpy()
    theirs = _pipeline_pixels(turbo_like, PROMPTS, SEEDS, size)
    assert ours.shape == theirs.shape == (3, size, size, 3)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1  # rounding, nothing else
    assert len({image.tobytes() for image in ours}) == 3  # different prompts and seeds, different pictures


def test_images_do_not_depend_on_their_batch(turbo_like):
    """Three prompts are padded to a batch of four; each image is the one it would be alone."""
    graphed = GraphedOneStep(turbo_like, turbo_like.unet.config.sample_size * turbo_like.vae_scale_factor)
    together = graphed.images(PROMPTS, SEEDS)
    alone = [graphed.images([prompt], [seed])[0] for prompt, seed in zip(PROMPTS, SEEDS, strict=True)]
    for batched, single in zip(together, alone, strict=True):
        assert np.abs(np.asarray(batched, dtype=int) - np.asarray(single, dtype=int)).max() <= 1


def test_applies_only_where_it_is_exact(turbo_like, tiny_model):
    assert applies(turbo_like, 1, 0.0)
    assert not applies(turbo_like, 2, 0.0)  # more steps: the pipeline's loop
    assert not applies(turbo_like, 1, 5.0)  # classifier-free guidance: two UNet passes
    assert not applies(turbo_like, 1, None)
    dpm = StableDiffusionPipeline.from_pretrained(tiny_model)
    assert isinstance(dpm.scheduler, DPMSolverMultistepScheduler)
    assert not applies(dpm, 1, 0.0)
