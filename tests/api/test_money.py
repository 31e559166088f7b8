"""No credit is lost or taken for nothing when clients hang up, queues fill, deadlines pass or
the database fails: each case against a real uvicorn on a loopback port, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import uvicorn

from pixeldrop.accounts import credits
from pixeldrop.app import create_app

from ..books import assert_books_balance, ledger, new_payer, requests_by_state
from ..generators import GatedGenerator
from ..server import free_port, wait_until

URL = "/text-to-image/v1"


@dataclass
class Live:
    url: str
    app: object

    @property
    def services(self):
        return self.app.state.services

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextmanager
def live_server(settings, db, generator) -> Iterator[Live]:
    """The app under a real uvicorn in a thread, so that clients can really hang up."""
    app = create_app(settings, generator=generator, db=db)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the server to start")
    try:
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def open_request(port: int, key: str, prompt: str) -> socket.socket:
    """A whole request sent on a raw socket, whose answer is not read (the client may then hang up)."""
    body = urlencode({"prompt": prompt}).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: test\r\nx-api-key: " + key.encode()
                       + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)
    return connection


def post(live: Live, key: str, prompt: str = "a red apple", **kwargs) -> httpx.Response:
    return httpx.post(live.url + URL, headers={"x-api-key": key}, files={"prompt": (None, prompt)}, timeout=60,
                      **kwargs)


def post_in_background(live: Live, key: str) -> tuple[threading.Thread, list[httpx.Response]]:
    """A request in a thread of its own; its answer lands in the list once the thread ends."""
    answers: list[httpx.Response] = []
    client = threading.Thread(target=lambda: answers.append(post(live, key)))
    client.start()
    return client, answers


def test_a_client_that_hangs_up_is_not_charged_and_its_queued_job_never_runs(settings, db, tiny_generator):
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        running = open_request(live.port, payer.key, "running when its client leaves")
        assert gated.started.wait(timeout=30)
        queued = open_request(live.port, payer.key, "queued when its client leaves")
        wait_until(lambda: len(requests_by_state(db, payer.account_id).get("pending", [])) == 2, "two reservations")

        queued.close()
        wait_until(lambda: requests_by_state(db, payer.account_id).get("refunded") == ["abandoned"],
                   "the queued one refunded")
        running.close()
        wait_until(lambda: requests_by_state(db, payer.account_id).get("refunded") == ["abandoned"] * 2,
                   "both refunded")
        assert credits.balance(db, payer.account_id) == 100

        gated.gate.set()
        answered = post(live, payer.key, "a client that stays")
        assert answered.status_code == 200
        assert answered.headers["x-remaining-credits"] == "98"
    assert gated.prompts == ["running when its client leaves", "a client that stays"], \
        "the job whose client left while it was queued never reached the model"
    assert requests_by_state(db, payer.account_id) == {"refunded": ["abandoned", "abandoned"], "charged": ["charged"]}
    assert_books_balance(db, payer.account_id)


def test_a_full_queue_is_503_before_any_credit_moves(settings, db, tiny_generator):
    settings.queue_size = 1
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        busy_key = new_payer(db, "busy@example.com").key
        payer = new_payer(db, credits=2)  # exactly one image's worth
        first = open_request(live.port, busy_key, "keeps the model busy")
        assert gated.started.wait(timeout=30)
        second = open_request(live.port, busy_key, "takes the only queue place")
        wait_until(lambda: live.services.engine.queued == 1, "the queue to fill")

        refused = post(live, payer.key)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert ledger(db, payer.account_id) == [("free", 2)], "a 503 writes no ledger row"
        assert requests_by_state(db, payer.account_id) == {"refused": ["busy"]}
        assert credits.balance(db, payer.account_id) == 2
        gated.gate.set()
        for connection in (first, second):
            connection.close()
        wait_until(lambda: live.services.engine.queued == 0, "the queue to drain")
        assert post(live, payer.key).status_code == 200
    assert credits.balance(db, payer.account_id) == 0


def test_the_generation_deadline_ends_in_503_and_refunds(settings, db, tiny_generator):
    settings.generation_deadline_seconds = 0.5
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        late = post(live, payer.key)
        assert late.status_code == 503, late.text
        assert "not ready within 0.5 seconds" in late.json()["error"]
        assert credits.balance(db, payer.account_id) == 100
        assert requests_by_state(db, payer.account_id) == {"refunded": ["busy"]}
        gated.gate.set()
    assert_books_balance(db, payer.account_id)


def test_the_sweeper_never_refunds_a_request_this_process_is_serving(settings, db, tiny_generator):
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        client, answers = post_in_background(live, payer.key)
        assert gated.started.wait(timeout=30)
        paid = live.services.paid
        paid.stale_after = timedelta(0)  # every pending reservation now looks stale...
        assert asyncio.run(paid.sweep()) == 0, "...but the live one is this process's own"
        gated.gate.set()
        client.join()
    assert answers[0].status_code == 200
    assert requests_by_state(db, payer.account_id) == {"charged": ["charged"]}
    assert credits.balance(db, payer.account_id) == 98
