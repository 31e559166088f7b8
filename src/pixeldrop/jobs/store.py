"""Jobs in the database: what callers do (submit, status, result, cancel) and what the runner does
(claim, succeed, fail, requeue, settle, expire). The rules are in the package's docstring."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from PIL import Image
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from pixeldrop.accounts import credits
from pixeldrop.accounts.credits import Reservation
from pixeldrop.accounts.outcomes import Outcome
from pixeldrop.errors import JobNotFound, JobResultExpired, JobStateConflict, ServerBusy, StorageUnavailable
from pixeldrop.generation.formats import FORMATS
from pixeldrop.storage import Database, ImageRequest, Job, JobResult, as_utc, changed_rows, utcnow

from . import webhooks

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
CLAIM_CANDIDATES = 8  # queued jobs tried per claim, should others win the first ones


@dataclass(frozen=True)
class Order:
    """What a caller asked for, already checked (prompt rules, seed, format, webhook address)."""

    prompt: str
    seed: int
    output_format: str | None = None  # a FORMATS name; None: the result follows `Accept`
    webhook_url: str | None = None


@dataclass(frozen=True)
class JobStatus:
    id: str
    status: str
    queue_position: int | None  # 1 = next to run; None unless queued
    prompt: str
    seed: int
    output_format: str | None
    webhook_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result_expires_at: datetime | None  # succeeded jobs: when the image is deleted
    credits_charged: int
    error: str | None

    def public(self) -> dict[str, Any]:
        """As the API shows it and webhook events carry it: JSON types, UTC ISO 8601 times."""
        shown: dict[str, Any] = {
            "id": self.id, "status": self.status, "queue_position": self.queue_position, "prompt": self.prompt,
            "seed": self.seed, "output_format": self.output_format, "webhook_url": self.webhook_url,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "result_expires_at": iso(self.result_expires_at),
            "credits_charged": self.credits_charged,
        }
        if self.error is not None:
            shown["error"] = self.error
        return shown


@dataclass(frozen=True)
class Submitted:
    job: JobStatus
    remaining: int  # the balance once the job's price is reserved


@dataclass(frozen=True)
class JobImage:
    png: bytes
    seed: int
    output_format: str | None

    def encoded(self, fmt: str, jpeg_quality: int) -> bytes:
        """The image in `fmt`: the stored PNG itself (with its parameters), or converted."""
        if fmt == "png":
            return self.png
        with Image.open(io.BytesIO(self.png)) as image:
            return FORMATS[fmt].encode(image, jpeg_quality)


@dataclass(frozen=True)
class Claimed:
    """One run of a job by this process: `claim` must still be the job's for the run to end it."""

    id: int
    public_id: str
    claim: str
    prompt: str
    seed: int
    reservation: Reservation


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")


def new_public_id() -> str:
    return "job_" + secrets.token_hex(16)


# What callers do

def submit(db: Database, account_id: int, api_key_id: int | None, order: Order, cost: int, keep: timedelta,
           prompt_for_usage: str | None, also: Callable[[Session, Submitted], None] | None = None) -> Submitted:
    """Reserve the price (OutOfCredits: nothing happens), then record the job, queued.

    `also(session, submitted)` runs in the transaction that records the job (an Idempotency-Key's
    stored answer): both commit, or neither. Should the job not be recorded, the reservation is
    refunded at once, or, when storage is down, by refund_stale (a reservation no job owns).
    """
    reservation = credits.reserve(db, account_id, api_key_id, cost, prompt=prompt_for_usage)
    try:
        with db.session() as session:
            job = Job(public_id=new_public_id(), account_id=account_id, api_key_id=api_key_id,
                      request_id=reservation.request_id, status=QUEUED, prompt=order.prompt, seed=order.seed,
                      output_format=order.output_format, webhook_url=order.webhook_url, attempts=0)
            session.add(job)
            if order.webhook_url is not None:
                webhooks.ensure_secret(session, account_id)  # so that every event can be signed
            session.flush()
            submitted = Submitted(_status(session, job, keep), reservation.remaining)
            if also is not None:
                also(session, submitted)
    except BaseException as error:
        _refund_now_or_later(db, reservation, Outcome.BUSY if isinstance(error, ServerBusy) else Outcome.FAILED)
        raise
    return submitted


def status(db: Database, account_id: int, public_id: str, keep: timedelta) -> JobStatus:
    with db.session() as session:
        return _status(session, _own_job(session, account_id, public_id), keep)


def result(db: Database, account_id: int, public_id: str, keep: timedelta) -> JobImage:
    """The image of a succeeded job; JobStateConflict before (or without) one, JobResultExpired after."""
    with db.session() as session:
        job = _own_job(session, account_id, public_id)
        if job.status != SUCCEEDED:
            raise JobStateConflict(_no_image_yet(job))
        png = session.scalar(select(JobResult.png).where(JobResult.job_id == job.id))
        if png is None or _expired(job, keep):
            raise JobResultExpired(f"The job's image was kept for {_span(keep)} after it was made and is now "
                                   "deleted; submit the job again (same prompt and seed: same image).")
        return JobImage(png, job.seed, job.output_format)


def cancel(db: Database, account_id: int, public_id: str, keep: timedelta) -> tuple[JobStatus, int | None]:
    """Cancel a queued job and refund it; JobStateConflict once it has started.

    Returns its status and the balance after the refund (None if the refund is left to the sweep).
    """
    with db.session() as session:
        job = _own_job(session, account_id, public_id)
        canceled = _cancel(session, job, keep)
        if canceled is None:
            raise JobStateConflict(f"The job is {job.status}: only a queued job can be canceled.")
        reservation = _reservation(session, job)
    return canceled, _refund_now_or_later(db, reservation, Outcome.CANCELED)


def cancel_queued(session: Session, account_id: int, keep: timedelta) -> int:
    """Cancel and refund every queued job of an account, in the caller's transaction (the account
    is being closed); how many. Jobs already running finish and are charged, as the owner asked
    when submitting them."""
    canceled = 0
    for job in session.scalars(select(Job).where(Job.account_id == account_id, Job.status == QUEUED)).all():
        if _cancel(session, job, keep) is not None:  # None: started meanwhile
            credits.refund_within(session, _reservation(session, job), Outcome.CANCELED)
            canceled += 1
    return canceled


# What the runner does

def claim_next(db: Database, process: str) -> Claimed | None:
    """Take the oldest queued job for this process to run (status `running`), or None.

    The conditional UPDATE is the claim: of several processes racing for one job, one wins.
    """
    claim = f"{process}/{secrets.token_hex(4)}"
    with db.session() as session:
        candidates = session.scalars(select(Job.id).where(Job.status == QUEUED).order_by(Job.id)
                                     .limit(CLAIM_CANDIDATES)).all()
        for job_id in candidates:
            if changed_rows(session, update(Job).where(Job.id == job_id, Job.status == QUEUED).values(
                    status=RUNNING, claimed_by=claim, started_at=utcnow(), attempts=Job.attempts + 1)) == 1:
                job = session.get_one(Job, job_id)
                return Claimed(job.id, job.public_id, claim, job.prompt, job.seed, _reservation(session, job))
    return None


def succeed(db: Database, run: Claimed, png: bytes, keep: timedelta) -> bool:
    """Store the image and mark the job succeeded, then charge it. False if the claim was lost
    (the job was taken back and runs again elsewhere): nothing is stored or charged then."""
    with db.session() as session:
        if not _end(session, run, SUCCEEDED, None):
            return False
        session.add(JobResult(job_id=run.id, png=png))
        webhooks.queue_event(session, run.id, *_ended(session, run.id, keep))
    if not credits.settle(db, run.reservation):
        log.error("job %s succeeded but its reservation was no longer pending", run.public_id)
    return True


def fail(db: Database, run: Claimed, message: str, outcome: Outcome, keep: timedelta) -> bool:
    """Mark the job failed with `message`, then refund it, its request having ended as `outcome`
    (failed, or busy past the deadline). False if the claim was lost."""
    with db.session() as session:
        if not _end(session, run, FAILED, message):
            return False
        webhooks.queue_event(session, run.id, *_ended(session, run.id, keep))
    _refund_now_or_later(db, run.reservation, outcome)
    return True


def requeue(db: Database, claims: list[str]) -> int:
    """Put this process's running jobs back in the queue (it is stopping); their reservations stay."""
    if not claims:
        return 0
    with db.session() as session:
        return changed_rows(session, update(Job).where(Job.status == RUNNING, Job.claimed_by.in_(claims))
                            .values(status=QUEUED, claimed_by=None))


def requeue_abandoned(db: Database, older_than: timedelta, all_running: bool = False) -> int:
    """Jobs left `running` by dead processes go back to `queued`: those claimed longer ago than
    `older_than` (no live process runs a job that long), or every one with `all_running` (a
    SQLite server starting: no other process runs its jobs)."""
    abandoned = update(Job).where(Job.status == RUNNING)
    if not all_running:
        abandoned = abandoned.where(Job.started_at < utcnow() - older_than)
    with db.session() as session:
        count = changed_rows(session, abandoned.values(status=QUEUED, claimed_by=None))
    if count:
        log.warning("%d jobs left running by a stopped process are queued again", count)
    return count


def settle_succeeded(db: Database) -> int:
    """Charge succeeded jobs whose process died before charging them. Returns how many."""
    with db.session() as session:
        jobs = session.execute(select(Job.request_id, Job.account_id, ImageRequest.credits)
                               .join(ImageRequest, ImageRequest.id == Job.request_id)
                               .where(Job.status == SUCCEEDED, ImageRequest.state == credits.PENDING)).all()
    return sum(credits.settle(db, Reservation(request_id, account_id, amount, remaining=0))
               for request_id, account_id, amount in jobs)


def forget_prompts(db: Database) -> int:
    """Blank the prompts of every account's ended jobs: what the operator's `store_prompts=false`
    asks (the runner's sweep calls this)."""
    with db.session() as session:
        return forget_ended_prompts(session)


def forget_ended_prompts(session: Session, account_id: int | None = None) -> int:
    """Blank the prompts of ended jobs (of one account, or all) in the caller's transaction: the
    sweep's, and closing an account's. A queued or running job keeps its prompt until it ends:
    it is what the job is made from."""
    ended = update(Job).where(Job.status.in_((SUCCEEDED, FAILED, CANCELED)), Job.prompt != "")
    if account_id is not None:
        ended = ended.where(Job.account_id == account_id)
    return changed_rows(session, ended.values(prompt=""))


def expire_results(db: Database, keep: timedelta) -> int:
    """Delete the images of jobs that ended longer ago than `keep`. Returns how many."""
    with db.session() as session:
        old = select(Job.id).where(Job.status == SUCCEEDED, Job.finished_at < utcnow() - keep)
        return changed_rows(session, delete(JobResult).where(JobResult.job_id.in_(old)))


# Helpers

def _own_job(session: Session, account_id: int, public_id: str) -> Job:
    """The account's job; another account's is not found, as an unknown one."""
    job = session.scalar(select(Job).where(Job.public_id == public_id, Job.account_id == account_id))
    if job is None:
        raise JobNotFound("No such job.")
    return job


def _status(session: Session, job: Job, keep: timedelta) -> JobStatus:
    position = None
    if job.status == QUEUED:
        position = session.scalar(select(func.count()).select_from(Job).where(Job.status == QUEUED, Job.id <= job.id))
    price, state = session.execute(select(ImageRequest.credits, ImageRequest.state)
                                   .where(ImageRequest.id == job.request_id)).one()
    # A succeeded job's price is charged now, or by the next sweep; a refunded request's is 0.
    charged = price if state == credits.CHARGED or job.status == SUCCEEDED else 0
    expires = as_utc(job.finished_at) + keep if job.status == SUCCEEDED and job.finished_at else None
    return JobStatus(job.public_id, job.status, position, job.prompt, job.seed, job.output_format, job.webhook_url,
                     as_utc(job.created_at), job.started_at and as_utc(job.started_at),
                     job.finished_at and as_utc(job.finished_at), expires, charged, job.error)


def _cancel(session: Session, job: Job, keep: timedelta) -> JobStatus | None:
    """Cancel a queued job and queue its event; None once it has started. `job` is read again."""
    ended = changed_rows(session, update(Job).where(Job.id == job.id, Job.status == QUEUED)
                         .values(status=CANCELED, finished_at=utcnow())) == 1
    session.refresh(job)
    if not ended:
        return None
    canceled = _status(session, job, keep)
    webhooks.queue_event(session, job.id, job.webhook_url, canceled)
    return canceled


def _reservation(session: Session, job: Job) -> Reservation:
    """The job's reservation, enough to settle or refund it (`remaining` is not known here)."""
    amount = session.scalar(select(ImageRequest.credits).where(ImageRequest.id == job.request_id))
    return Reservation(job.request_id, job.account_id, amount or 0, remaining=0)


def _end(session: Session, run: Claimed, state: str, message: str | None) -> bool:
    return changed_rows(session, update(Job).where(Job.id == run.id, Job.status == RUNNING,
                                                   Job.claimed_by == run.claim)
                        .values(status=state, error=message, finished_at=utcnow())) == 1


def _ended(session: Session, job_id: int, keep: timedelta) -> tuple[str | None, JobStatus]:
    job = session.get_one(Job, job_id, populate_existing=True)
    return job.webhook_url, _status(session, job, keep)


def _refund_now_or_later(db: Database, reservation: Reservation, outcome: Outcome) -> int | None:
    """Refund now; if storage fails, refund_stale does it later (no job owns the reservation then)."""
    try:
        return credits.refund(db, reservation, outcome)
    except StorageUnavailable:
        log.warning("could not refund request %d yet; the sweep will", reservation.request_id)
        return None


def _no_image_yet(job: Job) -> str:
    if job.status in (QUEUED, RUNNING):
        return f"The job is {job.status}: its image is not made yet."
    if job.status == FAILED:
        return f"The job failed, so it has no image: {job.error}"
    return "The job was canceled, so it has no image."


def _expired(job: Job, keep: timedelta) -> bool:
    return job.finished_at is None or as_utc(job.finished_at) + keep <= utcnow()


def _span(keep: timedelta) -> str:
    seconds = int(keep.total_seconds())
    return f"{seconds // 3600} hours" if seconds % 3600 == 0 else f"{seconds} seconds"
