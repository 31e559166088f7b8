"""Job webhooks: signed events that a real receiver on loopback verifies with the
`standardwebhooks` package, retries, giving up, the address rules and the account's secret."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from pixeldrop import accounts
from pixeldrop.errors import InvalidRequest
from pixeldrop.generation import GenerationWorker
from pixeldrop.jobs import Order, store, webhooks
from pixeldrop.storage import WebhookDelivery

from ..statements import statements
from ..web.conftest import running as running_app
from ..web.conftest import sign_up
from .conftest import KEEP, PRICE, InstantGenerator, new_payer
from .receiver import Receiver
from .test_runner import job_settings, running, until


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def submit(db, payer, url: str, allow_private: bool = True) -> str:
    webhooks.resolve(url, allow_private)  # what the API checks first
    return store.submit(db, payer.account_id, payer.key_id, Order("a red apple", 5, webhook_url=url), PRICE, KEEP,
                        None).job.id


def deliveries(db) -> list[WebhookDelivery]:
    with db.session() as session:
        return list(session.scalars(select(WebhookDelivery)))


def verified(payer_secret: str, request: tuple[dict[str, str], bytes]) -> dict:
    headers, body = request
    return Webhook(payer_secret).verify(body, headers)


def test_a_job_announces_its_end_signed_and_is_retried_after_a_500(db, payer, receiver, tmp_path):
    receiver.answers = [500]
    job = submit(db, payer, receiver.url)
    engine = GenerationWorker(InstantGenerator()).start()

    async def scenario():
        async with running(db, engine, job_settings(tmp_path, webhook_allow_private=True)):
            await until(lambda: len(receiver.requests) == 2, "the webhook, and its retry after the 500")
            await until(lambda: deliveries(db)[0].state == "delivered", "the delivery to be recorded")

    try:
        asyncio.run(scenario())
    finally:
        engine.stop()
    secret = webhooks.account_secret(db, payer.account_id)
    first, second = (verified(secret, request) for request in receiver.requests)
    assert first == second, "a retry sends the same event"
    assert first["type"] == "job.succeeded" and first["timestamp"].endswith("Z")
    assert first["data"] == store.status(db, payer.account_id, job, KEEP).public(), "the job's status, as polled"
    assert first["data"]["status"] == "succeeded" and first["data"]["credits_charged"] == 2
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert len(ids) == 1 and ids == {deliveries(db)[0].id}, "one event, one webhook-id on every attempt"
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):  # another account's secret does not verify it
        Webhook(webhooks.account_secret(db, new_payer(db, "other@example.com").account_id)).verify(body, headers)
    delivery = deliveries(db)[0]
    assert (delivery.attempts, delivery.last_error) == (2, None)


def test_a_canceled_job_is_announced_too(db, payer, receiver, tmp_path):
    engine = GenerationWorker(InstantGenerator(), queue_size=1).start()
    held = engine.admit()  # the queue is full: the job stays queued
    job = submit(db, payer, receiver.url)

    async def scenario():
        async with running(db, engine, job_settings(tmp_path, webhook_allow_private=True)) as runner:
            store.cancel(db, payer.account_id, job, KEEP)
            runner.wake()
            await until(lambda: len(receiver.requests) == 1, "the webhook")

    try:
        asyncio.run(scenario())
    finally:
        held.release()
        engine.stop()
    event = verified(webhooks.account_secret(db, payer.account_id), receiver.requests[0])
    assert event["type"] == "job.canceled" and event["data"]["id"] == job and event["data"]["status"] == "canceled"


def test_a_webhook_is_given_up_once_its_retry_time_is_over(db, payer, receiver, tmp_path):
    receiver.answers = [503] * 10
    submit(db, payer, receiver.url)
    engine = GenerationWorker(InstantGenerator()).start()

    async def scenario():
        async with running(db, engine, job_settings(tmp_path, webhook_allow_private=True, webhook_retry_seconds=0)):
            await until(lambda: deliveries(db) and deliveries(db)[0].state == "failed", "the delivery to give up")

    try:
        asyncio.run(scenario())
    finally:
        engine.stop()
    assert len(receiver.requests) == 1
    assert deliveries(db)[0].last_error == "answered 503"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://224.0.0.1/", "http://[fe80::1]/",
])
def test_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(InvalidRequest, match="private, loopback or link-local"):
        webhooks.resolve(url, allow_private=False)
    assert webhooks.resolve(url, allow_private=True).url.startswith("http://")


@pytest.mark.parametrize("url, reason", [
    ("ftp://8.8.8.8/hook", "http or https"), ("mailto:someone@example.com", "http or https"),
    ("http://user:secret@8.8.8.8/", "user name or password"), ("https://no-such-host.invalid/", "does not resolve"),
    ("http://8.8.8.8/" + "x" * 2048, "longer than 2048"), ("http://[::1/", "cannot be used"),
])
def test_urls_that_are_not_plain_http_addresses_are_refused(url, reason):
    with pytest.raises(InvalidRequest, match=reason):
        webhooks.resolve(url, allow_private=False)


def fake_dns(monkeypatch, names: dict[str, str]) -> None:
    """Resolve these names to these addresses (the machine has no DNS of its own here); others as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        return real(names.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_public_name_is_called_at_the_address_that_was_checked(monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14"})
    target = webhooks.resolve("https://hooks.example.com:8443/in?x=1", allow_private=False)
    assert target.url == "https://93.184.215.14:8443/in?x=1"
    assert target.headers == {"Host": "hooks.example.com:8443"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}


def test_an_address_is_checked_again_when_the_webhook_is_sent(db, payer, receiver, tmp_path, monkeypatch):
    """DNS rebinding: a name that was public at submit and points to loopback when the job ends."""
    fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14"})
    submit(db, payer, f"http://hooks.example.com:{receiver.port}/hook", allow_private=False)
    fake_dns(monkeypatch, {"hooks.example.com": "127.0.0.1"})
    engine = GenerationWorker(InstantGenerator()).start()

    async def scenario():
        async with running(db, engine, job_settings(tmp_path)):
            await until(lambda: deliveries(db) and deliveries(db)[0].last_error, "the refused attempt")

    try:
        asyncio.run(scenario())
    finally:
        engine.stop()
    assert "private, loopback or link-local" in deliveries(db)[0].last_error
    assert receiver.requests == [], "nothing was sent inside the network"


def test_each_account_has_one_secret_made_on_first_use(db, payer):
    secret = webhooks.account_secret(db, payer.account_id)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert webhooks.account_secret(db, payer.account_id) == secret
    assert webhooks.account_secret(db, new_payer(db, "other@example.com").account_id) != secret
    headers = webhooks.signed_headers(secret, "msg_1", json.dumps({"a": 1}), datetime.now(UTC))
    assert Webhook(secret).verify(json.dumps({"a": 1}), headers) == {"a": 1}


def test_the_secret_is_written_only_when_missing(db, payer):
    """Reading it (the account page, every delivery) must not lock the account's row, where its balance is."""
    with statements(db) as first:
        secret = webhooks.account_secret(db, payer.account_id)
    assert len(first.writes("accounts")) == 1
    with statements(db) as again:
        assert webhooks.account_secret(db, payer.account_id) == secret
    assert again.writes() == []


def test_two_first_uses_at_once_get_one_secret(db, payer):
    start, made = threading.Barrier(2), []

    def first_use():
        start.wait()
        made.append(webhooks.account_secret(db, payer.account_id))

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 2 and made[0] == made[1] == webhooks.account_secret(db, payer.account_id)


def test_claiming_a_delivery_reads_the_secret_without_writing_the_account(db, payer):
    job = submit(db, payer, "http://127.0.0.1:9/hook")  # a job with a webhook makes the secret
    store.cancel(db, payer.account_id, job, KEEP)  # its event is queued
    with statements(db) as sent:
        (delivery,) = webhooks.claim_due(db)
    assert delivery.secret == webhooks.account_secret(db, payer.account_id)
    assert sent.writes("accounts") == [] and len(sent.writes("webhook_deliveries")) == 1


def test_the_account_page_shows_the_secret(sqlite_db, tmp_path):
    with running_app(job_settings(tmp_path), sqlite_db, InstantGenerator()) as client:
        sign_up(client, "alice@example.com")
        page = client.get("/account")
    secret = webhooks.account_secret(sqlite_db, accounts.get_account(sqlite_db, "alice@example.com").id)
    assert page.status_code == 200 and f'data-testid="webhook-secret">{secret}<' in page.text
