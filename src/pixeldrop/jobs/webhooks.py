"""Job webhooks: when a job ends, a JSON event POSTed to its `webhook_url`, signed as the Standard
Webhooks spec says (https://www.standardwebhooks.com/, signed by the `standardwebhooks` package).

- The secret is per account, `whsec_` + base64 of 32 random bytes, made on first use (a job with
  a webhook, the account page, `pixeldrop accounts webhook-secret`). It is stored in clear, unlike
  API keys and passwords: those the server only has to recognise, so a hash does; this one it
  must compute an HMAC with for every delivery, and a hash of it cannot sign anything. It is
  shown to its account only, and never logged.
- An event (`{"type": "job.succeeded" | "job.failed" | "job.canceled", "timestamp", "data": the
  job's status}`) is queued in the transaction that ends the job, so a restart loses none. Each
  attempt carries `webhook-id` (the same on every attempt: receivers drop duplicates by it),
  `webhook-timestamp` and `webhook-signature`. A 2xx answer delivers it; anything else (a
  redirect included), or none within TIMEOUT_SECONDS, is retried after 1, 2, 4... seconds (at
  most LONGEST_WAIT_SECONDS apart) until `webhook_retry_seconds` after the event, then given up.
  A process that dies mid-attempt leaves the delivery to be tried again after LEASE_SECONDS.
- Addresses: http or https, no user name or password in the URL. Unless `webhook_allow_private`,
  every address the host resolves to must be public (not private, loopback, link-local, shared,
  multicast or reserved): checked at submit and again at every attempt, which then connects to
  the very address it checked, so that DNS rebinding cannot point it inside the network.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from pixeldrop.errors import AccountNotFound, InvalidRequest
from pixeldrop.storage import Account, Database, Job, WebhookDelivery, as_utc, changed_rows, utcnow

if TYPE_CHECKING:
    from .store import JobStatus

log = logging.getLogger(__name__)

PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "failed"
TIMEOUT_SECONDS = 10.0
LEASE_SECONDS = 60.0  # longer than an attempt can take
FIRST_WAIT_SECONDS, LONGEST_WAIT_SECONDS = 1.0, 600.0
MAX_URL_LENGTH = 2048
DUE_AT_ONCE = 16


# The secret

def ensure_secret(session: Session, account_id: int) -> str:
    """The account's secret, made now if it has none (inside the caller's transaction).

    Read first, and written only when missing: the account page and every delivery ask for it,
    and a read must not lock the account's row (its balance lives there). Of two transactions
    making one at once, the first to commit wins (the UPDATE is conditional on there being none)
    and both return its secret, read again after the UPDATE.
    """
    secret = session.scalar(select(Account.webhook_secret).where(Account.id == account_id))
    if secret is None:
        made = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        session.execute(update(Account).where(Account.id == account_id, Account.webhook_secret.is_(None))
                        .values(webhook_secret=made))
        secret = session.scalar(select(Account.webhook_secret).where(Account.id == account_id))
    if secret is None:
        raise AccountNotFound("No such account.")
    return secret


def account_secret(db: Database, account_id: int) -> str:
    with db.session() as session:
        return ensure_secret(session, account_id)


# Addresses

@dataclass(frozen=True)
class Target:
    """Where an attempt connects: the URL, with its host replaced by the address that was checked,
    and what keeps the request addressed to the host (Host header, TLS server name)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return address.is_global and not address.is_multicast


def resolve(url: str, allow_private: bool) -> Target:
    """Check a webhook URL (InvalidRequest says why it cannot be used) and say where to send to.

    Blocking (DNS): call it from a thread.
    """
    refused = f"webhook_url {url[:100]!r} cannot be used: "
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"webhook_url is longer than {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise InvalidRequest(refused + f"{error}.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest(refused + "it must be an http or https URL with a host.")
    if parsed.userinfo:
        raise InvalidRequest(refused + "it must not carry a user name or password.")
    if allow_private:
        return Target(str(parsed))
    host = parsed.raw_host.decode("ascii")
    try:
        found = socket.getaddrinfo(host, parsed.port or (443 if parsed.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidRequest(refused + f"its host {parsed.host} does not resolve.") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    if not addresses or not all(map(_public, addresses)):
        raise InvalidRequest(refused + f"its host {parsed.host} is a private, loopback or link-local address "
                             "(or one reserved), which this server does not call.")
    pinned = parsed.copy_with(host=str(addresses[0]))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return Target(str(pinned), {"Host": parsed.netloc.decode("ascii")}, extensions)


# Events and their deliveries

def queue_event(session: Session, job_id: int, url: str | None, status: JobStatus) -> None:
    """Queue the event of a job that just ended, inside the transaction that ended it."""
    if url is None:
        return
    now = utcnow()
    payload = {"type": f"job.{status.status}", "timestamp": now.isoformat().replace("+00:00", "Z"),
               "data": status.public()}
    session.add(WebhookDelivery(id="msg_" + secrets.token_hex(16), job_id=job_id, url=url, state=PENDING,
                                payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                                attempts=0, next_attempt_at=now, created_at=now))


@dataclass(frozen=True)
class Delivery:
    """One attempt this process is making (claimed: no other process makes it meanwhile)."""

    id: str
    url: str
    payload: str
    secret: str
    attempts: int  # this one included
    created_at: datetime


def claim_due(db: Database) -> list[Delivery]:
    """The deliveries due now, each claimed for LEASE_SECONDS by one conditional UPDATE."""
    now = utcnow()
    claimed = []
    with db.session() as session:
        due = session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.state == PENDING,
                                                               WebhookDelivery.next_attempt_at <= now)
                              .order_by(WebhookDelivery.next_attempt_at).limit(DUE_AT_ONCE)).all()
        for delivery_id in due:
            if changed_rows(session, update(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id, WebhookDelivery.state == PENDING,
                    WebhookDelivery.next_attempt_at <= now).values(
                    next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
                    attempts=WebhookDelivery.attempts + 1)) == 1:
                claimed.append(delivery_id)
        rows = session.execute(
            select(WebhookDelivery, Job.account_id, Account.webhook_secret)
            .join(Job, Job.id == WebhookDelivery.job_id).join(Account, Account.id == Job.account_id)
            .where(WebhookDelivery.id.in_(claimed))).all()
        # A job with a webhook made its account's secret at submit; closing the account drops it,
        # and its canceled jobs' events are then signed with a new one.
        return [Delivery(row.id, row.url, row.payload, secret or ensure_secret(session, account_id),
                         row.attempts, row.created_at) for row, account_id, secret in rows]


def signed_headers(secret: str, message_id: str, payload: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt at `at`."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, payload),
    }


async def attempt(client: httpx.AsyncClient, delivery: Delivery, target: Target) -> str | None:
    """POST the event once; None when the receiver answered 2xx, else what went wrong."""
    headers = {**signed_headers(delivery.secret, delivery.id, delivery.payload, datetime.now(UTC)),
               "user-agent": "pixeldrop-webhooks", **target.headers}
    try:
        async with client.stream("POST", target.url, content=delivery.payload.encode(), headers=headers,
                                 extensions=target.extensions) as response:
            # The body is not read: a receiver's answer is its status.
            return None if response.is_success else f"answered {response.status_code}"
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"[:500]


def record(db: Database, delivery: Delivery, error: str | None, retry_for: timedelta) -> str:
    """Write an attempt's outcome: delivered, retried later, or given up. Returns the new state."""
    now = utcnow()
    created = as_utc(delivery.created_at)
    wait = min(FIRST_WAIT_SECONDS * 2 ** (delivery.attempts - 1), LONGEST_WAIT_SECONDS)
    values: dict[str, object]
    if error is None:
        state, values = DELIVERED, {"finished_at": now, "last_error": None}
    elif now + timedelta(seconds=wait) > created + retry_for:
        state, values = GAVE_UP, {"finished_at": now, "last_error": error}
    else:
        state, values = PENDING, {"next_attempt_at": now + timedelta(seconds=wait), "last_error": error}
    with db.session() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                        .values(state=state, **values))
    if state == GAVE_UP:
        log.warning("webhook %s given up after %d attempts: %s", delivery.id, delivery.attempts, error)
    return state
