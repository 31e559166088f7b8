"""ClipDrop's contract, checked over HTTP against any running pixeldrop: the same checks run
against the local engine and the Ray engine, so that scaling out changes nothing a client sees."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import requests
from PIL import Image

URL_PATH = "/text-to-image/v1"


def check_contract(base_url: str, key: str, tmp_path: Path) -> None:
    """Run on an account with 100 credits and a fresh key; it spends 4 of them."""
    # The seed page's curl example, with our URL.
    result, headers = tmp_path / "result.jpg", tmp_path / "headers"
    subprocess.run(["curl", "-sS", "-X", "POST", base_url + URL_PATH, "-H", f"x-api-key: {key}",
                    "-F", "prompt=photograph of a cat surfing", "-o", str(result), "-D", str(headers)],
                   check=True, timeout=300)
    lines = headers.read_text().lower().splitlines()
    assert "200 ok" in lines[0]
    assert "x-remaining-credits: 98" in lines and "x-credits-consumed: 2" in lines
    with Image.open(result) as image:
        assert image.size == (512, 512) and image.format == "JPEG"

    def post(prompt="a red apple", api_key: str | None = key, **headers) -> requests.Response:
        sent = {"accept": headers.get("accept", "*/*")}
        if api_key is not None:
            sent["x-api-key"] = api_key
        return requests.post(base_url + URL_PATH, files={"prompt": (None, prompt)}, headers=sent, timeout=300)

    png = post(accept="image/png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["x-remaining-credits"] == "96"
    assert Image.open(io.BytesIO(png.content)).size == (512, 512)
    assert post(api_key=None).json() == {"error": "No api key provided."}
    assert post(api_key="pd_wrong").status_code == 403
    empty = post(prompt=" ")
    assert empty.status_code == 400 and set(empty.json()) == {"error"}
    assert post(accept="text/html").status_code == 406
    assert post(prompt="x" * 1001).status_code == 400
