"""The idempotency-key rules in storage, on SQLite and on PostgreSQL: one claim wins, answers are
replayed, keys belong to accounts, and expired or abandoned keys run again."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from pixeldrop import accounts, idempotency
from pixeldrop.errors import IdempotencyKeyReused, IdempotentRequestInProgress
from pixeldrop.storage import Base, IdempotencyKey

DAY, STALE = timedelta(hours=24), timedelta(minutes=10)
ASKED = idempotency.fingerprint("POST", "/text-to-image/v1", {"prompt": "a red apple", "seed": 7, "format": "png"})
ANSWER = idempotency.Answer(200, [("content-type", "image/png"), ("seed", "7")], b"\x89PNG not really")


def _account(db, email: str = "alice@example.com") -> int:
    return accounts.create_account(db, email, free_credits=10).id


def _rows(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(IdempotencyKey))


def test_the_migration_makes_the_table_the_model_describes(db):
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if "idempotency_keys" in repr(d)] == []


def test_the_fingerprint_is_what_was_asked_not_how_it_was_written():
    same = idempotency.fingerprint("post", "/text-to-image/v1", {"format": "png", "seed": 7, "prompt": "a red apple"})
    assert same == ASKED
    for other in [("POST", "/v1/images/generations", {"prompt": "a red apple", "seed": 7, "format": "png"}),
                  ("POST", "/text-to-image/v1", {"prompt": "a red apple ", "seed": 7, "format": "png"}),
                  ("POST", "/text-to-image/v1", {"prompt": "a red apple", "seed": None, "format": "png"}),
                  ("POST", "/text-to-image/v1", {"prompt": "a red apple", "seed": 7, "format": "jpeg"})]:
        assert idempotency.fingerprint(*other) != ASKED, other


def test_a_claimed_key_refuses_a_second_claim_then_replays_its_answer(db):
    account_id = _account(db)
    first = idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE)
    assert isinstance(first, idempotency.Claim)
    with pytest.raises(IdempotentRequestInProgress):
        idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE)
    with pytest.raises(IdempotencyKeyReused):
        idempotency.claim(db, account_id, "k-1", "another request", DAY, STALE)

    assert idempotency.complete(db, first, ANSWER)
    assert not idempotency.complete(db, first, ANSWER), "an answer is stored once"
    assert idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE) == ANSWER
    assert idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE) == ANSWER
    with pytest.raises(IdempotencyKeyReused):
        idempotency.claim(db, account_id, "k-1", "another request", DAY, STALE)
    assert _rows(db) == 1


def test_a_released_key_runs_again(db):
    account_id = _account(db)
    first = idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE)
    idempotency.release(db, first)
    assert _rows(db) == 0
    again = idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE)
    assert isinstance(again, idempotency.Claim) and again != first


def test_keys_belong_to_their_account(db):
    alice, bob = _account(db), _account(db, "bob@example.com")
    assert isinstance(idempotency.claim(db, alice, "shared", ASKED, DAY, STALE), idempotency.Claim)
    assert isinstance(idempotency.claim(db, bob, "shared", "bob's own request", DAY, STALE), idempotency.Claim)


def test_an_expired_answer_is_forgotten_and_its_key_runs_again(db):
    account_id = _account(db)
    first = idempotency.claim(db, account_id, "k-1", ASKED, timedelta(0), STALE)  # expires at once
    assert idempotency.complete(db, first, ANSWER)
    assert idempotency.forget_expired(db, STALE) == 1 and _rows(db) == 0

    second = idempotency.claim(db, account_id, "k-2", ASKED, timedelta(0), STALE)
    assert idempotency.complete(db, second, ANSWER)
    third = idempotency.claim(db, account_id, "k-2", "another request, now allowed", DAY, STALE)
    assert isinstance(third, idempotency.Claim), "the expired row is taken over by the new claim"
    assert _rows(db) == 1


def test_a_running_claim_is_never_forgotten_unless_abandoned(db):
    account_id = _account(db)
    first = idempotency.claim(db, account_id, "k-1", ASKED, timedelta(0), STALE)  # past its lifetime, but running
    assert idempotency.forget_expired(db, STALE) == 0
    with pytest.raises(IdempotentRequestInProgress):
        idempotency.claim(db, account_id, "k-1", ASKED, DAY, STALE)

    # Its process died: once older than the stale age, the next claim takes the key over.
    taken_over = idempotency.claim(db, account_id, "k-1", ASKED, DAY, timedelta(0))
    assert isinstance(taken_over, idempotency.Claim) and taken_over != first
    assert not idempotency.complete(db, first, ANSWER), "the dead claim's answer is not stored over the new one"
    idempotency.release(db, first)
    assert _rows(db) == 1, "releasing the dead claim leaves the new one"
    assert idempotency.complete(db, taken_over, ANSWER)


def test_an_abandoned_claim_past_its_lifetime_is_forgotten(db):
    account_id = _account(db)
    idempotency.claim(db, account_id, "k-1", ASKED, timedelta(0), STALE)
    assert idempotency.forget_expired(db, STALE) == 0, "running, and not yet abandoned"
    assert idempotency.forget_expired(db, timedelta(0)) == 1 and _rows(db) == 0


def test_of_claims_racing_for_one_key_exactly_one_wins(db):
    account_id = _account(db)
    racers = 8
    start = threading.Barrier(racers)
    results: list[object] = []

    def race() -> None:
        start.wait()
        try:
            results.append(idempotency.claim(db, account_id, "raced", ASKED, DAY, STALE))
        except IdempotentRequestInProgress as error:
            results.append(error)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == racers
    assert sum(isinstance(result, idempotency.Claim) for result in results) == 1, results
    assert sum(isinstance(result, IdempotentRequestInProgress) for result in results) == racers - 1
    assert _rows(db) == 1
