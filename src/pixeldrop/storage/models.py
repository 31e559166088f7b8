"""The tables. Changing them means adding an Alembic migration in `migrations/versions/`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored datetime, aware and in UTC: SQLite hands back naive ones (stored in UTC),
    PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("credits >= 0", name="credits_not_negative"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Closed by its owner: no password, keys or sessions; the row stays for the ledger and usage.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # Signs the account's job webhooks (jobs/webhooks.py); made on first use.
    webhook_secret: Mapped[str | None] = mapped_column(String(100), default=None)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(100), default="")
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class BrowserSession(Base):
    """A browser signed in to the account pages: its cookie holds a random token, this row its hash.

    Signing out deletes the row, so a copied cookie stops working at once, on every server
    sharing the database; rows past `expires_at` are refused, and deleted at the next sign-in.
    """

    __tablename__ = "browser_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # A message for the browser's next page (a new API key), encrypted under its token (web/sessions.py).
    flash: Mapped[str | None] = mapped_column(Text, default=None)


class ImageRequest(Base):
    """One call of the API that got past authentication: what it cost and how it ended.

    `state` is `pending` while credits are reserved and the image is being made, then
    `charged` or `refunded`; refusals that never reserved anything are `refused`. `outcome` says
    in words how it ended (pixeldrop.accounts.outcomes.Outcome; None while pending).
    """

    __tablename__ = "image_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    state: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    prompt: Mapped[str | None] = mapped_column(Text, default=None)  # None when prompts are not stored


class LedgerEntry(Base):
    """Every change of an account's credits, with the balance right after it."""

    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("image_requests.id"), default=None)
    # Unique reference of an outside event (a payment provider's event id), so that a
    # replayed event can never add credits twice.
    external_ref: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IdempotencyKey(Base):
    """A paid request's Idempotency-Key, per account: `running` while its first request is being
    answered, then `done` with that answer, replayed until `expires_at` (pixeldrop/idempotency.py).
    The unique (account_id, key) is what lets only one of two concurrent claims win; ids are never
    reused (AUTOINCREMENT on SQLite), so a claim's id names that claim alone, even once taken over."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_idempotency_keys_account_id_key"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of what the request asked for
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer, default=None)  # the stored answer, once `done`
    headers: Mapped[str | None] = mapped_column(Text, default=None)  # JSON [[name, value], ...]
    body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class PasswordReset(Base):
    """A password-reset link mailed to an account: its token's hash, until used or expired."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PlaygroundImage(Base):
    """One of an account's last playground images (accounts/gallery.py keeps only the last few)."""

    __tablename__ = "playground_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    seed: Mapped[int | None] = mapped_column(BigInteger, default=None)
    media_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredImage(Base):
    """An image the OpenAI route answered with a URL (`response_format: url`): its bytes, served to
    the same account until `expires_at` (images_store.py; the app's sweep deletes expired rows).
    `id` is random and unguessable, and fetching it also needs a key of `account_id`."""

    __tablename__ = "stored_images"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    media_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Job(Base):
    """An image asked for now and made later (jobs/): `queued` -> `running` -> `succeeded` or
    `failed`, or `queued` -> `canceled`. `request_id` is the job's reservation, which the job
    owns while it is queued or running (pending, however old) and once it succeeded (to be
    settled): credits.refund_stale leaves those alone (OWNS_RESERVATION).
    `claimed_by` names the process and the claim that ran it last, `started_at` when."""

    __tablename__ = "jobs"
    OWNS_RESERVATION: ClassVar[tuple[str, ...]] = ("queued", "running", "succeeded")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # also the queue's order
    public_id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    request_id: Mapped[int] = mapped_column(ForeignKey("image_requests.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    output_format: Mapped[str | None] = mapped_column(String(8), default=None)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class JobResult(Base):
    """A succeeded job's image (PNG), until it expires (the `job_result_seconds` setting)."""

    __tablename__ = "job_results"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)


class WebhookDelivery(Base):
    """One webhook event of a job, sent until its receiver answers 2xx or the retry time is over.
    `id` is the event's `webhook-id`, the same on every attempt; `payload` is its exact body."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
