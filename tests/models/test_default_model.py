"""The shipped default, pixeldrop-tiny, works offline through the normal loading path."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import requests
import torch
import torch.nn.functional as F
from PIL import Image

from pixeldrop.generation import default_model, load_generator
from pixeldrop.models.tiny import WEIGHTS_DIR
from pixeldrop.models.tiny.architecture import CascadeAutoencoder
from pixeldrop.models.tiny.data import downsample
from pixeldrop.settings import Settings

from ..server import Server, cli, free_port


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


def mostly_red(image: Image.Image) -> bool:
    """A weak but real check of prompt adherence: most of the picture's saturated pixels are red."""
    hsv = np.asarray(image.convert("HSV")).reshape(-1, 3).astype(int)
    saturated = hsv[(hsv[:, 1] > 100) & (hsv[:, 2] > 60)]
    hue = saturated[:, 0] * 360 / 255
    return len(saturated) > 500 and ((hue < 20) | (hue > 340)).mean() > 0.5


def test_a_red_apple_is_mostly_red(generator):
    images = generator.generate(["a red apple"] * 4, [1, 2, 3, 4])
    assert sum(mostly_red(image) for image in images) >= 3


def hub_unreachable(tmp_path) -> dict[str, str]:
    """Environment for a process whose every HTTP request fails: proxies on a closed port, an empty
    model cache, and no HF_HUB_OFFLINE to hide a download attempt behind."""
    dead = f"http://127.0.0.1:{free_port()}"
    return {"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-cache"), "NO_PROXY": "", "no_proxy": "",
            **{name: dead for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")}}


def test_generate_and_the_api_make_a_red_apple_with_the_network_cut(tmp_path):
    """The issue's "done": a fresh home, no model named, no hub reachable: the CLI and the API both
    answer "a red apple" with a red 512x512 picture."""
    home, offline = tmp_path / "home", hub_unreachable(tmp_path)
    out = tmp_path / "apple.png"
    made = cli(home, "generate", "a red apple", "-o", str(out), "--seed", "1", **offline)
    assert made.returncode == 0, made.stderr
    apple = Image.open(out)
    assert apple.size == (512, 512) and mostly_red(apple)

    server = Server(home, **offline)
    try:
        server.start()
        answer = requests.post(server.url + "/text-to-image/v1", data={"prompt": "a red apple"},
                               headers={"x-api-key": server.demo_key(), "accept": "image/png"}, timeout=120)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-remaining-credits"] == "98"
    served = Image.open(io.BytesIO(answer.content))
    assert served.format == "PNG" and served.size == (512, 512) and mostly_red(served)


def test_the_pipeline_itself_paints_512_px(generator):
    assert isinstance(generator.pipeline.vae, CascadeAutoencoder)
    with torch.inference_mode():
        images = generator.pipeline(["a red apple"], num_inference_steps=2, output_type="np").images
    assert images.shape == (1, 512, 512, 3), "no resize between the model and the answer"


def outlined_disc() -> np.ndarray:
    """A flat red disc with a dark outline on white, drawn at 512 px: an emoji-like ground truth."""
    yy, xx = np.mgrid[:512, :512]
    radius = np.hypot(yy - 256, xx - 256)
    image = np.full((512, 512, 3), 255, dtype=np.uint8)
    image[radius < 180] = (60, 40, 40)
    image[radius < 168] = (220, 40, 40)
    return image


def test_the_upscaler_beats_a_lanczos_enlargement_on_a_shape_it_never_saw(generator):
    vae = generator.pipeline.vae
    render = outlined_disc()
    target = torch.from_numpy(render).permute(2, 0, 1)[None].float() / 127.5 - 1
    view = torch.from_numpy(np.array(downsample(render))).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        latents = vae.encode(view.to(vae.dtype)).latent_dist.mean
        painted = vae.decode(latents).sample.float().clamp(-1, 1)
        small = ((vae.decode_small(latents).float().clamp(-1, 1) + 1) * 127.5).round().byte()
    enlarged = Image.fromarray(small[0].permute(1, 2, 0).numpy()).resize((512, 512), Image.LANCZOS)
    lanczos = torch.from_numpy(np.array(enlarged)).permute(2, 0, 1)[None].float() / 127.5 - 1

    def psnr(images: torch.Tensor) -> float:
        return 10 * math.log10(4.0 / F.mse_loss(images, target).item())

    assert psnr(painted) > psnr(lanczos) + 0.5
