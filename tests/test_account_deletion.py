"""Closing an account, on SQLite and PostgreSQL: in one transaction its keys are revoked, its
queued jobs canceled and refunded (a running one is left to finish), its prompts forgotten; and
when any part fails, nothing at all has changed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from pixeldrop import accounts
from pixeldrop.account_deletion import delete_account
from pixeldrop.accounts import credits, passwords
from pixeldrop.errors import AccountNotFound, StorageUnavailable
from pixeldrop.jobs import Order, store, webhooks
from pixeldrop.storage import Account, Job, WebhookDelivery

from .jobs.conftest import KEEP, PRICE, ledger, new_payer, request_outcomes


def jobs_of(db, account_id: int) -> list[tuple[str, str]]:
    with db.session() as session:
        return [tuple(row) for row in session.execute(select(Job.status, Job.prompt)
                                                      .where(Job.account_id == account_id).order_by(Job.id))]


@pytest.fixture
def closing(db):
    """An account with a password, a key, a job that ended, one running and one queued (with a webhook)."""
    payer = new_payer(db, credits=10)
    passwords.set_password(db, payer.email, "correct horse battery")
    ids = [store.submit(db, payer.account_id, payer.key_id, Order(prompt, 3, webhook_url=url), PRICE, KEEP, prompt)
           .job.id for prompt, url in (("ended", None), ("running", None), ("queued", "http://127.0.0.1:9/hook"))]
    store.cancel(db, payer.account_id, ids[0], KEEP)
    assert store.claim_next(db, "elsewhere").public_id == ids[1]
    return payer


def test_closing_revokes_keys_cancels_and_refunds_queued_jobs_and_forgets_prompts(db, closing):
    delete_account(db, closing.account_id, KEEP)
    assert not accounts.list_keys(db, closing.account_id)[0].active
    assert jobs_of(db, closing.account_id) == [("canceled", ""), ("running", "running"), ("canceled", "")]
    before = [("free", 10), *[("image", -PRICE)] * 3, ("refund", PRICE)]  # the first job's refund
    assert ledger(db, closing.account_id) == [*before, ("refund", PRICE)]  # and the queued job's
    assert accounts.get_account(db, closing.email).credits == 10 - PRICE  # the running job's stays reserved
    assert request_outcomes(db, closing.account_id) == ["canceled", None, "canceled"]
    with db.session() as session:
        assert session.scalar(select(Account.deleted_at).where(Account.id == closing.account_id)) is not None
        events = session.scalars(select(WebhookDelivery.payload)).all()
    assert len(events) == 1 and '"job.canceled"' in events[0]  # its receiver is told
    with pytest.raises(AccountNotFound):
        delete_account(db, closing.account_id, KEEP)  # closed already: nothing more happens
    assert ledger(db, closing.account_id) == [*before, ("refund", PRICE)]  # refunded once


def test_a_closing_that_fails_half_way_changes_nothing(db, closing, monkeypatch):
    secret = webhooks.account_secret(db, closing.account_id)

    def storage_down(*_args):
        raise StorageUnavailable("down")

    monkeypatch.setattr(credits, "refund_within", storage_down)  # after the account and its keys are written
    with pytest.raises(StorageUnavailable):
        delete_account(db, closing.account_id, KEEP)
    assert accounts.list_keys(db, closing.account_id)[0].active
    assert jobs_of(db, closing.account_id) == [("canceled", "ended"), ("running", "running"), ("queued", "queued")]
    assert accounts.get_account(db, closing.email).credits == 10 - 2 * PRICE
    assert ledger(db, closing.account_id)[-1] == ("refund", PRICE)  # the first job's, from before
    assert passwords.authenticate(db, closing.email, "correct horse battery").account.id == closing.account_id
    assert webhooks.account_secret(db, closing.account_id) == secret
