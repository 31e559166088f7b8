#!/usr/bin/env python3
"""Seconds per 512x512 SD-Turbo image on this machine: pixeldrop's presets against plain diffusers.

    python bench/generate.py [--runs 3] [--model DIR]

Builds the real SD-Turbo architecture with random weights (from ../shared/bench/sd-turbo, once,
into ~/.pixeldrop/bench/sd-turbo-random), then times one 1-step image per configuration, each
in a process of its own so that peak RSS is its own: pixeldrop's `fast` and `quality` presets
through the same `DiffusersGenerator` the server uses, and the plain fp32
`StableDiffusionPipeline` as the baseline. Also prints the numerical difference between the
fast path's UNet and the fp32 UNet on the same inputs. The last line is the summary.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench" / "sd-turbo"
DEFAULT_MODEL = Path("~/.pixeldrop/bench/sd-turbo-random").expanduser()
PROMPT = "photograph of a cat surfing"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # inherited by the spawned children
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(target: Path) -> None:
    if (target / "model_index.json").exists():
        return
    print(f"building the random-weight SD-Turbo pipeline in {target} ...", flush=True)
    subprocess.run([sys.executable, str(SHARED / "build_random_pipeline.py"), str(target), "--fp16"], check=True)


def _quiet() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _time(generate, runs: int) -> list[float]:
    generate()  # warm-up: first-call allocations and oneDNN kernel selection
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        generate()
        times.append(time.perf_counter() - start)
    return times


def run_preset(model: str, preset: str, runs: int, queue) -> None:
    from pixeldrop.generation import load_generator
    from pixeldrop.settings import Settings

    _quiet()
    settings = Settings(model=model, preset=preset, num_inference_steps=1, guidance_scale=0.0, _env_file=None)
    generator = load_generator(settings)
    times = _time(lambda: generator.generate([PROMPT], [0]), runs)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the fp32 reference below
    describe = generator.describe()
    compiled = ", compiled" if describe["compiled"] else ""
    what = f"{describe['dtype']}, {describe['decoder']} decoder{compiled}"
    queue.put((times, peak_rss, what, unet_error(model, generator.pipeline.unet)))


def unet_error(model: str, fast_unet) -> float:
    """Relative error of the preset's UNet (bf16, compiled) against the fp32 UNet, same inputs."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    sample, hidden, t = torch.randn(1, 4, 64, 64), torch.randn(1, 77, 1024), torch.tensor([999])
    dtype = next(fast_unet.parameters()).dtype
    with torch.inference_mode():
        out = fast_unet(sample.to(dtype), t, hidden.to(dtype)).sample.float()
        reference = UNet2DConditionModel.from_pretrained(model, subfolder="unet", dtype=torch.float32)
        expected = reference(sample, t, hidden).sample
    return float((out - expected).norm() / expected.norm())


def run_plain(model: str, runs: int, queue) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    _quiet()
    pipe = StableDiffusionPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    times = _time(lambda: pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0), runs)
    queue.put((times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "float32, full decoder", 0.0))


def in_child(target, *args):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    build_model(args.model)
    model = str(args.model)

    results = {}
    for name, target, extra in [("fast", run_preset, ("fast",)), ("quality", run_preset, ("quality",)),
                                ("plain diffusers", run_plain, ())]:
        times, rss_kb, what, error = in_child(target, model, *extra, args.runs)
        results[name] = statistics.median(times)
        print(f"{name:16} {what:38} median {results[name]:6.2f} s/image  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})  peak RSS {rss_kb / 2**20:.2f} GiB  "
              f"UNet rel. error vs fp32: {error:.4f}", flush=True)
    print(f"fast: {results['fast']:.2f} s/image, quality: {results['quality']:.2f} s/image, "
          f"plain diffusers: {results['plain diffusers']:.2f} s/image, "
          f"speed-up: {results['plain diffusers'] / results['fast']:.1f}x")


if __name__ == "__main__":
    main()
