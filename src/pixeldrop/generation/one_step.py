"""One-step models (SD-Turbo and its kin) on CUDA, replayed as captured CUDA graphs.

A 1-step, guidance-free image from a Stable Diffusion pipeline is a fixed sequence of about a
thousand small GPU kernels (text encoder, one UNet call, one Euler step, decode), and at batch 1
launching them costs more than running them. Captured once per batch size in a CUDA graph and
replayed, the whole call is one launch. Measured on an H200 with SD-Turbo in fp16 and TAESD
(bench/README.md, "GPU"): 40.9 ms -> 10.5 ms at batch 1, 6.9 ms with a compiled UNet.

The picture is the pipeline's: the same noise for the same seeds (diffusers' `randn_tensor`, one
generator per image), the same Euler step, the same decode; bench/gpu.py and
tests/generation/test_one_step.py compare the two. It applies where that step is exactly what
the pipeline would do (`applies`); anything else keeps the pipeline.

Batches are padded to the next power of two, so that a server with `max_batch` 16 captures at
most five graphs; each graph's memory is its own, a few hundred MB at batch 16 for SD-Turbo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image

EULER_SCHEDULERS = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler")


def applies(pipeline, num_inference_steps: int | None, guidance_scale: float | None) -> bool:
    """Whether `OneStep` computes exactly what `pipeline` would: one Euler step of an
    epsilon-predicting Stable Diffusion pipeline, without classifier-free guidance (at the last
    step an ancestral Euler step adds no noise, so both Euler schedulers qualify)."""
    scheduler = pipeline.scheduler
    return (
        type(pipeline).__name__ == "StableDiffusionPipeline"
        and num_inference_steps == 1
        and guidance_scale is not None and guidance_scale <= 1.0
        and type(scheduler).__name__ in EULER_SCHEDULERS
        and scheduler.config.get("prediction_type", "epsilon") == "epsilon"
    )


class OneStep:
    """The pipeline's whole 1-step call as one function of fixed-shape tensors, so that it can be
    captured: token ids and noise in, uint8 pixels (B, H, W, 3) out.

    The Euler step at the only timestep is x0 = x - sigma * eps, with x = noise * init_noise_sigma
    and the UNet fed x / sqrt(sigma^2 + 1): what EulerDiscreteScheduler.step computes.
    """

    def __init__(self, pipeline, size: int):
        scheduler = pipeline.scheduler
        scheduler.set_timesteps(1, device=pipeline.device)
        self.pipeline, self.size = pipeline, size
        self.timestep = scheduler.timesteps[0]
        self.sigma = float(scheduler.sigmas[0])
        self.init_sigma = float(scheduler.init_noise_sigma)
        self.latent_shape = (pipeline.unet.config.in_channels, size // pipeline.vae_scale_factor,
                             size // pipeline.vae_scale_factor)

    def tokens(self, prompts: Sequence[str]) -> torch.Tensor:
        tokenizer = self.pipeline.tokenizer
        return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(self.pipeline.device)

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """The pipeline's own draw for these seeds (`randn_tensor`, one generator per image)."""
        from diffusers.utils.torch_utils import randn_tensor

        device = self.pipeline.device
        generators = [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]
        return randn_tensor((len(seeds), *self.latent_shape), generator=generators, device=device,
                            dtype=self.pipeline.unet.dtype)

    def __call__(self, ids: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        pipeline = self.pipeline
        embeddings = pipeline.text_encoder(ids)[0]
        latents = noise * self.init_sigma
        model_input = latents / math.sqrt(self.sigma**2 + 1)
        eps = pipeline.unet(model_input, self.timestep, encoder_hidden_states=embeddings, return_dict=False)[0]
        x0 = latents - self.sigma * eps
        image = pipeline.vae.decode(x0 / pipeline.vae.config.scaling_factor, return_dict=False)[0]
        return ((image / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


class CapturedStep:
    """`OneStep` for one batch size, captured in a CUDA graph over static inputs."""

    def __init__(self, step: OneStep, batch: int):
        self.step = step
        self.ids = step.tokens(["warm-up"] * batch)
        self.noise = step.noise(range(batch))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: allocations, kernel choices, compiling
            for _ in range(3):
                step(self.ids, self.noise)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.pixels = step(self.ids, self.noise)

    def __call__(self, ids: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(ids)
        self.noise.copy_(noise)
        self.graph.replay()
        return self.pixels


class GraphedOneStep:
    """Images from prompts and seeds through `OneStep`: captured per padded batch size on CUDA,
    eager elsewhere (where it only serves to check the step against the pipeline)."""

    def __init__(self, pipeline, size: int):
        self.step = OneStep(pipeline, size)
        self.captured: dict[int, CapturedStep] = {}

    def pixels(self, prompts: Sequence[str], seeds: Sequence[int]) -> torch.Tensor:
        """uint8 (B, H, W, 3) on the pipeline's device."""
        count = len(prompts)
        padded = 1 << (count - 1).bit_length()  # 1, 2, 4, 8...: few graphs for any batch
        prompts = [*prompts, *[prompts[-1]] * (padded - count)]
        seeds = [*seeds, *[seeds[-1]] * (padded - count)]
        ids, noise = self.step.tokens(prompts), self.step.noise(seeds)
        if ids.device.type != "cuda":
            return self.step(ids, noise)[:count]
        if padded not in self.captured:
            self.captured[padded] = CapturedStep(self.step, padded)
        return self.captured[padded](ids, noise)[:count]

    def images(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        with torch.no_grad():  # not inference_mode: graphs were captured and checked under no_grad
            pixels = self.pixels(prompts, seeds).cpu().numpy()
        return [Image.fromarray(image) for image in pixels]
