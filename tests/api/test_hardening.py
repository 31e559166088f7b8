"""Inputs a probe of a real server got wrong, checked against the app in-process: invisible
prompts, malformed Accept headers, HEAD /healthz, and what /healthz tells strangers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pixeldrop import accounts
from pixeldrop.accounts import credits
from pixeldrop.app import create_app

URL = "/text-to-image/v1"
OPERATOR_TOKEN = "operator-secret-token-123"


@pytest.fixture
def client(settings, sqlite_db, tiny_generator):
    settings.operator_token = OPERATOR_TOKEN
    with TestClient(create_app(settings, generator=tiny_generator, db=sqlite_db)) as client:
        yield client


@pytest.fixture
def key(sqlite_db) -> str:
    accounts.create_account(sqlite_db, "alice@example.com", free_credits=100)
    return accounts.create_key(sqlite_db, "alice@example.com").key


def balance(db) -> int:
    return credits.balance(db, accounts.get_account(db, "alice@example.com").id)


@pytest.mark.parametrize("prompt", ["\x00", "\u200b", "\ufeff", "\x00\u200b\ufeff \t\n\u3000\u2028", "\u3164\ufe0f"],
                         ids=["nul", "zero-width-space", "bom", "mixed", "hangul-filler"])
def test_prompts_with_nothing_visible_are_400_and_free(client, sqlite_db, key, prompt):
    response = client.post(URL, headers={"x-api-key": key}, files={"prompt": (None, prompt)})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "The prompt is empty."}
    assert balance(sqlite_db) == 100


def test_invisible_characters_around_a_visible_one_are_a_prompt(client, sqlite_db, key):
    response = client.post(URL, headers={"x-api-key": key}, files={"prompt": (None, "\ufeff\u200bcat\x00")})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("accept", ["garbage", "image/png, garbage", "image/png/extra", ";;", "image/png;q=-1",
                                    "image/png;q=nan", "image/webp;q=2", "image/png;q=abc", "image/png;q="])
def test_a_malformed_accept_header_gets_the_default_format(client, key, accept):
    response = client.post(URL, headers={"x-api-key": key, "accept": accept}, files={"prompt": (None, "a cat")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"


def test_head_healthz_is_200_without_a_body(client):
    response = client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


def test_healthz_shows_strangers_the_models_name_not_its_path(client, tiny_model):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {OPERATOR_TOKEN}"},
                    {"authorization": "Bearer "}, {"authorization": "Bearer \u00e9t\u00e9".encode()}):
        response = client.get("/healthz", headers=headers)
        assert response.status_code == 200
        assert response.json()["model"]["model"] == Path(tiny_model).name
        assert str(Path(tiny_model).parent) not in response.text


def test_healthz_shows_the_operator_everything(client, tiny_model):
    response = client.get("/healthz", headers={"authorization": f"bearer {OPERATOR_TOKEN}"})
    assert response.json()["model"]["model"] == tiny_model


def test_no_operator_token_means_nobody_sees_the_path(settings, sqlite_db, tiny_generator, tiny_model):
    settings.operator_token = None
    with TestClient(create_app(settings, generator=tiny_generator, db=sqlite_db)) as client:
        response = client.get("/healthz", headers={"authorization": "Bearer "})
    assert response.json()["model"]["model"] == Path(tiny_model).name
