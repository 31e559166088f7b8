#!/usr/bin/env python3
"""Evaluate pixeldrop-tiny: prompt adherence by retrieval, diversity, blank images, speed, and
a 16-prompt x 4-seed grid at 512 px to look at.

    python bench/tiny_eval.py [--model DIR] [--work-dir ~/.pixeldrop/tiny-training] [--n 100] [--pools 3]

Needs the training work folder (dataset and text caches; `pixeldrop train-tiny` makes them).
Writes bench/out/tiny_metrics.json, tiny_grid.jpg and upscaler_grid.jpg (per row: Lanczos,
learned upscaler, true render; held-out icons), upscaler_generated.jpg (generated pictures:
Lanczos | learned) and prints the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixeldrop.generation import default_model
from pixeldrop.generation.diffusers_backend import DiffusersGenerator
from pixeldrop.models.tiny import evaluate
from pixeldrop.models.tiny.architecture import CascadeAutoencoder
from pixeldrop.models.tiny.data import build_dataset, is_held_out_icon, on_background, render_icons
from pixeldrop.models.tiny.stage_tools import to_uint8
from pixeldrop.models.tiny.upscaler_training import upscaler_scores

GRID_PROMPTS = [
    "a red apple", "a cat", "a dog", "a smiling face", "a rocket", "a blue car", "two bananas",
    "a cat and a dog", "a pizza on a blue background", "a yellow flower", "a house", "a purple heart",
    "a green apple", "an umbrella", "a guitar", "photograph of a cat surfing",
]
OUT = Path(__file__).parent / "out"


@torch.no_grad()
def compare_on_generated(pipe, prompts: list[str], path: Path) -> None:
    """Generated pictures, one row each: the 64 px picture enlarged by Lanczos | the cascade's."""
    latents = pipe(prompts, num_inference_steps=20, guidance_scale=5.0, output_type="latent",
                   generator=torch.Generator().manual_seed(1)).images
    painted = to_uint8(pipe.vae.decode(latents).sample.float().clamp(-1, 1))
    small = to_uint8(pipe.vae.decode_small(latents).float().clamp(-1, 1))
    rows = [np.concatenate([np.asarray(Image.fromarray(s).resize((512, 512), Image.LANCZOS)), p], 1)
            for s, p in zip(small, painted, strict=True)]
    Image.fromarray(np.concatenate(rows, 0)).save(path, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--work-dir", type=Path, default=Path("~/.pixeldrop/tiny-training").expanduser())
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pools", type=int, default=1,
                        help="top-1 figures as means over this many pools of captions (3 to compare models)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(exist_ok=True)

    generator = DiffusersGenerator(args.model, device="cpu", precision="fp32")
    pipe = generator.pipeline
    generator.generate(["warm-up"], [0])
    times = []
    for seed in range(5):
        start = time.perf_counter()
        generator.generate(["a red apple"], [seed])
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)

    rows = [generator.generate([p] * 4, [1, 2, 3, 4]) for p in GRID_PROMPTS]
    grid = np.concatenate([np.concatenate([np.asarray(i) for i in row], 1) for row in rows], 0)
    Image.fromarray(grid).save(OUT / "tiny_grid.jpg", quality=88)
    Image.fromarray(grid).resize((grid.shape[1] // 4, grid.shape[0] // 4), Image.LANCZOS).save(
        OUT / "tiny_grid_small.jpg", quality=88)

    upscaler = {}
    if isinstance(pipe.vae, CascadeAutoencoder):  # the learned 512 px upscaler: how much it beats Lanczos
        renders = [on_background(Image.open(p)) for p in render_icons(args.work_dir) if is_held_out_icon(p)]
        upscaler = {f"upscaler_{k}": v for k, v in upscaler_scores(
            pipe.vae, np.stack(renders[:64]), OUT / "upscaler_grid.jpg").items()}
        compare_on_generated(pipe, ["a red apple", "a cat", "a rocket", "a blue car"], OUT / "upscaler_generated.jpg")

    data = build_dataset(args.work_dir)
    text = np.load(args.work_dir / "text.npy", mmap_mode="r")
    tower = evaluate.train_scorer(args.work_dir, data, text, pipe.tokenizer)
    metrics = evaluate.evaluate(pipe, tower, data, generator.num_inference_steps, generator.guidance_scale, args.n,
                                args.pools)
    evaluate.write_metrics(metrics, OUT / "tiny_metrics.json", seconds_per_image=seconds, model=args.model, **upscaler)
    for name, value in {**metrics.as_dict(), **upscaler}.items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    print(f"seconds per 512x512 image: {seconds:.2f}")


if __name__ == "__main__":
    main()
