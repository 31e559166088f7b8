"""Jobs in the database, on SQLite and PostgreSQL: submit, cancel, claims, endings, and the money
through all of them (each job charged once if it succeeded, refunded otherwise)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from pixeldrop.accounts import credits
from pixeldrop.accounts.outcomes import Outcome
from pixeldrop.errors import JobNotFound, JobResultExpired, JobStateConflict, OutOfCredits, StorageUnavailable
from pixeldrop.jobs import Order, store
from pixeldrop.storage import Job, JobResult, utcnow

from ..statements import statements
from .conftest import KEEP, PRICE, ledger, new_payer, request_outcomes, request_states

PNG = b"\x89PNG pretend"


def submit(db, payer, prompt: str = "a red apple", **order) -> store.Submitted:
    return store.submit(db, payer.account_id, payer.key_id, Order(prompt, seed=order.pop("seed", 7), **order),
                        PRICE, KEEP, prompt)


def test_submit_reserves_the_price_and_queues_jobs_in_order(db, payer):
    first, second = submit(db, payer), submit(db, payer, "a blue car", seed=4_294_967_295, output_format="webp")
    assert (first.remaining, second.remaining) == (8, 6)
    assert first.job.status == "queued" and first.job.id.startswith("job_") and first.job.id != second.job.id
    assert second.job.seed == 4_294_967_295 and second.job.output_format == "webp"
    assert [first.job.queue_position, second.job.queue_position] == [1, 2]
    assert first.job.credits_charged == 0 and first.job.started_at is None and first.job.result_expires_at is None
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("image", -2)]
    assert request_states(db, payer.account_id) == ["pending", "pending"]
    store.cancel(db, payer.account_id, first.job.id, KEEP)
    assert store.status(db, payer.account_id, second.job.id, KEEP).queue_position == 1


def test_an_account_that_cannot_pay_gets_no_job(db):
    poor = new_payer(db, "poor@example.com", credits=1)
    with pytest.raises(OutOfCredits) as refused:
        submit(db, poor)
    assert refused.value.remaining == 1
    assert ledger(db, poor.account_id) == [("free", 1)]
    assert request_states(db, poor.account_id) == ["refused"]
    assert request_outcomes(db, poor.account_id) == ["out_of_credits"]
    with db.session() as session:
        assert session.scalars(select(Job)).all() == []


def test_what_submit_stores_with_the_job_commits_with_it_or_neither_does(db, payer):
    """`also` (an Idempotency-Key's stored answer) runs in the job's transaction: should it fail,
    there is no job and the reservation is given back; when it works it sees the job, queued."""
    def fails(session, submitted):
        assert session.scalar(select(Job.status).where(Job.public_id == submitted.job.id)) == "queued"
        raise StorageUnavailable("the answer could not be stored")

    with pytest.raises(StorageUnavailable):
        store.submit(db, payer.account_id, payer.key_id, Order("a red apple", seed=7), PRICE, KEEP, None, fails)
    with db.session() as session:
        assert session.scalars(select(Job.id)).all() == []
    assert credits.balance(db, payer.account_id) == 10
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("refund", 2)]
    assert request_outcomes(db, payer.account_id) == [Outcome.BUSY]

    seen: list[store.Submitted] = []
    submitted = store.submit(db, payer.account_id, payer.key_id, Order("a red apple", seed=7), PRICE, KEEP, None,
                             lambda session, submitted: seen.append(submitted))
    assert seen == [submitted] and submitted.job.status == "queued" and submitted.remaining == 8
    assert store.status(db, payer.account_id, submitted.job.id, KEEP).status == "queued"


def test_cancel_refunds_a_queued_job_once_and_refuses_a_started_one(db, payer):
    queued, running = submit(db, payer), submit(db, payer)
    run = store.claim_next(db, "test")
    assert run is not None and run.public_id == queued.job.id
    with pytest.raises(JobStateConflict, match="running: only a queued job can be canceled"):
        store.cancel(db, payer.account_id, queued.job.id, KEEP)

    canceled, balance = store.cancel(db, payer.account_id, running.job.id, KEEP)
    assert canceled.status == "canceled" and canceled.finished_at is not None and balance == 8
    with pytest.raises(JobStateConflict, match="canceled"):
        store.cancel(db, payer.account_id, running.job.id, KEEP)
    with pytest.raises(JobStateConflict, match="was canceled, so it has no image"):
        store.result(db, payer.account_id, running.job.id, KEEP)
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("image", -2), ("refund", 2)]
    assert request_outcomes(db, payer.account_id) == [None, "canceled"], "the usage says it was canceled"
    assert store.claim_next(db, "test") is None, "a canceled job never runs"


def test_another_accounts_job_is_not_found(db, payer):
    job = submit(db, payer).job
    other = new_payer(db, "other@example.com")
    for call in (store.status, store.result, store.cancel):
        with pytest.raises(JobNotFound):
            call(db, other.account_id, job.id, KEEP)
    with pytest.raises(JobNotFound):
        store.status(db, payer.account_id, "job_unknown", KEEP)
    assert store.status(db, payer.account_id, job.id, KEEP).status == "queued", "nothing changed"


def test_concurrent_claims_take_each_job_once(db, payer):
    rich = new_payer(db, "rich@example.com", credits=100)
    submitted = {submit(db, rich).job.id for _ in range(12)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(name: str) -> None:
        while (run := store.claim_next(db, name)) is not None:
            with lock:
                claimed.append(run.public_id)

    workers = [threading.Thread(target=claim_all, args=(f"process-{i}",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(claimed) == sorted(submitted), "every job claimed, none twice"


def test_a_succeeded_job_is_charged_once_and_keeps_its_image_until_it_expires(db, payer):
    job = submit(db, payer, output_format="png").job
    with pytest.raises(JobStateConflict, match="queued: its image is not made yet"):
        store.result(db, payer.account_id, job.id, KEEP)
    run = store.claim_next(db, "test")
    assert store.status(db, payer.account_id, job.id, KEEP).status == "running"
    with pytest.raises(JobStateConflict, match="running"):
        store.result(db, payer.account_id, job.id, KEEP)

    assert store.succeed(db, run, PNG, KEEP)
    done = store.status(db, payer.account_id, job.id, KEEP)
    assert done.status == "succeeded" and done.credits_charged == 2 and done.queue_position is None
    assert done.result_expires_at == done.finished_at + KEEP
    image = store.result(db, payer.account_id, job.id, KEEP)
    assert (image.png, image.seed, image.output_format) == (PNG, 7, "png")
    assert not store.succeed(db, run, PNG, KEEP), "a run ends its job once"
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2)]
    assert request_states(db, payer.account_id) == ["charged"]

    assert store.expire_results(db, KEEP) == 0
    with db.session() as session:  # a day and a second later
        session.execute(update(Job).values(finished_at=utcnow() - KEEP - timedelta(seconds=1)))
    with pytest.raises(JobResultExpired, match="kept for 24 hours"):
        store.result(db, payer.account_id, job.id, KEEP)
    assert store.expire_results(db, KEEP) == 1
    with db.session() as session:
        assert session.scalars(select(JobResult)).all() == []
    with pytest.raises(JobResultExpired):
        store.result(db, payer.account_id, job.id, KEEP)


def test_a_failed_job_is_refunded_and_says_why(db, payer):
    job = submit(db, payer).job
    run = store.claim_next(db, "test")
    assert store.fail(db, run, "Image generation failed: RuntimeError", Outcome.FAILED, KEEP)
    failed = store.status(db, payer.account_id, job.id, KEEP)
    assert failed.status == "failed" and failed.error == "Image generation failed: RuntimeError"
    assert failed.credits_charged == 0 and failed.public()["error"] == failed.error
    with pytest.raises(JobStateConflict, match="failed, so it has no image: Image generation failed"):
        store.result(db, payer.account_id, job.id, KEEP)
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("refund", 2)]
    assert request_outcomes(db, payer.account_id) == ["failed"]
    assert "error" not in store.status(db, payer.account_id, submit(db, payer).job.id, KEEP).public()


def test_a_run_whose_job_was_taken_back_cannot_end_it(db, payer):
    job = submit(db, payer).job
    first = store.claim_next(db, "dead-process")
    assert store.requeue_abandoned(db, timedelta(0)) == 1
    second = store.claim_next(db, "live-process")
    assert second.public_id == job.id and second.claim != first.claim
    assert not store.succeed(db, first, PNG, KEEP) and not store.fail(db, first, "late", Outcome.FAILED, KEEP)
    assert store.status(db, payer.account_id, job.id, KEEP).status == "running"
    assert request_states(db, payer.account_id) == ["pending"], "the lost run charged and refunded nothing"
    assert store.succeed(db, second, PNG, KEEP)
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2)]
    with db.session() as session:
        assert session.scalar(select(Job.attempts)) == 2


def test_abandoned_running_jobs_are_queued_again_and_keep_their_reservation(db, payer):
    job = submit(db, payer).job
    store.claim_next(db, "dead-process")
    assert store.requeue_abandoned(db, timedelta(minutes=10)) == 0, "claimed just now: maybe still running"
    assert store.requeue_abandoned(db, timedelta(minutes=10), all_running=True) == 1
    assert store.status(db, payer.account_id, job.id, KEEP).status == "queued"
    assert request_states(db, payer.account_id) == ["pending"]
    run = store.claim_next(db, "next-process")
    assert store.requeue(db, [run.claim]) == 1, "a stopping process gives its jobs back"
    assert store.claim_next(db, "next-process").public_id == job.id


def test_refund_stale_leaves_the_reservations_of_live_jobs_and_refunds_the_rest(db, payer):
    """credits.refund_stale runs every few seconds in every server: it must never refund a job
    that will still run (or has been made), however long it has waited."""
    running = submit(db, payer).job
    store.claim_next(db, "test")
    succeeded = submit(db, payer).job
    with db.session() as session:  # its process died after marking it, before charging it
        assert store._end(session, store.claim_next(db, "test"), "succeeded", None)
    failed = submit(db, payer).job
    with db.session() as session:  # its process died after marking it, before refunding it
        assert store._end(session, store.claim_next(db, "test"), "failed", "the model fell over")
    queued = submit(db, payer).job
    credits.reserve(db, payer.account_id, payer.key_id, PRICE)  # its process died before recording its job

    assert credits.refund_stale(db, timedelta(0)) == 2  # the failed job's and the orphan's
    assert request_states(db, payer.account_id) == ["pending", "pending", "refunded", "pending", "refunded"]
    assert store.settle_succeeded(db) == 1
    assert request_states(db, payer.account_id) == ["pending", "charged", "refunded", "pending", "refunded"]
    assert credits.balance(db, payer.account_id) == 10 - 3 * PRICE
    assert [store.status(db, payer.account_id, job.id, KEEP).status for job in (running, succeeded, failed, queued)] \
        == ["running", "succeeded", "failed", "queued"]


def test_a_charge_that_fails_is_made_by_the_sweep(db, payer, monkeypatch):
    job = submit(db, payer).job
    run = store.claim_next(db, "test")

    def storage_down(*_args):
        raise StorageUnavailable("down")

    monkeypatch.setattr(credits, "settle", storage_down)
    with pytest.raises(StorageUnavailable):
        store.succeed(db, run, PNG, KEEP)
    monkeypatch.undo()
    assert store.status(db, payer.account_id, job.id, KEEP).status == "succeeded"
    assert credits.refund_stale(db, timedelta(0)) == 0, "a succeeded job's reservation is charged, not refunded"
    assert store.settle_succeeded(db) == 1 and store.settle_succeeded(db) == 0
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2)]
    assert request_states(db, payer.account_id) == ["charged"]


def test_forgetting_prompts_blanks_ended_jobs_only(db, payer):
    """What the runner's sweep does when the operator keeps no prompts, and closing an account does."""
    other = new_payer(db, "other@example.com")
    ended, waiting, others = submit(db, payer, "a secret"), submit(db, payer, "still needed"), submit(db, other)
    store.cancel(db, payer.account_id, ended.job.id, KEEP)
    store.cancel(db, other.account_id, others.job.id, KEEP)
    with db.session() as session:
        assert store.forget_ended_prompts(session, payer.account_id) == 1  # this account's ended job only
    assert store.status(db, payer.account_id, ended.job.id, KEEP).prompt == ""
    assert store.status(db, payer.account_id, waiting.job.id, KEEP).prompt == "still needed"  # made from it
    assert store.status(db, other.account_id, others.job.id, KEEP).prompt == "a red apple"
    assert store.forget_prompts(db) == 1  # every account's
    assert store.status(db, other.account_id, others.job.id, KEEP).prompt == ""


@pytest.mark.parametrize("ending", ["queued", "charged", "settled by the sweep", "refunded"])
def test_a_status_reads_the_jobs_request_once(db, payer, ending):
    job = submit(db, payer).job
    if ending != "queued":
        run = store.claim_next(db, "here")
        if ending == "refunded":
            store.fail(db, run, "no", Outcome.FAILED, KEEP)
        else:
            with db.session() as session:  # "settled by the sweep": the process died before charging
                session.execute(update(Job).where(Job.id == run.id).values(status="succeeded", finished_at=utcnow()))
            if ending == "charged":
                credits.settle(db, run.reservation)
    with statements(db) as sent:
        status = store.status(db, payer.account_id, job.id, KEEP)
    assert len(sent.reads("image_requests")) == 1
    assert status.credits_charged == (0 if ending in ("queued", "refunded") else PRICE)
