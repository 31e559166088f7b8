"""Stripe payments without HTTP: packs, and webhooks crediting once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from pixeldrop import accounts, payments
from pixeldrop.errors import InvalidWebhook
from pixeldrop.settings import Settings

from .web.fake_stripe import WEBHOOK_SECRET, checkout_completed, sign


def stripe_settings(**extra) -> Settings:
    return Settings(stripe_secret_key="sk_test_x", stripe_webhook_secret=WEBHOOK_SECRET, _env_file=None, **extra)


def test_packs_come_from_the_settings():
    settings = Settings(_env_file=None)
    assert [p.credits for p in payments.packs(settings)] == [500, 1000, 5000, 10000, 50000]
    assert [p.price_label for p in payments.packs(settings)][:2] == ["$5.00", "$9.00"]
    assert not payments.enabled(settings)
    assert not payments.enabled(Settings(stripe_secret_key="sk_test_x", _env_file=None))
    assert payments.enabled(stripe_settings())
    euros = Settings(currency="EUR", pack_prices={500: 450}, _env_file=None)
    assert [(p.credits, p.price_label) for p in payments.packs(euros)] == [(500, "€4.50")]
    assert payments.packs(Settings(currency="jpy", pack_prices={500: 700}, _env_file=None))[0].price_label == "¥700"
    assert payments.packs(Settings(currency="chf", pack_prices={500: 450}, _env_file=None))[0].price_label == "4.50 CHF"


def test_concurrent_deliveries_of_one_event_credit_once(db):
    account = accounts.create_account(db, "ada@example.com", 0)
    session = {"id": "cs_1", "metadata": {"account_id": str(account.id), "credits": "1000"}}
    payload = checkout_completed(session, event_id="evt_race")
    settings = stripe_settings()
    outcomes, barrier = [], threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        outcomes.append(payments.handle_webhook(db, settings, payload.encode(), sign(payload)))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.credited or 0 for o in outcomes) == [0, 0, 0, 1000]
    assert accounts.get_account(db, "ada@example.com").credits == 1000


def test_two_paid_events_for_one_checkout_session_credit_once(db):
    """Stripe sends `completed` and, for delayed methods, `async_payment_succeeded` for one session."""
    account = accounts.create_account(db, "ada@example.com", 0)
    session = {"id": "cs_twice", "metadata": {"account_id": str(account.id), "credits": "500"}}
    settings = stripe_settings()
    outcomes = []
    for event_id, event_type in [("evt_a", "checkout.session.completed"),
                                 ("evt_b", "checkout.session.async_payment_succeeded")]:
        payload = checkout_completed(session, event_id=event_id, event_type=event_type)
        outcomes.append(payments.handle_webhook(db, settings, payload.encode(), sign(payload)))
    assert [o.credited for o in outcomes] == [500, None]
    assert accounts.get_account(db, "ada@example.com").credits == 500


@pytest.mark.parametrize("metadata", [{"credits": "100000000000000000000000"}, {"credits": "-5"},
                                      {"credits": "500", "account_id": "99999999999999"}])
def test_out_of_range_metadata_is_refused_and_changes_nothing(db, metadata):
    account = accounts.create_account(db, "ada@example.com", 0)
    session = {"id": "cs_big", "metadata": {"account_id": str(account.id), **metadata}}
    payload = checkout_completed(session)
    with pytest.raises(InvalidWebhook):
        payments.handle_webhook(db, stripe_settings(), payload.encode(), sign(payload))
    assert accounts.get_account(db, "ada@example.com").credits == 0
