"""A local stand-in for the parts of Stripe that pixeldrop talks to, on a loopback port.

- `POST /v1/checkout/sessions`: what the `stripe` library calls to create a Checkout Session
  (form-encoded, `Authorization: Bearer <secret key>`); recorded, answered with a session whose
  `url` is this server's own payment page.
- `GET /pay/<id>`: that payment page, with a "Pay" button.
- `POST /pay/<id>`: "pays": sends pixeldrop the signed `checkout.session.completed` event, as
  Stripe does, then sends the browser to the session's success URL.

Events are signed the way Stripe documents it, without the `stripe` library, so that a test
checks pixeldrop's verification against the scheme and not against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

SECRET_KEY = "sk_test_pixeldrop_fake"
WEBHOOK_SECRET = "whsec_pixeldrop_test_secret"


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header: t=<unix time>,v1=<HMAC-SHA256 of "t.payload" with the secret>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


_event_ids = itertools.count(1)


def checkout_completed(session: dict, event_id: str | None = None, payment_status: str = "paid",
                       event_type: str = "checkout.session.completed") -> str:
    """The JSON body of a checkout.session.completed event for `session`, as Stripe sends it."""
    event = {
        "id": event_id or f"evt_test_{next(_event_ids)}_{int(time.time() * 1000)}",
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": {**session, "object": "checkout.session", "payment_status": payment_status,
                            "status": "complete"}},
    }
    return json.dumps(event)


class FakeStripe:
    def __init__(self, secret_key: str = SECRET_KEY, webhook_secret: str = WEBHOOK_SECRET):
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None
        self.requests: list[dict] = []  # every Checkout Session creation: {"headers": ..., "params": ...}
        self.sessions: dict[str, dict] = {}
        self.deliveries: list[tuple[int, str]] = []  # (status, body) of each webhook sent
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: str, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> str:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()

            def do_POST(self) -> None:
                if self.path == "/v1/checkout/sessions":
                    self._send(*fake._create_session(dict(self.headers), dict(parse_qsl(self._body()))))
                elif self.path.startswith("/pay/"):
                    self._body()
                    self._send(*fake._pay(self.path.removeprefix("/pay/")))
                else:
                    self._send(404, json.dumps({"error": {"message": "Unrecognized request URL"}}))

            def do_GET(self) -> None:
                session = fake.sessions.get(self.path.removeprefix("/pay/"))
                if session is None:
                    self._send(404, "no such session", "text/plain")
                    return
                amount = int(fake.requests[-1]["params"]["line_items[0][price_data][unit_amount]"])
                page = (f"<!doctype html><title>Fake Checkout</title><h1>Fake Stripe Checkout</h1>"
                        f"<p>{html.escape(session['metadata']['credits'])} credits, {amount / 100:.2f}</p>"
                        f"<form method=post><button type=submit>Pay</button></form>")
                self._send(200, page, "text/html; charset=utf-8")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _create_session(self, headers: dict, params: dict) -> tuple[int, str]:
        self.requests.append({"headers": headers, "params": params})
        if headers.get("Authorization") != f"Bearer {self.secret_key}":
            return 401, json.dumps({"error": {"type": "invalid_request_error",
                                              "message": "Invalid API Key provided: sk_***"}})
        session_id = f"cs_test_{len(self.requests)}"
        session = {
            "id": session_id, "object": "checkout.session", "mode": params.get("mode"),
            "url": f"{self.url}/pay/{session_id}", "payment_status": "unpaid", "status": "open",
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "metadata": {key[len("metadata["):-1]: value for key, value in params.items()
                         if key.startswith("metadata[")},
            "success_url": params.get("success_url"), "cancel_url": params.get("cancel_url"),
            "amount_total": int(params.get("line_items[0][price_data][unit_amount]", 0)),
            "currency": params.get("line_items[0][price_data][currency]"),
        }
        self.sessions[session_id] = session
        return 200, json.dumps(session)

    def deliver(self, payload: str, signature: str | None = None) -> tuple[int, str]:
        """Post one event to pixeldrop's webhook, signed unless a signature is given."""
        request = urllib.request.Request(
            self.webhook_url, data=payload.encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "Stripe-Signature": signature or sign(payload, self.webhook_secret)},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            result = error.code, error.read().decode()
        self.deliveries.append(result)
        return result

    def _pay(self, session_id: str) -> tuple[int, str, str, dict[str, str]]:
        session = self.sessions[session_id]
        self.deliver(checkout_completed(session))
        return 303, "", "text/plain", {"Location": session["success_url"]}

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
