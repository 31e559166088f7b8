"""Buying packs over HTTP: the Buy button against a local fake of Stripe's API, and the webhook
endpoint with payloads signed the way Stripe signs them."""

from __future__ import annotations

import json

import pytest

from pixeldrop import accounts

from .conftest import csrf, running, sign_up
from .fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, checkout_completed, sign


@pytest.fixture
def stripe_fake():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def stripe_settings(settings, stripe_fake):
    settings.stripe_secret_key = SECRET_KEY
    settings.stripe_webhook_secret = WEBHOOK_SECRET
    settings.stripe_api_base = stripe_fake.url
    return settings


@pytest.fixture
def client(stripe_settings, sqlite_db, tiny_generator):
    with running(stripe_settings, sqlite_db, tiny_generator) as client:
        yield client


def buy(client, size: str = "1000"):
    return client.post("/account/buy", data={"csrf_token": csrf(client, "/account"), "credits": size},
                       follow_redirects=False)


def post_event(client, payload: str, signature: str | None = None):
    return client.post("/webhooks/stripe", content=payload.encode(),
                       headers={"content-type": "application/json",
                                "stripe-signature": signature if signature is not None else sign(payload)})


def test_buy_creates_a_checkout_session_at_stripe_and_redirects_to_it(client, sqlite_db, stripe_fake):
    sign_up(client)
    page = client.get("/account/billing").text
    assert page.count(">Buy</button>") == 5 and "$9.00" in page and "50,000" in page
    answer = buy(client, "1000")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{stripe_fake.url}/pay/cs_test_1"
    [created] = stripe_fake.requests
    assert created["headers"]["Authorization"] == f"Bearer {SECRET_KEY}"
    params = created["params"]
    account = accounts.get_account(sqlite_db, "alice@example.com")
    assert params["mode"] == "payment"
    assert params["metadata[account_id]"] == params["client_reference_id"] == str(account.id)
    assert params["metadata[credits]"] == "1000"
    assert params["line_items[0][price_data][unit_amount]"] == "900"
    assert params["line_items[0][price_data][currency]"] == "usd"
    assert params["line_items[0][quantity]"] == "1"
    assert params["customer_email"] == "alice@example.com"
    assert params["success_url"] == "http://testserver/account/billing?purchase=success"
    assert params["cancel_url"] == "http://testserver/account/billing?purchase=cancelled"
    # Coming back from Stripe grants nothing: only the webhook does.
    back = client.get("/account/billing?purchase=success")
    assert "Your credits are added as soon as Stripe confirms" in back.text
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 100


def test_return_links_use_the_public_url_when_set(stripe_settings, sqlite_db, tiny_generator, stripe_fake):
    stripe_settings.public_url = "https://images.example.com/"
    # The session cookie is Secure now: the browser must be on https to send it back.
    with running(stripe_settings, sqlite_db, tiny_generator, base_url="https://testserver") as client:
        sign_up(client)
        buy(client, "500")
    assert stripe_fake.requests[0]["params"]["success_url"] == "https://images.example.com/account/billing?purchase=success"


def test_unknown_pack_sizes_are_refused(client, stripe_fake):
    sign_up(client)
    answer = buy(client, "777")
    assert answer.status_code == 400 and "no pack of 777 credits" in answer.text
    assert stripe_fake.requests == []


def test_stripe_refusing_is_an_error_page_not_a_crash(stripe_settings, sqlite_db, tiny_generator, stripe_fake):
    stripe_settings.stripe_secret_key = "sk_test_wrong"
    with running(stripe_settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        answer = buy(client)
    assert answer.status_code == 502 and answer.headers["content-type"].startswith("text/html")
    assert "could not start a checkout" in answer.text
    assert len(stripe_fake.requests) == 1


def test_the_paid_webhook_adds_the_pack_once_even_when_replayed(client, sqlite_db, stripe_fake):
    sign_up(client)
    buy(client, "5000")
    payload = checkout_completed(stripe_fake.sessions["cs_test_1"], event_id="evt_paid_1")
    first = post_event(client, payload)
    assert first.status_code == 200 and first.json() == {"received": True, "event": "evt_paid_1", "credited": 5000}
    for _ in range(2):  # Stripe retries; an attacker replays what they captured
        again = post_event(client, payload)
        assert again.status_code == 200 and again.json()["credited"] is None
    account = accounts.get_account(sqlite_db, "alice@example.com")
    assert account.credits == 5100
    [purchase] = [row for row in accounts.usage.ledger(sqlite_db, account.id) if row.reason == "purchase"]
    assert purchase.delta == 5000 and "cs_test_1" in purchase.note
    assert "5,100" in client.get("/account/billing").text


@pytest.mark.parametrize("how", ["wrong secret", "tampered body", "no header", "garbage header", "stale timestamp"])
def test_a_bad_signature_is_400_and_adds_nothing(client, sqlite_db, stripe_fake, how):
    sign_up(client)
    buy(client, "500")
    payload = checkout_completed(stripe_fake.sessions["cs_test_1"])
    signature = {
        "wrong secret": sign(payload, "whsec_someone_else"),
        "tampered body": sign(payload),
        "no header": "",
        "garbage header": "v1=deadbeef",
        "stale timestamp": sign(payload, timestamp=1_600_000_000),
    }[how]
    if how == "tampered body":
        payload = payload.replace('"500"', '"50000"')
    answer = post_event(client, payload, signature)
    assert answer.status_code == 400
    assert answer.json() == {"error": "The webhook's signature does not verify."}
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 100


def test_unpaid_sessions_and_other_events_add_nothing_until_paid(client, sqlite_db, stripe_fake):
    sign_up(client)
    buy(client, "500")
    session = stripe_fake.sessions["cs_test_1"]
    unpaid = post_event(client, checkout_completed(session, payment_status="unpaid"))
    other = json.dumps({"id": "evt_other", "object": "event", "type": "customer.created",
                        "data": {"object": {"id": "cus_1", "object": "customer"}}})
    foreign = checkout_completed({**session, "metadata": {}, "client_reference_id": None})
    for answer in (unpaid, post_event(client, other), post_event(client, foreign)):
        assert answer.status_code == 200 and answer.json()["credited"] is None
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 100
    later = post_event(client, checkout_completed(session, event_type="checkout.session.async_payment_succeeded"))
    assert later.json()["credited"] == 500
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 600


def test_webhooks_are_refused_while_stripe_is_not_configured(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        payload = json.dumps({"id": "evt_1", "object": "event", "type": "checkout.session.completed"})
        answer = post_event(client, payload)
    assert answer.status_code == 503 and "not configured" in answer.json()["error"]
