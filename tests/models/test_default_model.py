"""The shipped default, pixeldrop-tiny, works offline through the normal loading path."""

from __future__ import annotations

import numpy as np
import pytest

from pixeldrop.generation import default_model, load_generator
from pixeldrop.models.tiny import WEIGHTS_DIR
from pixeldrop.settings import Settings


@pytest.fixture(scope="module")
def generator():
    assert (WEIGHTS_DIR / "model_index.json").exists(), "pixeldrop-tiny's weights ship inside the package"
    return load_generator(Settings(warm_up=False, _env_file=None))


def test_default_is_the_shipped_pixeldrop_tiny(generator):
    assert generator.model == default_model() == str(WEIGHTS_DIR)
    described = generator.describe()
    assert described["pipeline"] == "StableDiffusionPipeline"
    assert "pixeldrop-tiny" in described["description"]
    weights = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*.safetensors"))
    assert weights < 60 * 2**20


def test_deterministic_for_a_seed_and_prompt_sensitive(generator):
    (apple,) = generator.generate(["a red apple"], [7])
    (apple_again,) = generator.generate(["a red apple"], [7])
    (other_seed,) = generator.generate(["a red apple"], [8])
    (car,) = generator.generate(["a blue car"], [7])
    a, b, c, d = (np.asarray(i, dtype=np.int16) for i in (apple, apple_again, other_seed, car))
    assert apple.size == (512, 512)
    assert np.array_equal(a, b), "the same prompt and seed give the same image"
    assert np.abs(a - c).mean() > 2
    assert np.abs(a - d).mean() > 2
    assert a.std() > 10, "not a blank image"


def test_a_red_apple_is_mostly_red(generator):
    """A weak but real check of prompt adherence: the apple's saturated pixels are red."""
    images = generator.generate(["a red apple"] * 4, [1, 2, 3, 4])
    reds = 0
    for image in images:
        hsv = np.asarray(image.convert("HSV")).reshape(-1, 3).astype(int)
        saturated = hsv[(hsv[:, 1] > 100) & (hsv[:, 2] > 60)]
        hue = saturated[:, 0] * 360 / 255
        reds += ((hue < 20) | (hue > 340)).mean() > 0.5 if len(saturated) > 500 else 0
    assert reds >= 3
