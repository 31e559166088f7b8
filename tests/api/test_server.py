"""A real `pixeldrop serve` process, driven the way ClipDrop's own snippets drive the API."""

from __future__ import annotations

import io
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from ..server import Server, cli

URL_PATH = "/text-to-image/v1"


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def server(home, tiny_model):
    server = Server(home, "--model", tiny_model)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def demo_key(server: Server) -> str:
    """The key that a first run prints, indented on a line of its own."""
    index = next(i for i, line in enumerate(server.lines) if "First run" in line)
    return next(line.strip() for line in server.lines[index:] if line.strip().startswith("pd_"))


def test_first_run_prints_a_demo_key_and_the_seed_curl_snippet_works(server, tmp_path):
    key = demo_key(server)
    result = tmp_path / "result.png"
    # The seed page's curl example, with our URL.
    subprocess.run(
        ["curl", "-sS", "-X", "POST", server.url + URL_PATH, "-H", f"x-api-key: {key}",
         "-F", "prompt=photograph of a cat surfing", "-o", str(result), "-D", str(tmp_path / "headers")],
        check=True, timeout=120,
    )
    headers = (tmp_path / "headers").read_text().lower()
    assert "200 ok" in headers.splitlines()[0]
    assert "x-remaining-credits: 98" in headers
    image = Image.open(result)
    assert image.size == (512, 512) and image.format == "JPEG"


def test_the_seed_python_snippet_works(server):
    key = demo_key(server)
    r = requests.post(server.url + URL_PATH,
                      files={},
                      data={"prompt": "photograph of a cat surfing"},
                      headers={"x-api-key": key})
    assert r.ok, r.text
    assert r.headers["x-remaining-credits"] == "98"
    assert Image.open(io.BytesIO(r.content)).size == (512, 512)
    r = requests.post(server.url + URL_PATH, files={}, data={"prompt": "x"}, headers={"x-api-key": "wrong"})
    assert r.status_code == 403 and r.json() == {"error": "Invalid API key."}
    with pytest.raises(requests.HTTPError):
        r.raise_for_status()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_twelve_concurrent_requests_with_credits_for_five(backend, tmp_path, tiny_model, request):
    home = tmp_path / "home"
    env = {}
    if backend == "postgresql":
        env["PIXELDROP_DATABASE_URL"] = request.getfixturevalue("database_url_postgresql")
    assert cli(home, "accounts", "create", "busy@example.com", "--credits", "10", **env).returncode == 0
    key = cli(home, "keys", "create", "busy@example.com", **env).stdout.strip().splitlines()[-1]
    server = Server(home, "--model", tiny_model, **env).start()
    try:
        def call(_):
            return requests.post(server.url + URL_PATH, files={"prompt": (None, "a cat")},
                                 headers={"x-api-key": key}, timeout=120)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(call, range(12)))
    finally:
        server.stop()
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [402] * 7
    remaining = sorted(int(r.headers["x-remaining-credits"]) for r in responses if r.status_code == 200)
    assert remaining == [0, 2, 4, 6, 8]
    assert all(r.headers["x-remaining-credits"] == "0" for r in responses if r.status_code == 402)
    listing = cli(home, "keys", "list", "busy@example.com", **env)
    assert listing.returncode == 0
