"""`Idempotency-Key` on the ClipDrop route, against a real uvicorn, on SQLite and PostgreSQL: a
retry replays the first answer and is not charged again; misuse is refused; failures release the key."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import httpx
from sqlalchemy import select, update

from pixeldrop import idempotency
from pixeldrop.accounts import credits
from pixeldrop.errors import StorageUnavailable
from pixeldrop.storage import IdempotencyKey, utcnow

from ..books import assert_books_balance, ledger, new_payer, requests_by_state
from ..generators import GatedGenerator
from ..server import wait_until
from .test_money import live_server

URL = "/text-to-image/v1"


def post(live, key: str, idempotency_key: str | None = None, prompt: str = "a red apple", seed: str | None = "7",
         accept: str = "image/png") -> httpx.Response:
    headers = {"x-api-key": key, "accept": accept}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    fields = {"prompt": (None, prompt), **({"seed": (None, seed)} if seed is not None else {})}
    return httpx.post(live.url + URL, headers=headers, files=fields, timeout=60)


def replayed(response: httpx.Response) -> bool:
    return response.headers.get("idempotent-replayed") == "true"


def test_a_retry_with_the_same_key_replays_the_first_answer_and_is_not_charged(settings, db, tiny_generator):
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        first = post(live, payer.key, "retry-1", seed=None)  # a random seed: the replay must carry the same one
        assert first.status_code == 200, first.text
        assert not replayed(first) and "idempotent-replayed" not in first.headers
        again = post(live, payer.key, "retry-1", seed=None)
        assert again.status_code == 200 and replayed(again)
        assert again.content == first.content
        for header in ("content-type", "seed", "x-remaining-credits", "x-credits-consumed", "ratelimit-remaining"):
            assert again.headers[header] == first.headers[header], header
        assert first.headers["x-remaining-credits"] == "98"

        assert ledger(db, payer.account_id) == [("free", 100), ("image", -2)], "one charge for the two answers"
        assert requests_by_state(db, payer.account_id) == {"charged": ["charged"]}
        assert credits.balance(db, payer.account_id) == 98

        unkeyed = post(live, payer.key, None, seed=None)
        assert unkeyed.status_code == 200 and not replayed(unkeyed)
        other_key = post(live, payer.key, "retry-2", seed=None)
        assert other_key.status_code == 200 and not replayed(other_key)
        assert credits.balance(db, payer.account_id) == 94
    assert_books_balance(db, payer.account_id)


def test_the_same_key_with_another_request_is_422_and_changes_nothing(settings, db, tiny_generator):
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        assert post(live, payer.key, "once").status_code == 200
        for changed in ({"prompt": "a green apple"}, {"seed": "8"}, {"seed": None}, {"accept": "image/jpeg"}):
            refused = post(live, payer.key, "once", **changed)
            assert refused.status_code == 422, (changed, refused.text)
            assert refused.json() == {"error": "This Idempotency-Key was already used for a different request; "
                                               "use a new key for a new request."}
        assert ledger(db, payer.account_id) == [("free", 100), ("image", -2)]
        assert replayed(post(live, payer.key, "once")), "the key still answers its own request"
    assert_books_balance(db, payer.account_id)


def test_of_two_requests_at_once_with_one_key_one_runs_and_the_other_gets_409(settings, db, tiny_generator):
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        answers: list[httpx.Response] = []
        first = threading.Thread(target=lambda: answers.append(post(live, payer.key, "at-once")))
        first.start()
        assert gated.started.wait(timeout=30)  # the first is being made: its key is claimed
        second = post(live, payer.key, "at-once")
        assert second.status_code == 409, second.text
        assert second.json() == {"error": "A request with this Idempotency-Key is still being answered; "
                                          "retry once it has finished."}
        gated.gate.set()
        first.join(timeout=60)
        assert answers[0].status_code == 200 and not replayed(answers[0])
        third = post(live, payer.key, "at-once")
        assert replayed(third) and third.content == answers[0].content
    assert gated.prompts == ["a red apple"], "the model ran once"
    assert requests_by_state(db, payer.account_id) == {"charged": ["charged"]}
    assert credits.balance(db, payer.account_id) == 98


def keys(db, account_id: int) -> list[tuple[str, str]]:
    """`(key, state)` of the account's Idempotency-Key rows."""
    with db.session() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(IdempotencyKey.key, IdempotencyKey.state).where(IdempotencyKey.account_id == account_id))]


def cannot_store(session, claimed, answer):
    raise StorageUnavailable("The service's storage is unavailable; try again shortly.")


def test_the_charge_and_the_stored_answer_are_one_transaction(settings, db, tiny_generator, monkeypatch):
    """Storing the answer fails inside the charge's transaction: nothing is charged, the key is
    released, the client gets a 503; once storage works, the answer is stored with its charge."""
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        monkeypatch.setattr(idempotency, "complete_within", cannot_store)
        failed = post(live, payer.key, "one-transaction")
        assert failed.status_code == 503 and not replayed(failed), failed.text
        assert credits.balance(db, payer.account_id) == 100
        assert requests_by_state(db, payer.account_id) == {"refunded": ["busy"]}
        assert keys(db, payer.account_id) == [], "the key was released"

        monkeypatch.undo()
        paid = post(live, payer.key, "one-transaction")
        assert paid.status_code == 200 and not replayed(paid)
        assert keys(db, payer.account_id) == [("one-transaction", "done")]
        again = post(live, payer.key, "one-transaction")
        assert replayed(again) and again.content == paid.content
    assert ledger(db, payer.account_id) == [("free", 100), ("image", -2), ("refund", 2), ("image", -2)]
    assert_books_balance(db, payer.account_id)


def test_a_request_whose_key_was_taken_over_is_not_charged(settings, db, tiny_generator):
    """A request that ran past `abandoned_after` lost its key to a retry: the key's answer is the
    retry's, so the first one cannot store its own and charges nothing (503)."""
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        answers: dict[str, httpx.Response] = {}
        first = threading.Thread(target=lambda: answers.update(first=post(live, payer.key, "taken")))
        first.start()
        assert gated.started.wait(timeout=30)
        with db.session() as session:
            first_claim = session.scalar(select(IdempotencyKey.id))
            session.execute(update(IdempotencyKey).values(
                created_at=utcnow() - timedelta(seconds=settings.stale_reservation_seconds + 60)))
        retry = threading.Thread(target=lambda: answers.update(retry=post(live, payer.key, "taken")))
        retry.start()
        wait_until(lambda: keys(db, payer.account_id) == [("taken", "running")]
                   and not _claimed_by(db, first_claim), "the retry to take the key over")
        gated.gate.set()
        first.join(timeout=60)
        retry.join(timeout=60)
        assert answers["first"].status_code == 503, answers["first"].text
        assert "took the key over; nothing was charged" in answers["first"].json()["error"]
        assert answers["retry"].status_code == 200 and not replayed(answers["retry"])
        third = post(live, payer.key, "taken")
        assert replayed(third) and third.content == answers["retry"].content
    assert requests_by_state(db, payer.account_id) == {"refunded": ["busy"], "charged": ["charged"]}
    assert credits.balance(db, payer.account_id) == 98
    assert_books_balance(db, payer.account_id)


def _claimed_by(db, row_id: int) -> bool:
    with db.session() as session:
        return session.get(IdempotencyKey, row_id) is not None


def test_keys_belong_to_their_account(settings, db, tiny_generator):
    with live_server(settings, db, tiny_generator) as live:
        alice = new_payer(db, "alice@example.com")
        bob = new_payer(db, "bob@example.com")
        first = post(live, alice.key, "shared-key")
        other = post(live, bob.key, "shared-key", prompt="bob's own prompt")
        assert first.status_code == other.status_code == 200
        assert not replayed(other)
        assert credits.balance(db, alice.account_id) == credits.balance(db, bob.account_id) == 98


def test_an_expired_key_runs_again(settings, db, tiny_generator):
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        assert post(live, payer.key, "day-old").status_code == 200
        with db.session() as session:  # its 24 hours have passed
            session.execute(update(IdempotencyKey).values(expires_at=utcnow()))
        again = post(live, payer.key, "day-old", prompt="now another request")
        assert again.status_code == 200 and not replayed(again)
        assert replayed(post(live, payer.key, "day-old", prompt="now another request"))
    assert ledger(db, payer.account_id) == [("free", 100), ("image", -2), ("image", -2)]


class FailsOnce:
    """The model falls over on its first image only."""

    steps = 1

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def generate(self, prompts, seeds, progress=None):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the model fell over")
        return self.inner.generate(prompts, seeds)

    def describe(self):
        return self.inner.describe()


def test_a_failed_first_request_releases_its_key(settings, db, tiny_generator):
    with live_server(settings, db, FailsOnce(tiny_generator)) as live:
        payer = new_payer(db)
        failed = post(live, payer.key, "flaky")
        assert failed.status_code == 500 and not replayed(failed)
        retried = post(live, payer.key, "flaky")
        assert retried.status_code == 200 and not replayed(retried), "the 500 was not stored: the retry ran"
        assert replayed(post(live, payer.key, "flaky"))
    assert requests_by_state(db, payer.account_id) == {"refunded": ["failed"], "charged": ["charged"]}
    assert credits.balance(db, payer.account_id) == 98
    assert_books_balance(db, payer.account_id)


def _send_and_hang_up_later(port: int, key: str, idempotency_key: str) -> socket.socket:
    body = b"prompt=a+red+apple&seed=7"
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: test\r\nx-api-key: " + key.encode()
                       + b"\r\nAccept: image/png\r\nIdempotency-Key: " + idempotency_key.encode()
                       + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)
    return connection


def test_a_client_that_hangs_up_releases_its_key(settings, db, tiny_generator):
    gated = GatedGenerator(tiny_generator)
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        gone = _send_and_hang_up_later(live.port, payer.key, "hung-up")
        assert gated.started.wait(timeout=30)
        gone.close()
        wait_until(lambda: requests_by_state(db, payer.account_id).get("refunded") == ["abandoned"], "the refund")
        gated.gate.set()
        retried = post(live, payer.key, "hung-up")
        assert retried.status_code == 200 and not replayed(retried)
    assert requests_by_state(db, payer.account_id) == {"refunded": ["abandoned"], "charged": ["charged"]}
    assert credits.balance(db, payer.account_id) == 98


def test_an_answer_refused_for_credits_is_replayed_as_stripe_does(settings, db, tiny_generator):
    """A request that reached execution keeps its answer, 4xx included: a new attempt takes a new key."""
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db, credits=0)
        broke = post(live, payer.key, "no-money")
        assert broke.status_code == 402 and not replayed(broke)
        credits.add_credits(db, payer.account_id, 2, "operator")
        again = post(live, payer.key, "no-money")
        assert again.status_code == 402 and replayed(again)
        assert again.content == broke.content and again.headers["x-remaining-credits"] == "0"
        assert post(live, payer.key, "new-attempt").status_code == 200
    assert credits.balance(db, payer.account_id) == 0


def test_a_malformed_key_is_400_and_costs_nothing(settings, db, tiny_generator):
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        for bad in ("k" * 256, ""):
            refused = post(live, payer.key, bad)
            assert refused.status_code == 400, refused.text
            assert refused.json() == {"error": "The Idempotency-Key header must be 1 to 255 characters long."}
        assert credits.balance(db, payer.account_id) == 100
        assert post(live, payer.key, "k" * 255).status_code == 200
    assert requests_by_state(db, payer.account_id) == {"refused": ["invalid_request"] * 2, "charged": ["charged"]}
