"""Page forms are bounded before anything parses them (64 KiB, no file parts), and every page
answer carries a Content-Security-Policy that the templates keep to."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
import starlette.formparsers

from pixeldrop.app import create_app
from pixeldrop.web import forms
from pixeldrop.web.pages import HERE

from .conftest import csrf, keys_of, sign_up

FORM = "application/x-www-form-urlencoded"
CHUNK = 16 * 1024


def test_a_form_over_64_kib_gets_413_and_changes_nothing(client, sqlite_db):
    sign_up(client)
    token = csrf(client, "/account")
    too_big = client.post("/account/keys", data={"csrf_token": token, "name": "x" * forms.LIMIT})
    assert too_big.status_code == 413 and too_big.headers["content-type"].startswith("text/html")
    assert "64 KiB" in too_big.text
    assert keys_of(sqlite_db, "alice@example.com") == []
    just_under = client.post("/account/keys", data={"csrf_token": token, "name": "x" * (forms.LIMIT - 200)})
    assert just_under.status_code == 200
    assert len(keys_of(sqlite_db, "alice@example.com")) == 1


def test_a_form_with_a_file_part_gets_400_and_nothing_is_spooled(client, sqlite_db, monkeypatch):
    spooled = []
    real = starlette.formparsers.SpooledTemporaryFile

    def recording(*args, **kwargs):
        spooled.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", recording)
    sign_up(client)
    token = csrf(client, "/account")
    answer = client.post("/account/keys", data={"csrf_token": token, "name": "laptop"},
                         files={"upload": ("big.bin", b"\0" * 1024)})
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html")
    assert spooled == [] and keys_of(sqlite_db, "alice@example.com") == []
    # The same fields as multipart without a file part are a form like any other.
    fields = client.post("/account/keys", files={"csrf_token": (None, token), "name": (None, "laptop")})
    assert fields.status_code == 200 and keys_of(sqlite_db, "alice@example.com")[0].name == "laptop"


async def _post_in_process(app, path: str, content, headers: dict[str, str]) -> httpx.Response:
    """httpx's ASGI transport hands the app the body only as the app asks for it, so what the
    app did not read was never produced (TestClient reads a whole body before the app starts)."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                   base_url="http://testserver") as client:
        return await client.post(path, content=content, headers=headers)


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
def test_a_huge_form_is_refused_before_it_is_read(settings, sqlite_db, tiny_generator, declared):
    chunks = 256  # 4 MiB, where an unbounded parser would read every byte
    produced = 0

    async def body():
        nonlocal produced
        for _ in range(chunks):
            produced += 1
            yield b"x" * CHUNK

    headers = {"content-type": FORM}
    if declared:
        headers["content-length"] = str(chunks * CHUNK)
    app = create_app(settings, generator=tiny_generator, db=sqlite_db)
    answer = asyncio.run(_post_in_process(app, "/login", body(), headers))
    assert answer.status_code == 413
    assert produced <= (0 if declared else forms.LIMIT // CHUNK + 1), produced


def test_every_page_answer_carries_the_security_headers(client):
    answers = {
        "page": client.get("/login"),
        "redirect": client.get("/account", follow_redirects=False),
        "refused form": client.post("/login", data={"email": "a@example.com"}),
        "too large": client.post("/login", content=b"x" * (forms.LIMIT + 1), headers={"content-type": FORM}),
    }
    assert [answer.status_code for answer in answers.values()] == [200, 303, 403, 413]
    for what, answer in answers.items():
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy, what
        assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy, what
        assert answer.headers["x-content-type-options"] == "nosniff", what
        assert answer.headers["referrer-policy"] == "same-origin", what
        assert answer.headers["cache-control"] == "no-store", what
    script = client.get("/static/pixeldrop.js")
    assert script.status_code == 200 and script.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in script.headers["content-security-policy"]
    assert "no-store" not in script.headers.get("cache-control", "")  # static files may be cached


@pytest.mark.parametrize("template", sorted(path.name for path in (HERE / "templates").glob("*.html")))
def test_templates_keep_to_the_policy(template):
    """No inline script, style or event handler: the policy would block them."""
    html = (HERE / "templates" / template).read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", html, re.IGNORECASE)
