"""Seeds and A1111 metadata on every entry point that makes an image: the ClipDrop route (a real
`pixeldrop serve`), the playground, and `pixeldrop generate`. The tests' tiny pipeline draws its
noise from the seed, so different seeds give different pixels."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pixeldrop.generation import default_model
from pixeldrop.generation.metadata import public_model_name
from pixeldrop.seeds import MAX_SEED

from ..books import new_payer
from ..server import Server, cli
from ..web.conftest import csrf, running, sign_up
from .test_money import live_server

URL_PATH = "/text-to-image/v1"
TINY_STEPS = 2  # tests/tiny_pipeline.py's recipe


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    server = Server(tmp_path_factory.mktemp("seeds") / "home", "--model", tiny_model)
    try:
        yield server.start()
    finally:
        server.stop()


def post(url: str, key: str, seed: str | None = None, accept: str = "image/png",
         prompt: str = "a red apple") -> httpx.Response:
    fields = {"prompt": (None, prompt), **({"seed": (None, seed)} if seed is not None else {})}
    return httpx.post(url + URL_PATH, headers={"x-api-key": key, "accept": accept}, files=fields, timeout=120)


def pixels(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def parameters(content: bytes) -> str | None:
    return Image.open(io.BytesIO(content)).info.get("parameters")


def a1111(prompt: str, seed: int, model: str) -> str:
    return f"{prompt}\nSteps: {TINY_STEPS}, Seed: {seed}, Size: 512x512, Model: {Path(model).name}"


def test_the_same_prompt_and_seed_give_the_same_bytes_over_http(server):
    key = server.demo_key()
    for accept in ("image/jpeg", "image/png", "image/webp"):
        first, again = post(server.url, key, "7", accept), post(server.url, key, "7", accept)
        assert first.status_code == again.status_code == 200, first.text
        assert first.headers["seed"] == again.headers["seed"] == "7"
        assert first.content == again.content, accept
    other = post(server.url, key, "8")
    assert other.headers["seed"] == "8"
    assert not np.array_equal(pixels(other.content), pixels(first.content)), "another seed, another image"


def test_a_random_seed_is_told_and_makes_the_image_again(server):
    key = server.demo_key()
    unseeded = post(server.url, key, accept="image/jpeg")
    seed = int(unseeded.headers["seed"])
    assert 0 <= seed <= MAX_SEED
    assert post(server.url, key, str(seed), accept="image/jpeg").content == unseeded.content
    assert int(post(server.url, key, accept="image/jpeg").headers["seed"]) != seed, "a new one each time"


def test_the_extremes_are_seeds_and_anything_else_is_400_for_free(server):
    key = server.demo_key()
    for seed in ("0", str(MAX_SEED), " 42 "):
        assert post(server.url, key, seed).status_code == 200, seed
    remaining = post(server.url, key, "1").headers["x-remaining-credits"]
    for seed in ("-1", str(MAX_SEED + 1), "abc", "1.5", "1e3", "+5", "٣"):
        refused = post(server.url, key, seed)
        assert refused.status_code == 400, seed
        assert refused.json() == {"error": f"seed must be an integer from 0 to {MAX_SEED}."}
    urlencoded = httpx.post(server.url + URL_PATH, headers={"x-api-key": key}, timeout=60,
                            data={"prompt": "a red apple", "seed": "x"})
    assert urlencoded.status_code == 400
    after = post(server.url, key, "1")
    assert int(after.headers["x-remaining-credits"]) == int(remaining) - 2, "the refusals cost nothing"


def test_png_answers_carry_a1111_parameters_with_the_model_named_not_located(server, tiny_model):
    key = server.demo_key()
    png = post(server.url, key, "7", prompt="une pomme rouge, ünïcödé")
    assert parameters(png.content) == a1111("une pomme rouge, ünïcödé", 7, tiny_model)
    assert str(Path(tiny_model).parent) not in parameters(png.content)
    assert parameters(post(server.url, key, "7", accept="image/jpeg").content) is None  # JPEG carries no text


def test_a_client_that_sends_nothing_new_gets_the_headers_it_always_got_plus_the_seed(server):
    answer = httpx.post(server.url + URL_PATH, headers={"x-api-key": server.demo_key()}, timeout=120,
                        files={"prompt": (None, "a red apple")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert set(answer.headers) == {"date", "server", "content-type", "content-length", "x-remaining-credits",
                                   "x-credits-consumed", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
                                   "seed"}


def test_the_published_schema_documents_the_seed_and_the_idempotency_key(server):
    operation = httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"][URL_PATH]["post"]
    for media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        seed = operation["requestBody"]["content"][media]["schema"]["properties"]["seed"]
        assert seed == {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "description": seed["description"]}
    assert operation["responses"]["200"]["headers"]["seed"]["required"] is True
    key_parameter = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert key_parameter["in"] == "header" and key_parameter["schema"]["maxLength"] == 255
    assert {"409", "422"} <= set(operation["responses"])


def test_models_are_named_not_located():
    assert public_model_name(default_model()) == "pixeldrop-tiny"
    assert public_model_name("stabilityai/sd-turbo") == "stabilityai/sd-turbo"
    assert public_model_name("/srv/models/my-sd") == "my-sd", "a replica's folder, absent here: still no path"


def test_image_metadata_false_leaves_pngs_without_parameters(settings, sqlite_db, tiny_generator):
    settings.image_metadata = False
    with live_server(settings, sqlite_db, tiny_generator) as live:
        key = new_payer(sqlite_db).key
        png = post(live.url, key, "7")
        assert png.status_code == 200 and png.headers["seed"] == "7"
        assert Image.open(io.BytesIO(png.content)).format == "PNG" and parameters(png.content) is None


def _playground(client, seed: str, fmt: str = "png"):
    return client.post("/playground", data={"csrf_token": csrf(client, "/playground"), "prompt": "a cat",
                                            "format": fmt, "seed": seed})


def _playground_image(page) -> bytes:
    return base64.b64decode(re.search(r'<img src="data:image/\w+;base64,([^"]+)"', page.text).group(1))


def test_the_playground_takes_a_seed_and_says_which_it_used(settings, sqlite_db, tiny_generator, tiny_model):
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        assert 'name="seed"' in client.get("/playground").text
        first, again = _playground(client, "7"), _playground(client, "7")
        assert first.status_code == again.status_code == 200, first.text
        assert first.headers["seed"] == "7" and 'data-testid="seed">7<' in first.text
        assert _playground_image(first) == _playground_image(again)
        assert parameters(_playground_image(first)) == a1111("a cat", 7, tiny_model)

        unseeded = _playground(client, "")
        seed = int(unseeded.headers["seed"])
        assert f'data-testid="seed">{seed}<' in unseeded.text
        assert _playground_image(_playground(client, str(seed))) == _playground_image(unseeded)

        refused = _playground(client, "-1")
        assert refused.status_code == 400 and f"seed must be an integer from 0 to {MAX_SEED}." in refused.text
        assert 'data-testid="playground-balance">92<' in refused.text, "4 images charged, the refusal free"


def test_the_playground_leaves_metadata_out_when_told(settings, sqlite_db, tiny_generator):
    settings.image_metadata = False
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        assert parameters(_playground_image(_playground(client, "7"))) is None


def test_generate_prints_its_seed_which_makes_the_image_again(tmp_path, tiny_model):
    home, unseeded, seeded = tmp_path / "home", tmp_path / "unseeded.png", tmp_path / "seeded.png"
    first = cli(home, "generate", "a red apple", "-o", str(unseeded), "--model", tiny_model)
    assert first.returncode == 0, first.stderr
    seed = int(re.search(r"saved .*unseeded\.png \(512x512, seed (\d+)\)", first.stderr).group(1))
    again = cli(home, "generate", "a red apple", "-o", str(seeded), "--model", tiny_model, "--seed", str(seed))
    assert again.returncode == 0, again.stderr
    assert seeded.read_bytes() == unseeded.read_bytes()
    assert parameters(seeded.read_bytes()) == a1111("a red apple", seed, tiny_model)

    bare = tmp_path / "bare.png"
    quiet = cli(home, "generate", "a red apple", "-o", str(bare), "--model", tiny_model, "--seed", str(seed),
                PIXELDROP_IMAGE_METADATA="false")
    assert quiet.returncode == 0 and parameters(bare.read_bytes()) is None
    assert np.array_equal(pixels(bare.read_bytes()), pixels(seeded.read_bytes())), "the same pixels, no text"


def test_generate_refuses_a_bad_seed_before_loading_anything(tmp_path):
    for seed in ("-1", str(MAX_SEED + 1)):
        refused = cli(tmp_path / "home", "generate", "a red apple", "-o", str(tmp_path / "x.png"), "--seed", seed)
        assert refused.returncode == 2, refused.stderr
        (line,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert line == f"error: --seed: seed must be an integer from 0 to {MAX_SEED}."
    assert not (tmp_path / "x.png").exists()
