"""The OpenAI-compatible routes, driven by the official `openai` client as its users would drive
it (`base_url=.../v1`, a pixeldrop key as `api_key`), against a real `pixeldrop serve` on SQLite
and on PostgreSQL; and the money rules for several images at once under faults (a full queue, a
model that fails, a client that hangs up), against the app under a real uvicorn.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from sqlalchemy import select, update

from pixeldrop import accounts, idempotency, images_store
from pixeldrop.accounts import credits
from pixeldrop.storage import Database, ImageRequest, StoredImage, utcnow

from ..books import Payer, assert_books_balance, ledger, new_payer, requests_by_state
from ..conftest import _fresh_postgres_database
from ..generators import FailingGenerator, GatedGenerator
from ..server import Server, wait_until
from .test_idempotency import cannot_store, keys
from .test_money import live_server, open_request

GENERATIONS = "/v1/images/generations"


@dataclass
class Served:
    url: str
    db: Database
    model: str  # the name the server gives its model

    def account(self, credits: int = 100, rate_limit: int | None = None) -> Payer:
        """A fresh account and a key of it (the servers' database outlives each test)."""
        return new_payer(self.db, f"{uuid.uuid4().hex[:12]}@example.com", credits, rate_limit)

    def client(self, key: str) -> openai.OpenAI:
        # No retries: a 429 or a 5xx must reach the test, not be sent again.
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory, tiny_model) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("openai")
    url = f"sqlite:///{home / 'pixeldrop.db'}" if request.param == "sqlite" else _fresh_postgres_database()
    db = Database.open(url)
    server = Server(home, "--model", tiny_model, PIXELDROP_DATABASE_URL=url).start()
    try:
        yield Served(server.url, db, Path(tiny_model).resolve().name)
    finally:
        server.stop()
        db.close()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def error_of(response: httpx.Response) -> dict:
    """OpenAI's error shape, exactly: one `error` object with its four fields."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_one_image_as_base64_png_with_its_seed_and_parameters(served):
    payer = served.account()
    client = served.client(payer.key)
    assert [model.id for model in client.models.list()] == [served.model]
    raw = client.images.with_raw_response.generate(prompt="a red apple", model=served.model, size="512x512")
    (item,) = raw.parse().data
    seed = item.model_extra["seed"]
    assert item.revised_prompt is None and item.url is None
    assert raw.headers["seed"] == str(seed)
    assert (raw.headers["x-credits-consumed"], raw.headers["x-remaining-credits"]) == ("2", "98")
    image = decode(item.b64_json)
    assert (image.format, image.size) == ("PNG", (512, 512))
    parameters = image.info["parameters"]
    assert parameters.startswith("a red apple\nSteps: ") and parameters.endswith(
        f", Seed: {seed}, Size: 512x512, Model: {served.model}")
    assert ledger(served.db, payer.account_id) == [("free", 100), ("image", -2)]
    assert requests_by_state(served.db, payer.account_id) == {"charged": ["charged"]}


def test_n_images_are_paid_together_and_take_consecutive_seeds(served):
    payer = served.account()
    client = served.client(payer.key)
    raw = client.images.with_raw_response.generate(prompt="a blue bird", n=2, extra_body={"seed": 41})
    answer = raw.parse()
    assert [item.model_extra["seed"] for item in answer.data] == [41, 42]
    assert "seed" not in raw.headers  # one seed per image: they are in the body
    assert (raw.headers["x-credits-consumed"], raw.headers["x-remaining-credits"]) == ("4", "96")
    first, second = (decode(item.b64_json) for item in answer.data)
    assert first.tobytes() != second.tobytes()
    # Image i of a request with seed S is the image of seed S + i, made alone.
    (alone,) = client.images.generate(prompt="a blue bird", extra_body={"seed": 42}).data
    assert decode(alone.b64_json).tobytes() == second.tobytes()
    assert ledger(served.db, payer.account_id) == [("free", 100), ("image", -4), ("image", -2)]
    with served.db.session() as session:
        assert session.execute(select(ImageRequest.state, ImageRequest.credits)
                               .where(ImageRequest.account_id == payer.account_id).order_by(ImageRequest.id)).all() \
            == [("charged", 4), ("charged", 2)]
    assert_books_balance(served.db, payer.account_id)


def test_a_retry_with_the_same_idempotency_key_is_answered_again_and_paid_once(served):
    """The openai client's own retries send an Idempotency-Key; pixeldrop honours it, as OpenAI does."""
    payer = served.account()
    client = served.client(payer.key)
    retry = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    first = client.images.with_raw_response.generate(prompt="a red apple", n=2, user="u-1", extra_headers=retry)
    again = client.images.with_raw_response.generate(prompt="a red apple", n=2, user="u-1", extra_headers=retry)
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.http_response.content == first.http_response.content
    assert ledger(served.db, payer.account_id) == [("free", 100), ("image", -4)]
    with pytest.raises(openai.UnprocessableEntityError) as reused:
        client.images.generate(prompt="a green apple", extra_headers=retry)
    assert set(reused.value.body) == {"message", "type", "param", "code"}  # OpenAI's shape, on replays too
    assert ledger(served.db, payer.account_id) == [("free", 100), ("image", -4)]
    assert_books_balance(served.db, payer.account_id)


def test_output_formats(served):
    payer = served.account()
    client = served.client(payer.key)
    for output_format, pillow_name in [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")]:
        (item,) = client.images.generate(prompt="a green leaf", output_format=output_format).data
        image = decode(item.b64_json)
        assert (image.format, image.size) == (pillow_name, (512, 512)), output_format
    assert credits.balance(served.db, payer.account_id) == 94


def test_urls_serve_the_images_to_the_same_account_only_until_they_expire(served):
    payer = served.account()
    answer = served.client(payer.key).images.generate(prompt="a red car", n=2, response_format="url",
                                                output_format="jpeg")
    urls = [item.url for item in answer.data]
    assert all(url.startswith(served.url + "/v1/images/files/") for url in urls) and urls[0] != urls[1]
    for url in urls:
        got = httpx.get(url, headers={"Authorization": f"Bearer {payer.key}"})
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(got.content)).format == "JPEG"

    another_key_of_the_account = accounts.create_key(served.db, accounts.get_account_by_id(
        served.db, payer.account_id).email).key
    assert httpx.get(urls[0], headers={"x-api-key": another_key_of_the_account}).status_code == 200
    strangers_key = served.account().key
    refused = httpx.get(urls[0], headers={"Authorization": f"Bearer {strangers_key}"})
    assert refused.status_code == 404 and error_of(refused)["type"] == "invalid_request_error"
    assert error_of(httpx.get(urls[0]))["message"].startswith("No API key provided")
    assert httpx.get(served.url + "/v1/images/files/no-such-image",
                     headers={"Authorization": f"Bearer {payer.key}"}).status_code == 404

    # Expired: refused at once, then deleted by the sweep.
    image_id = urls[0].rsplit("/", 1)[1]
    with served.db.session() as session:
        session.execute(update(StoredImage).where(StoredImage.id == image_id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert httpx.get(urls[0], headers={"Authorization": f"Bearer {payer.key}"}).status_code == 404
    assert httpx.get(urls[1], headers={"Authorization": f"Bearer {payer.key}"}).status_code == 200
    images_store.delete_expired(served.db)
    with served.db.session() as session:
        assert session.scalars(select(StoredImage.id).where(StoredImage.account_id == payer.account_id)).all() \
            == [urls[1].rsplit("/", 1)[1]]
    assert ledger(served.db, payer.account_id) == [("free", 100), ("image", -4)]


def test_keys_wrong_missing_and_in_x_api_key(served):
    payer = served.account()
    with pytest.raises(openai.AuthenticationError) as wrong:
        served.client("pd_wrong").images.generate(prompt="a cat")
    assert wrong.value.status_code == 401
    assert wrong.value.body == {"message": "Invalid API key.", "type": "invalid_request_error", "param": None,
                                "code": "invalid_api_key"}
    missing = httpx.post(served.url + GENERATIONS, json={"prompt": "a cat"})
    assert missing.status_code == 401 and error_of(missing)["message"].startswith("No API key provided")
    models = httpx.get(served.url + "/v1/models", headers={"Authorization": "Bearer pd_wrong"})
    assert models.status_code == 401 and error_of(models)["code"] == "invalid_api_key"

    as_clipdrop_sends_it = httpx.post(served.url + GENERATIONS, json={"prompt": "a cat"},
                                      headers={"x-api-key": payer.key}, timeout=120)
    assert as_clipdrop_sends_it.status_code == 200
    assert decode(as_clipdrop_sends_it.json()["data"][0]["b64_json"]).size == (512, 512)
    assert credits.balance(served.db, payer.account_id) == 98


def test_bad_requests_are_400_naming_the_parameter_and_cost_nothing(served):
    payer = served.account()
    client = served.client(payer.key)
    with pytest.raises(openai.BadRequestError) as bad_size:
        client.images.generate(prompt="a cat", size="1024x1024")
    assert bad_size.value.status_code == 400 and bad_size.value.body["param"] == "size"
    assert "512x512" in bad_size.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad_model:
        client.images.generate(prompt="a cat", model="dall-e-3")
    assert bad_model.value.body["param"] == "model" and served.model in bad_model.value.body["message"]

    cases: list[tuple[dict | list, str]] = [
        ({"prompt": "a cat", "n": "2"}, "n"), ({"prompt": "a cat", "n": 2.5}, "n"), ({"prompt": "a cat", "n": 0}, "n"),
        ({"prompt": "a cat", "n": 5}, "n"), ({"prompt": "a cat", "quality": "hd"}, "quality"), ({}, "prompt"),
        ({"prompt": 7}, "prompt"), ({"prompt": " \u200b"}, "prompt"), ({"prompt": "x" * 1001}, "prompt"),
        ({"prompt": "a cat", "seed": -1}, "seed"), ({"prompt": "a cat", "seed": 2**32}, "seed"),
        ({"prompt": "a cat", "seed": True}, "seed"), ({"prompt": "a cat", "response_format": "png"}, "response_format"),
        ({"prompt": "a cat", "output_format": "gif"}, "output_format"), ({"prompt": "a cat", "size": 512}, "size"),
    ]
    headers = {"Authorization": f"Bearer {payer.key}"}
    for body, param in cases:
        answer = httpx.post(served.url + GENERATIONS, json=body, headers=headers)
        assert answer.status_code == 400, (body, answer.text)
        assert error_of(answer)["param"] == param and error_of(answer)["type"] == "invalid_request_error", body
    for content, content_type in [(b"{", "application/json"), (b"[]", "application/json"),
                                  (b"\xff", "application/json"), (b"prompt=a+cat", "application/x-www-form-urlencoded"),
                                  (json.dumps({"prompt": "a cat"}).encode(), "text/plain")]:
        answer = httpx.post(served.url + GENERATIONS, content=content,
                            headers={**headers, "content-type": content_type})
        assert answer.status_code == 400 and error_of(answer)["param"] is None, (content, answer.text)
    too_big = httpx.post(served.url + GENERATIONS, json={"prompt": "x" * 70_000}, headers=headers)
    assert too_big.status_code == 413 and error_of(too_big)["type"] == "invalid_request_error"

    assert ledger(served.db, payer.account_id) == [("free", 100)]
    assert requests_by_state(served.db, payer.account_id) == {
        "refused": ["invalid_request"] * (2 + len(cases) + 5) + ["body_too_large"]}


def test_an_account_that_cannot_pay_for_all_n_pays_for_none(served):
    payer = served.account(credits=3)
    client = served.client(payer.key)
    with pytest.raises(openai.APIStatusError) as refused:
        client.images.generate(prompt="a cat", n=2)
    assert refused.value.status_code == 402
    assert refused.value.body["type"] == refused.value.body["code"] == "insufficient_quota"
    assert "costs 4 credits" in refused.value.body["message"] and "has 3" in refused.value.body["message"]
    assert refused.value.response.headers["x-remaining-credits"] == "3"
    assert ledger(served.db, payer.account_id) == [("free", 3)]
    assert credits.balance(served.db, payer.account_id) == 3
    assert len(client.images.generate(prompt="a cat", n=1).data) == 1
    assert credits.balance(served.db, payer.account_id) == 1
    assert requests_by_state(served.db, payer.account_id) == {"refused": ["out_of_credits"], "charged": ["charged"]}


def test_rate_limited_per_key_in_openai_shape(served):
    payer = served.account(rate_limit=1)
    client = served.client(payer.key)
    assert len(client.images.generate(prompt="a cat").data) == 1
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(prompt="a cat")
    assert limited.value.status_code == 429
    assert (limited.value.body["type"], limited.value.body["code"]) == ("requests", "rate_limit_exceeded")
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert requests_by_state(served.db, payer.account_id) == {"charged": ["charged"], "refused": ["rate_limited"]}
    assert credits.balance(served.db, payer.account_id) == 98


def test_the_clipdrop_route_keeps_its_own_error_shape(served):
    key = served.account().key
    wrong = httpx.post(served.url + "/text-to-image/v1", files={"prompt": (None, "a cat")},
                       headers={"x-api-key": "pd_wrong"})
    assert wrong.status_code == 403 and wrong.json() == {"error": "Invalid API key."}
    missing = httpx.post(served.url + "/text-to-image/v1", files={"prompt": (None, "a cat")})
    assert missing.status_code == 401 and missing.json() == {"error": "No api key provided."}
    empty = httpx.post(served.url + "/text-to-image/v1", files={"prompt": (None, " ")}, headers={"x-api-key": key})
    assert empty.status_code == 400 and empty.json() == {"error": "The prompt is empty."}


def test_unknown_paths_and_methods_under_the_openai_paths_answer_in_openai_shape(served):
    key = served.account().key
    bearer = {"Authorization": f"Bearer {key}"}
    for path in ("/v1/images/edits", "/v1/images", "/v1/models/pixeldrop-tiny"):
        missing = httpx.post(served.url + path, json={"prompt": "a cat"}, headers=bearer)
        assert missing.status_code == 404, path
        assert error_of(missing) == {"message": "Not found.", "type": "invalid_request_error", "param": None,
                                     "code": None}, path
    wrong_method = httpx.get(served.url + GENERATIONS, headers=bearer)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert error_of(wrong_method)["message"] == "Method not allowed."
    with pytest.raises(openai.NotFoundError) as not_found:  # as the official client sees it
        served.client(key).get("/images/variations", cast_to=dict)
    assert not_found.value.body["type"] == "invalid_request_error"
    elsewhere = httpx.get(served.url + "/v1/imagesx")  # not below the OpenAI paths: the ClipDrop shape
    assert elsewhere.status_code == 404 and elsewhere.json() == {"error": "Not found."}
    assert httpx.get(served.url + "/text-to-image/v1").json() == {"error": "Method not allowed."}


# --- Several images at once, under faults (the app under a real uvicorn, SQLite and PostgreSQL) ---

def post_json(live, key: str, body: dict, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(live.url + GENERATIONS, json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})},
                      timeout=60)


def open_json_request(port: int, key: str, body: dict) -> socket.socket:
    """A whole request on a raw socket, whose answer is not read (the client may then hang up)."""
    payload = json.dumps(body).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"POST " + GENERATIONS.encode() + b" HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer "
                       + key.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                       + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    return connection


def test_a_queue_without_room_for_all_n_is_503_before_any_credit_moves(settings, db, tiny_generator):
    settings.queue_size = 2
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        busy_key = new_payer(db, "busy@example.com").key
        payer = new_payer(db)
        running = open_request(live.port, busy_key, "keeps the model busy")
        assert gated.started.wait(timeout=30)
        queued = open_request(live.port, busy_key, "takes one of the two places")
        wait_until(lambda: live.services.engine.queued == 1, "one place taken")

        refused = post_json(live, payer.key, {"prompt": "two images", "n": 2})
        assert refused.status_code == 503 and error_of(refused)["type"] == "server_error"
        assert int(refused.headers["retry-after"]) >= 1
        assert live.services.engine.queued == 1, "the place it could take was given back"
        assert ledger(db, payer.account_id) == [("free", 100)]
        assert requests_by_state(db, payer.account_id) == {"refused": ["busy"]}

        gated.gate.set()
        for connection in (running, queued):
            connection.close()
        wait_until(lambda: live.services.engine.queued == 0, "the queue to drain")
        assert len(post_json(live, payer.key, {"prompt": "two images", "n": 2}).json()["data"]) == 2
    assert ledger(db, payer.account_id) == [("free", 100), ("image", -4)]


def test_a_model_that_fails_refunds_every_image(settings, db):
    with live_server(settings, db, FailingGenerator()) as live:
        payer = new_payer(db)
        failed = post_json(live, payer.key, {"prompt": "three images", "n": 3})
        assert failed.status_code == 500 and error_of(failed)["type"] == "server_error"
    assert ledger(db, payer.account_id) == [("free", 100), ("image", -6), ("refund", 6)]
    assert requests_by_state(db, payer.account_id) == {"refunded": ["failed"]}
    assert_books_balance(db, payer.account_id)


def test_a_client_that_hangs_up_pays_for_none_and_its_queued_images_never_run(settings, db, tiny_generator):
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        leaving = open_json_request(live.port, payer.key, {"prompt": "left behind", "n": 3})
        assert gated.started.wait(timeout=30)  # the first image is being made, two are queued
        wait_until(lambda: live.services.engine.queued == 2, "two images queued")
        leaving.close()
        wait_until(lambda: requests_by_state(db, payer.account_id).get("refunded") == ["abandoned"], "the refund")
        assert credits.balance(db, payer.account_id) == 100
        gated.gate.set()
        wait_until(lambda: live.services.engine.queued == 0, "the queue to drain")
        assert post_json(live, payer.key, {"prompt": "a client that stays"}).status_code == 200
    assert gated.prompts == ["left behind", "a client that stays"], "the queued images never reached the model"
    assert ledger(db, payer.account_id) == [("free", 100), ("image", -6), ("refund", 6), ("image", -2)]


def test_n_images_and_their_stored_answer_are_charged_in_one_transaction(settings, db, tiny_generator, monkeypatch):
    """With an Idempotency-Key, storing the answer fails inside the charge's transaction: none of
    the images is charged, the key is released, the answer is a 503 in OpenAI's shape."""
    body = {"prompt": "two images", "n": 2}
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        monkeypatch.setattr(idempotency, "complete_within", cannot_store)
        failed = post_json(live, payer.key, body, {"Idempotency-Key": "n-at-once"})
        assert failed.status_code == 503 and error_of(failed)["type"] == "server_error"
        assert credits.balance(db, payer.account_id) == 100
        assert keys(db, payer.account_id) == [], "the key was released"

        monkeypatch.undo()
        paid = post_json(live, payer.key, body, {"Idempotency-Key": "n-at-once"})
        assert paid.status_code == 200 and len(paid.json()["data"]) == 2
        again = post_json(live, payer.key, body, {"Idempotency-Key": "n-at-once"})
        assert again.headers["idempotent-replayed"] == "true" and again.content == paid.content
        assert again.headers["ratelimit-limit"] == paid.headers["ratelimit-limit"], "the quota is in the stored answer"
    assert ledger(db, payer.account_id) == [("free", 100), ("image", -4), ("refund", 4), ("image", -4)]
    assert requests_by_state(db, payer.account_id) == {"refunded": ["busy"], "charged": ["charged"]}
    assert_books_balance(db, payer.account_id)


def test_urls_use_the_public_url_when_set(settings, db, tiny_generator):
    settings.public_url = "https://images.example.com/"
    with live_server(settings, db, tiny_generator) as live:
        key = new_payer(db).key
        answer = post_json(live, key, {"prompt": "a boat", "response_format": "url"})
    (item,) = answer.json()["data"]
    assert item["url"].startswith("https://images.example.com/v1/images/files/")
