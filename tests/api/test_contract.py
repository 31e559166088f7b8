"""ClipDrop's text-to-image v1 contract, status by status, against the app in-process."""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixeldrop import accounts
from pixeldrop.accounts import credits
from pixeldrop.app import create_app

from ..books import new_payer
from ..generators import FailingGenerator, GatedGenerator

URL = "/text-to-image/v1"


@contextmanager
def running(settings, db, generator):
    with TestClient(create_app(settings, generator=generator, db=db)) as client:
        yield client


@pytest.fixture
def client(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        yield client


def post(client, key=None, prompt="photograph of a cat surfing", accept=None, **kwargs):
    headers = {}
    if key is not None:
        headers["x-api-key"] = key
    if accept is not None:
        headers["accept"] = accept
    if "content" not in kwargs and "data" not in kwargs:
        kwargs["files"] = {"prompt": (None, prompt)}
    return client.post(URL, headers=headers, **kwargs)


def assert_error(response, status: int, fragment: str = ""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert fragment.lower() in body["error"].lower()


def test_success_is_a_512_jpeg_costing_2_credits(client, sqlite_db):
    payer = new_payer(sqlite_db)
    response = post(client, payer.key)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-remaining-credits"] == "98"
    assert response.headers["x-credits-consumed"] == "2"
    assert response.headers["ratelimit-limit"] == "60"
    assert response.headers["ratelimit-remaining"] == "59"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.size == (512, 512)
    assert credits.balance(sqlite_db, payer.account_id) == 98


@pytest.mark.parametrize(
    ("accept", "fmt", "content_type"),
    [
        (None, "JPEG", "image/jpeg"),
        ("*/*", "JPEG", "image/jpeg"),
        ("image/*", "JPEG", "image/jpeg"),
        ("image/png", "PNG", "image/png"),
        ("image/webp", "WEBP", "image/webp"),
        ("image/jpeg", "JPEG", "image/jpeg"),
        ("image/jpg", "JPEG", "image/jpeg"),
        ("image/webp;q=0.5, image/png;q=0.9", "PNG", "image/png"),
        ("text/html;q=1.0, image/webp;q=0.2", "WEBP", "image/webp"),
        ("image/*;q=0.5, image/jpeg;q=0.1", "PNG", "image/png"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "JPEG", "image/jpeg"),
    ],
)
def test_accept_header_chooses_the_format(client, sqlite_db, accept, fmt, content_type):
    key = new_payer(sqlite_db).key
    response = post(client, key, accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    image = Image.open(io.BytesIO(response.content))
    assert image.format == fmt and image.size == (512, 512)


def test_image_star_prefers_png_when_jpeg_is_refused(client, sqlite_db):
    key = new_payer(sqlite_db).key
    response = post(client, key, accept="image/jpeg;q=0, image/*")
    assert response.status_code == 200
    assert response.headers["content-type"] in ("image/png", "image/webp")


@pytest.mark.parametrize("accept", ["text/html", "application/json", "image/gif", "image/png;q=0",
                                    "image/tiff, text/*"])
def test_nothing_acceptable_is_406_and_free(client, sqlite_db, accept):
    payer = new_payer(sqlite_db)
    assert_error(post(client, payer.key, accept=accept), 406, "accept")
    assert credits.balance(sqlite_db, payer.account_id) == 100


def test_operator_can_change_the_default_format(settings, sqlite_db, tiny_generator):
    settings.default_format = "png"
    with running(settings, sqlite_db, tiny_generator) as client:
        key = new_payer(sqlite_db).key
        assert post(client, key).headers["content-type"] == "image/png"
        assert post(client, key, accept="*/*").headers["content-type"] == "image/png"
        assert post(client, key, accept="image/jpeg").headers["content-type"] == "image/jpeg"


def test_urlencoded_body_as_python_requests_sends_it(client, sqlite_db):
    key = new_payer(sqlite_db).key
    response = client.post(URL, headers={"x-api-key": key}, data={"prompt": "a cat, surfing & smiling"})
    assert response.status_code == 200, response.text
    assert response.headers["x-remaining-credits"] == "98"


def test_missing_key_is_401(client):
    assert_error(post(client), 401, "api key")


def test_unknown_and_revoked_keys_are_403(client, sqlite_db):
    payer = new_payer(sqlite_db)
    assert_error(post(client, "pd_12345678_not-a-key"), 403)
    assert_error(post(client, payer.key[:-2] + "zz"), 403)
    accounts.revoke_key(sqlite_db, payer.key)
    assert_error(post(client, payer.key), 403, "revoked")
    assert credits.balance(sqlite_db, payer.account_id) == 100


def test_revocation_keeps_credits_and_a_new_key_uses_them(client, sqlite_db):
    payer = new_payer(sqlite_db)
    assert post(client, payer.key).headers["x-remaining-credits"] == "98"
    accounts.revoke_key(sqlite_db, payer.key[:11])
    assert_error(post(client, payer.key), 403)
    fresh = accounts.create_key(sqlite_db, payer.email).key
    assert post(client, fresh).headers["x-remaining-credits"] == "96"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"files": {"other": (None, "x")}}, "missing prompt"),
        ({"files": {"prompt": (None, "")}}, "empty"),
        ({"files": {"prompt": (None, "   ")}}, "empty"),
        ({"files": {"prompt": (None, "x" * 1001)}}, "maximum is 1000"),
        ({"data": {"prompt": "é" * 1001}}, "maximum is 1000"),
        ({"files": {"prompt": (None, b"caf\xe9 \xff")}}, "utf-8"),
        ({"content": b"prompt=caf%E9", "headers": {"content-type": "application/x-www-form-urlencoded"}}, "utf-8"),
        ({"json": {"prompt": "a cat"}}, "json"),
        ({"content": b"prompt=a cat", "headers": {"content-type": "text/plain"}}, "multipart/form-data"),
        ({"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=XX"}}, "malformed"),
        ({"content": b"--XX\r\n", "headers": {"content-type": "multipart/form-data"}}, "malformed"),
    ],
)
def test_malformed_requests_are_400_and_free(client, sqlite_db, kwargs, fragment):
    payer = new_payer(sqlite_db)
    headers = {"x-api-key": payer.key, **kwargs.pop("headers", {})}
    response = client.post(URL, headers=headers, **kwargs)
    assert_error(response, 400, fragment)
    assert credits.balance(sqlite_db, payer.account_id) == 100


def test_prompt_of_exactly_1000_characters_is_fine(client, sqlite_db):
    key = new_payer(sqlite_db).key
    assert post(client, key, prompt="é" * 1000).status_code == 200


def test_oversized_body_is_413_and_free(client, sqlite_db):
    payer = new_payer(sqlite_db)
    assert_error(post(client, payer.key, prompt="x" * 70_000), 413, "larger")

    def chunks():  # no Content-Length: the limit holds while streaming too
        yield b"prompt="
        for _ in range(100):
            yield b"x" * 1000

    response = client.post(URL, headers={"x-api-key": payer.key, "content-type": "application/x-www-form-urlencoded"},
                           content=chunks())
    assert_error(response, 413)
    assert credits.balance(sqlite_db, payer.account_id) == 100


def test_no_credits_is_402_with_remaining_credits(client, sqlite_db):
    payer = new_payer(sqlite_db, credits=3)
    assert post(client, payer.key).headers["x-remaining-credits"] == "1"
    response = post(client, payer.key)
    assert_error(response, 402, "credits")
    assert response.headers["x-remaining-credits"] == "1"
    assert response.headers["x-credits-consumed"] == "0"
    assert credits.balance(sqlite_db, payer.account_id) == 1


def test_rate_limit_is_per_key_429_with_retry_after_and_free(client, sqlite_db):
    payer = new_payer(sqlite_db, rate_limit=2)
    other = new_payer(sqlite_db, "bob@example.com").key
    assert post(client, payer.key).status_code == 200
    assert post(client, payer.key).status_code == 200
    limited = post(client, payer.key)
    assert_error(limited, 429, "too many")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-limit"] == "2"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert credits.balance(sqlite_db, payer.account_id) == 96
    assert post(client, other).status_code == 200, "other keys have their own limit"


def test_generation_failure_is_500_json_and_refunded(settings, sqlite_db):
    with running(settings, sqlite_db, FailingGenerator()) as client:
        payer = new_payer(sqlite_db)
        assert_error(post(client, payer.key), 500, "failed")
        assert credits.balance(sqlite_db, payer.account_id) == 100


def test_server_stays_responsive_while_generating(settings, sqlite_db, tiny_generator):
    gated = GatedGenerator(tiny_generator)
    with running(settings, sqlite_db, gated) as client:
        key = new_payer(sqlite_db).key
        result = {}
        busy = threading.Thread(target=lambda: result.setdefault("image", post(client, key)))
        busy.start()
        assert gated.started.wait(timeout=30)
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["queue"]["busy"] is True
        gated.gate.set()
        busy.join()
        assert result["image"].status_code == 200


def test_unknown_paths_and_methods_answer_json(client):
    assert_error(client.get("/nope"), 404)
    assert_error(client.get(URL), 405)


def test_health_and_docs(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert "noise" in health["model"]["description"]
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    operation = spec["paths"][URL]["post"]
    assert set(operation["requestBody"]["content"]) == {"multipart/form-data", "application/x-www-form-urlencoded"}
    assert {"200", "400", "401", "402", "403", "406", "429", "500"} <= set(operation["responses"])


def test_servers_sharing_redis_share_each_keys_limit(settings, sqlite_db, tiny_generator, redis_url):
    from pixeldrop.ratelimit import RateLimiter

    RateLimiter(redis_url).reset()
    settings.redis_url = redis_url
    key = new_payer(sqlite_db, rate_limit=2).key
    with running(settings, sqlite_db, tiny_generator) as first, running(settings, sqlite_db, tiny_generator) as second:
        assert post(first, key).status_code == 200
        assert post(second, key).status_code == 200
        assert_error(post(first, key), 429)
        assert_error(post(second, key), 429)
        assert first.get("/healthz").json()["rate_limiter"] == "redis"
    RateLimiter(redis_url).reset()
