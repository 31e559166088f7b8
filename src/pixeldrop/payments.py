"""Buying credit packs with Stripe Checkout. Every call pixeldrop makes to Stripe is here.

1. `start_checkout` asks Stripe (the official `stripe` library) for a Checkout Session for one
   pack, with the account id and the pack's credits in its metadata, and returns the URL of
   Stripe's payment page.
2. The buyer pays there and Stripe sends them back to /account/billing. That return grants nothing: a
   URL can be typed by anyone.
3. Stripe posts `checkout.session.completed` to /webhooks/stripe. `handle_webhook` verifies its
   signature with the webhook secret and, once the session is paid, adds the credits through
   `credits.add_credits` with the Checkout Session's id as the ledger's unique external
   reference: a session is credited once, whether Stripe sends one event again or two paid
   events for it (`completed`, then `async_payment_succeeded`).

There is no way to get credits without Stripe's signature but the operator's
`pixeldrop credits add`: no test mode that grants credits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe
from stripe.params.checkout import SessionCreateParams

from pixeldrop.accounts import AccountInfo, credits
from pixeldrop.errors import InvalidInput, InvalidWebhook, PaymentProviderError, PaymentsDisabled
from pixeldrop.settings import Settings
from pixeldrop.storage import Database

log = logging.getLogger(__name__)

# Events after which a Checkout Session may be paid: card payments are paid on completion,
# delayed methods (bank debits) on the later async_payment_succeeded.
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# Currencies without minor units, whose prices are whole amounts.
_ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf",
                 "xof", "xpf"}
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


@dataclass(frozen=True)
class Pack:
    credits: int
    price: int  # in the currency's smallest unit (cents)
    currency: str

    @property
    def price_label(self) -> str:
        amount = f"{self.price:,}" if self.currency in _ZERO_DECIMAL else f"{self.price / 100:,.2f}"
        symbol = _SYMBOLS.get(self.currency)
        return f"{symbol}{amount}" if symbol else f"{amount} {self.currency.upper()}"


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    event_type: str
    account_id: int | None = None
    credited: int | None = None  # None: nothing added (another event type, unpaid, or a replay)


def enabled(settings: Settings) -> bool:
    """Buying needs both keys: one to create sessions, one to trust the webhook."""
    return bool(settings.stripe_secret_key and settings.stripe_webhook_secret)


def packs(settings: Settings) -> list[Pack]:
    return [Pack(size, price, settings.currency.lower()) for size, price in sorted(settings.pack_prices.items())]


def find_pack(settings: Settings, size: int) -> Pack:
    pack = next((p for p in packs(settings) if p.credits == size), None)
    if pack is None:
        raise InvalidInput(f"There is no pack of {size} credits.")
    return pack


def _client(settings: Settings) -> stripe.StripeClient:
    if not settings.stripe_secret_key:
        raise PaymentsDisabled("Buying credits is disabled on this server.")
    return stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base},
                               max_network_retries=1)


def start_checkout(settings: Settings, account: AccountInfo, size: int, success_url: str, cancel_url: str) -> str:
    """Create a Checkout Session for one pack; returns the URL of Stripe's payment page."""
    if not enabled(settings):
        raise PaymentsDisabled("Buying credits is disabled on this server.")
    pack = find_pack(settings, size)
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": [{
            "quantity": 1,
            "price_data": {"currency": pack.currency, "unit_amount": pack.price,
                           "product_data": {"name": f"{pack.credits:,} pixeldrop credits"}},
        }],
        "customer_email": account.email,
        "client_reference_id": str(account.id),
        "metadata": {"account_id": str(account.id), "credits": str(pack.credits)},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    try:
        session = _client(settings).v1.checkout.sessions.create(params=params)
    except stripe.StripeError as error:
        log.error("Stripe refused a Checkout Session: %s", error)
        raise PaymentProviderError("The payment provider could not start a checkout; try again later.") from None
    if not session.url:
        raise PaymentProviderError("The payment provider returned no checkout page.")
    return session.url


# Bounds of what a Checkout Session's metadata may claim: an id the accounts table can hold, and
# at most a billion credits (far beyond any pack, far below what the balance column holds).
_MAX_ACCOUNT_ID = 2**31 - 1
_MAX_CREDITS = 10**9


def _purchase(session: dict) -> tuple[int, int] | None:
    """(account id, credits) that a paid Checkout Session of ours buys; None for anything else.

    Numbers out of range are refused (400): only a signed event can carry them, so they point at
    a misconfiguration worth seeing, never at a database error.
    """
    metadata = session.get("metadata") or {}
    try:
        account_id = int(metadata.get("account_id") or session.get("client_reference_id") or "")
        size = int(metadata["credits"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (0 < account_id <= _MAX_ACCOUNT_ID and 0 < size <= _MAX_CREDITS):
        raise InvalidWebhook("The Checkout Session's account or credits are out of range.")
    return account_id, size


def handle_webhook(db: Database, settings: Settings, payload: bytes, signature: str | None) -> WebhookOutcome:
    """Verify one webhook delivery and credit the account it pays for, at most once per session."""
    if not settings.stripe_webhook_secret:
        raise PaymentsDisabled("Stripe webhooks are not configured on this server.")
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.stripe_webhook_secret).to_dict()
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError):
        raise InvalidWebhook("The webhook's signature does not verify.") from None
    if not event.get("id"):
        raise InvalidWebhook("The webhook's event has no id.")
    outcome = WebhookOutcome(str(event["id"]), str(event.get("type")))
    if outcome.event_type not in PAID_EVENTS:
        return outcome
    session = (event.get("data") or {}).get("object") or {}
    if session.get("payment_status") != "paid":
        return outcome  # a delayed payment: its async_payment_succeeded event will follow
    purchase = _purchase(session)
    if purchase is None or not session.get("id"):
        log.warning("Stripe event %s pays for a Checkout Session not made by pixeldrop; ignored", outcome.event_id)
        return outcome
    account_id, size = purchase
    added = credits.add_credits(db, account_id, size, "purchase", note=f"Stripe Checkout {session['id']}",
                                external_ref=f"stripe:{session['id']}")
    if added is None:
        log.info("Stripe Checkout Session %s was already credited", session["id"])
        return WebhookOutcome(outcome.event_id, outcome.event_type, account_id)
    log.info("credited %d credits to account %d (Stripe event %s)", size, account_id, outcome.event_id)
    return WebhookOutcome(outcome.event_id, outcome.event_type, account_id, size)
