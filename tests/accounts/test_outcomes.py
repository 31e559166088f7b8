"""A request's outcome is in words; a refusal's comes from its domain error, looked up along the
error's MRO in one table, and PaidGeneration.refusals records it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from pixeldrop import accounts, errors
from pixeldrop.accounts.outcomes import REFUSALS, Outcome, refusal_outcome
from pixeldrop.generation.worker import GenerationWorker
from pixeldrop.paid_generation import PaidGeneration
from pixeldrop.storage import ImageRequest

from ..generators import FailingGenerator

# What the checks run inside `refusals` (rate limit, body, form, format, seed, Idempotency-Key,
# webhook address), admission (a full queue) and reservation can raise, and how each is recorded.
REACHES_RECORD_REFUSAL = {
    errors.InvalidRequest: Outcome.INVALID_REQUEST,
    errors.InvalidParameter: Outcome.INVALID_REQUEST,
    errors.BodyTooLarge: Outcome.BODY_TOO_LARGE,
    errors.BodyTimeout: Outcome.BODY_TIMEOUT,
    errors.NotAcceptable: Outcome.NOT_ACCEPTABLE,
    errors.RateLimited: Outcome.RATE_LIMITED,
    errors.OutOfCredits: Outcome.OUT_OF_CREDITS,
    errors.QueueFull: Outcome.BUSY,
    errors.StorageUnavailable: Outcome.BUSY,
    errors.IdempotencyKeyReused: Outcome.IDEMPOTENCY_CONFLICT,
}


def every_error_class(cls: type[errors.PixeldropError] = errors.PixeldropError):
    yield cls
    for sub in cls.__subclasses__():
        yield from every_error_class(sub)


def raised(cls: type[errors.PixeldropError]) -> errors.PixeldropError:
    """An instance, whatever its constructor asks for: the lookup reads only its class."""
    return cls.__new__(cls)


def test_every_domain_error_has_an_outcome_and_the_checks_have_their_own():
    for cls in every_error_class():
        assert isinstance(refusal_outcome(raised(cls)), Outcome), cls
    for cls, outcome in REACHES_RECORD_REFUSAL.items():
        assert refusal_outcome(raised(cls)) is outcome, cls
    assert set(REFUSALS) <= set(every_error_class()), "the table lists domain errors only"


def test_an_error_class_not_listed_ends_as_its_nearest_listed_ancestor():
    class SlowModel(errors.GenerationTimedOut):  # a ServerBusy, two levels down
        pass

    class Odd(errors.PixeldropError):
        pass

    assert SlowModel not in REFUSALS and errors.GenerationTimedOut not in REFUSALS
    assert refusal_outcome(SlowModel("late")) is Outcome.BUSY
    assert refusal_outcome(errors.InvalidParameter("bad seed", "seed")) is Outcome.INVALID_REQUEST
    assert refusal_outcome(Odd("odd")) is Outcome.REFUSED


def test_outcomes_are_words_not_http_statuses():
    assert all(not outcome.value.isdigit() for outcome in Outcome)
    assert Outcome.OUT_OF_CREDITS == "out_of_credits"  # what the usage table stores


def outcomes(db, account_id: int) -> list[tuple[str, str | None, int | None]]:
    with db.session() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(ImageRequest.state, ImageRequest.outcome, ImageRequest.api_key_id)
            .where(ImageRequest.account_id == account_id).order_by(ImageRequest.id))]


def test_refusals_records_a_domain_error_with_its_outcome_and_lets_it_through(db):
    account = accounts.create_account(db, "ada@example.com", 10)
    key = accounts.create_key(db, "ada@example.com")
    # The model is never reached: a refusal comes before any place in its queue.
    paid = PaidGeneration(db, GenerationWorker(FailingGenerator()), cost=2, deadline_seconds=5,
                          stale_after=timedelta(minutes=10))

    async def checks(error: BaseException | None) -> None:
        async with paid.refusals(account.id, key.info.id):
            if error is not None:
                raise error

    limited = errors.RateLimited("Too many requests.", retry_after=3, limit=5)
    with pytest.raises(errors.RateLimited) as seen:
        asyncio.run(checks(limited))
    assert seen.value is limited, "the caller answers the very error the checks raised"
    with pytest.raises(errors.InvalidParameter):
        asyncio.run(checks(errors.InvalidParameter("The seed must be an integer.", "seed")))
    asyncio.run(checks(None))  # checks that pass record nothing
    with pytest.raises(ValueError):
        asyncio.run(checks(ValueError("a bug, not a refusal")))  # not a domain error: not recorded

    assert outcomes(db, account.id) == [("refused", "rate_limited", key.info.id),
                                        ("refused", "invalid_request", key.info.id)]
    assert accounts.credits.balance(db, account.id) == 10, "a refusal costs nothing"
