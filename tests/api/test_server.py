"""A real `pixeldrop serve` process, driven the way ClipDrop's own snippets drive the API."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from ..http_contract import check_contract
from ..server import Server, cli, wait_until

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


def test_first_run_prints_a_demo_key_and_the_contract_holds(server, tmp_path):
    check_contract(server.url, server.demo_key(), tmp_path)


def test_the_seed_python_snippet_works(server):
    key = server.demo_key()
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


def test_a_crash_mid_generation_loses_no_credit(tmp_path, tiny_model):
    """kill -9 while an image is being made; the next start gives the reservation back."""
    import os
    import signal
    import threading

    from sqlalchemy import create_engine, text

    home = tmp_path / "home"
    assert cli(home, "accounts", "create", "crash@example.com", "--credits", "10").returncode == 0
    key = cli(home, "keys", "create", "crash@example.com").stdout.strip().splitlines()[-1]
    # Enough denoising steps that the request is surely still running when the process dies.
    server = Server(home, "--model", tiny_model, "--steps", "1000", PIXELDROP_WARM_UP="false").start()
    threading.Thread(
        target=lambda: _swallow(lambda: requests.post(server.url + URL_PATH, files={"prompt": (None, "x")},
                                                      headers={"x-api-key": key}, timeout=600)),
        daemon=True,
    ).start()
    engine = create_engine(f"sqlite:///{home / 'pixeldrop.db'}")

    def balance() -> int:
        with engine.connect() as connection:
            return connection.execute(text("SELECT credits FROM accounts")).scalar()

    wait_until(lambda: balance() == 8, "the reservation", timeout=120)  # reserved: generation has begun
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    assert balance() == 8, "the reservation outlives the process"

    # Reservations older than 2 s now count as stale (the deadline must be shorter): the start-up
    # sweep or the periodic one gives this one back.
    restarted = Server(home, "--model", tiny_model, PIXELDROP_GENERATION_DEADLINE_SECONDS="1",
                       PIXELDROP_STALE_RESERVATION_SECONDS="2").start()
    wait_until(lambda: balance() == 10, "the refund", timeout=120)
    restarted.stop()
    with engine.connect() as connection:
        reasons = connection.execute(text("SELECT reason, delta FROM credit_ledger ORDER BY id")).all()
        state = connection.execute(text("SELECT state FROM image_requests")).scalar()
    assert [tuple(r) for r in reasons] == [("free", 10), ("image", -2), ("refund", 2)]
    assert state == "refunded"


def _swallow(call) -> None:
    try:
        call()
    except requests.RequestException:
        pass
