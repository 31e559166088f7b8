"""The account page and the playground, in-process: what they show and what they charge."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from pixeldrop import accounts
from pixeldrop.accounts import credits

from .conftest import balance, create_key, csrf, running, sign_up

API = "/text-to-image/v1"


def api_call(client, key: str):
    return client.post(API, files={"prompt": (None, "a red apple")}, headers={"x-api-key": key})


def test_the_new_key_is_shown_once_and_works(client, sqlite_db):
    sign_up(client)
    key = create_key(client, "production")
    assert key.startswith("pd_") and accounts.verify_key(sqlite_db, key).name == "production"
    page = client.get("/account/keys").text
    assert key not in page and key[:11] in page and "production" in page
    answer = api_call(client, key)
    assert answer.status_code == 200 and answer.headers["x-remaining-credits"] == "98"
    assert balance(client.get("/account").text) == 98
    page = client.get("/account/keys").text
    row = re.search(rf'<tr data-prefix="{key[:11]}">.*?</tr>', page, re.S).group(0)
    assert "Active" in row and "never" not in row and "60/min" in row


def test_usage_shows_each_request_with_its_key_outcome_and_credits(client, sqlite_db):
    sign_up(client)
    key = create_key(client)
    assert api_call(client, key).status_code == 200
    assert client.post(API, headers={"x-api-key": key}, json={"prompt": "x"}).status_code == 400
    page = client.get("/account/usage").text
    usage = re.search(r'data-testid="usage">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", usage.split("<tbody>")[1], re.S)
    assert len(rows) == 2
    assert key[:11] in rows[0] and ">invalid request<" in rows[0] and re.search(r'class="num">0<', rows[0])
    assert key[:11] in rows[1] and ">charged<" in rows[1] and re.search(r'class="num">2<', rows[1])
    # The chart has one bar, today's, of 2 credits.
    assert len(re.findall(r'class="bar"', page)) == 1 and 'class="bar-value">2<' in page
    ledger = re.search(r'data-testid="ledger">(.*?)</table>', client.get("/account/billing").text, re.S).group(1)
    assert "-2" in ledger and "+100" in ledger and "Free" in ledger


def test_revoking_keeps_the_credits_and_the_api_refuses_the_key(client, sqlite_db):
    sign_up(client)
    key = create_key(client)
    revoked = client.post(f"/account/keys/{key[:11]}/revoke", data={"csrf_token": csrf(client, "/account")})
    assert revoked.status_code == 200 and "The key was revoked." in revoked.text
    assert "Revoked" in re.search(rf'<tr data-prefix="{key[:11]}">.*?</tr>', revoked.text, re.S).group(0)
    assert api_call(client, key).status_code == 403
    second = create_key(client)
    assert api_call(client, second).headers["x-remaining-credits"] == "98"


def test_pages_revoke_keys_by_prefix_and_refuse_a_whole_key_in_the_url(client, sqlite_db):
    """Access logs keep URLs: a page names a key by its prefix, and a whole key there revokes nothing."""
    sign_up(client)
    key = create_key(client)
    assert f'href="/account/keys/{key[:11]}/revoke"' in client.get("/account/keys").text
    assert f'action="/account/keys/{key[:11]}/revoke"' in client.get(f"/account/keys/{key[:11]}/revoke").text
    answer = client.post(f"/account/keys/{key}/revoke", data={"csrf_token": csrf(client, "/account")},
                         follow_redirects=False)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert key[11:] not in answer.text
    assert accounts.verify_key(sqlite_db, key).active


def test_without_stripe_customers_see_buying_is_not_available_and_no_operator_instructions(client, sqlite_db):
    sign_up(client)
    for path in ("/account", "/account/keys", "/account/usage", "/account/billing", "/account/settings",
                 "/playground"):
        page = client.get(path).text
        assert "pixeldrop credits" not in page and "Operators" not in page and "Stripe" not in page, path
    page = client.get("/account/billing").text
    assert "Buying credits is not available on this server." in page
    assert ">Buy<" not in page
    answer = client.post("/account/buy", data={"csrf_token": csrf(client, "/account"), "credits": "500"},
                         follow_redirects=False)
    assert answer.status_code == 503 and answer.headers["content-type"].startswith("text/html")
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 100


def test_the_playground_charges_like_the_api_and_shows_the_image(client, sqlite_db):
    sign_up(client)
    page = client.post("/playground", data={"csrf_token": csrf(client, "/playground"), "prompt": "a cat",
                                            "format": "webp"})
    assert page.status_code == 200, page.text
    data = re.search(r'<img src="data:image/webp;base64,([^"]+)"', page.text).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "WEBP" and image.size == (512, 512)
    assert 'data-testid="playground-balance">98<' in page.text
    account = accounts.get_account(sqlite_db, "alice@example.com")
    assert account.credits == 98
    assert balance(client.get("/account").text) == 98 and "Playground" in client.get("/account/usage").text


def test_the_playground_refuses_empty_prompts_and_unknown_formats_for_free(client, sqlite_db):
    sign_up(client)
    token = csrf(client, "/playground")
    empty = client.post("/playground", data={"csrf_token": token, "prompt": "  ", "format": "png"})
    assert empty.status_code == 400 and "The prompt is empty." in empty.text
    gif = client.post("/playground", data={"csrf_token": token, "prompt": "a cat", "format": "gif"})
    assert gif.status_code == 400
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 100


def test_the_playground_stops_at_zero_credits_and_at_the_rate_limit(settings, sqlite_db, tiny_generator):
    settings.free_credits = 2
    settings.rate_limit_per_minute = 2
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        token = csrf(client, "/playground")
        form = {"csrf_token": token, "prompt": "a cat", "format": "jpeg"}
        assert client.post("/playground", data=form).status_code == 200
        broke = client.post("/playground", data=form)
        assert broke.status_code == 402 and "no remaining credits" in broke.text
        limited = client.post("/playground", data=form)
        assert limited.status_code == 429 and "Too many images" in limited.text
        assert int(limited.headers["retry-after"]) > 0
        account = accounts.get_account(sqlite_db, "alice@example.com")
        assert account.credits == 0
        outcomes = [row.outcome for row in accounts.usage.recent_requests(sqlite_db, account.id)]
        assert outcomes == ["rate_limited", "out_of_credits", "charged"]
        usage_page = client.get("/account/usage").text
        assert "rate limited" in usage_page and "out of credits" in usage_page


def test_page_errors_are_pages_and_api_errors_stay_json(client):
    sign_up(client)
    missing = client.post("/account/keys/pd_00000000/revoke", data={"csrf_token": csrf(client, "/account")})
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "<!doctype html>" in missing.text and "x-frame-options" in missing.headers
    assert client.get("/nope").json() == {"error": "Not found."}
    refused = client.post(API, headers={"x-api-key": "pd_nope"}, data={"prompt": "x"})
    assert refused.json() == {"error": "Invalid API key."}
    assert "set-cookie" not in refused.headers  # the API never starts a session
    assert client.post("/webhooks/stripe", content=b"{}").json()["error"]  # JSON too (not configured: 503)


def test_pages_carry_headers_that_keep_them_out_of_frames_and_caches(client):
    page = client.get("/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/static/pixeldrop.css").status_code == 200


def test_every_form_control_has_its_label(client):
    """Other tooling finds the pages' controls by these visible labels."""
    signup = client.get("/signup").text
    assert '<label for="email">Email</label>' in signup and '<label for="password">Password</label>' in signup
    assert ">Sign up</button>" in signup
    assert ">Log in</button>" in client.get("/login").text
    sign_up(client)
    keys = client.get("/account/keys").text
    assert ">Create key</button>" in keys and ">Log out</button>" in keys
    prefix = create_key(client)[:11]
    assert ">Revoke</a>" in client.get("/account/keys").text
    revoke = client.get(f"/account/keys/{prefix}/revoke").text
    assert ">Revoke key</button>" in revoke and ">Cancel</a>" in revoke
    settings = client.get("/account/settings").text
    assert ">Change password</button>" in settings and ">Delete my account</button>" in settings
    playground = client.get("/playground").text
    assert '<label for="prompt">Prompt</label>' in playground and ">Generate</button>" in playground
    for html in (signup, keys, settings, playground, client.get("/forgot-password").text):
        for control in re.findall(r'<(?:input|textarea|select)[^>]*\bid="([^"]+)"', html):
            assert f'<label for="{control}">' in html, control


def test_reservations_stay_consistent_with_the_ledger(client, sqlite_db):
    sign_up(client)
    key = create_key(client)
    for _ in range(2):
        api_call(client, key)
    client.post("/playground", data={"csrf_token": csrf(client, "/playground"), "prompt": "a", "format": "png"})
    account = accounts.get_account(sqlite_db, "alice@example.com")
    entries = accounts.usage.ledger(sqlite_db, account.id)
    assert entries[0].balance_after == account.credits == credits.balance(sqlite_db, account.id) == 94
    assert sum(entry.delta for entry in entries) == 94
