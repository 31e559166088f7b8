#!/usr/bin/env python3
"""The contact sheet of a new user's first prompts: twelve ordinary prompts, four seeds each,
made by a model as the server makes them (512x512), labelled, one row per prompt.

    python bench/first_prompts.py [--model DIR] [--out docs/first-prompts.jpg]

The prompts are those of issue 15 (what a new user tried first, README's example among them).
The sheet is for a person to look at: which prompts does the picture show, and do the seeds
differ? Rows are 4 x 256 px wide (the images halved) so that the sheet stays small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from pixeldrop.generation import default_model
from pixeldrop.generation.diffusers_backend import DiffusersGenerator

PROMPTS = [
    "a red apple", "a cat face", "a blue car", "a rocket", "a house", "a yellow flower",
    "a mountain landscape", "a watercolor painting of a lighthouse", "a logo for a coffee shop",
    "a portrait of an old man", "a bowl of ramen", "photograph of a cat surfing",
]
SEEDS = [1, 2, 3, 4]
TILE, LABEL = 256, 28


def sheet(generator: DiffusersGenerator) -> Image.Image:
    page = Image.new("RGB", (TILE * len(SEEDS), (TILE + LABEL) * len(PROMPTS)), "white")
    draw = ImageDraw.Draw(page)
    for row, prompt in enumerate(PROMPTS):
        top = row * (TILE + LABEL)
        draw.text((8, top + 8), f'"{prompt}"  (seeds {", ".join(map(str, SEEDS))})', fill="black")
        for column, image in enumerate(generator.generate([prompt] * len(SEEDS), SEEDS)):
            page.paste(image.resize((TILE, TILE), Image.Resampling.LANCZOS), (column * TILE, top + LABEL))
    return page


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "first-prompts.jpg")
    args = parser.parse_args()
    page = sheet(DiffusersGenerator(args.model, device="cpu", precision="fp32"))
    page.save(args.out, quality=85)
    print(f"wrote {args.out} ({len(PROMPTS)} prompts x {len(SEEDS)} seeds)")


if __name__ == "__main__":
    main()
