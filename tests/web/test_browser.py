"""The account pages in a real browser against a real `pixeldrop serve`, as a user goes through them.

Playwright drives Debian's Chromium (scripts/setup --test installs it). Screenshots of every
page go to test-artifacts/ for people to look at.
"""

from __future__ import annotations

import re

import pytest
import requests

from ..server import Server
from .fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe

API = "/text-to-image/v1"
EMAIL, PASSWORD = "ada@example.com", "correct horse battery"


@pytest.fixture
def stripe_fake():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def server(tmp_path, tiny_model, stripe_fake):
    server = Server(tmp_path / "home", "--model", tiny_model, PIXELDROP_DEMO_ACCOUNT="false",
                    PIXELDROP_STRIPE_SECRET_KEY=SECRET_KEY, PIXELDROP_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                    PIXELDROP_STRIPE_API_BASE=stripe_fake.url, NO_PROXY="127.0.0.1,localhost")
    stripe_fake.webhook_url = server.url + "/webhooks/stripe"
    try:
        server.start()
        yield server
    finally:
        server.stop()


def call_api(server: Server, key: str) -> requests.Response:
    return requests.post(server.url + API, files={"prompt": (None, "a red apple")}, headers={"x-api-key": key},
                         timeout=120)


def test_a_user_signs_up_manages_keys_generates_buys_credits_and_logs_out(browser, server, stripe_fake, artifacts_dir):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    # The pages' Content-Security-Policy allows no inline script or style: Chromium reports
    # anything it blocks on the console.
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text
            else None)
    shot = lambda name: page.screenshot(path=str(artifacts_dir / f"web-{name}.png"), full_page=True)  # noqa: E731
    balance = page.get_by_test_id("balance")

    # Sign up, then log in (signing up signs nobody in): 100 free credits.
    page.goto("/signup")
    shot("signup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login\?signed_up=1"))
    expect(page.get_by_test_id("signed-up")).to_be_visible()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account\?welcome=1"))
    expect(balance).to_have_text("100")

    # Create a key on the API keys page: shown once, copied with the button.
    page.get_by_role("navigation", name="Account").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key", exact=True).click()
    new_key = page.get_by_test_id("new-key")
    expect(new_key).to_have_text(re.compile(r"^pd_[0-9a-f]{8}_\S{40,}$"))
    key = new_key.inner_text().strip()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot("new-key")

    # Use it with the API: the page shows 2 credits fewer and the request.
    answer = call_api(server, key)
    assert answer.status_code == 200 and answer.headers["x-remaining-credits"] == "98"
    page.goto("/account")
    expect(balance).to_have_text("98")
    page.goto("/account/usage")
    usage = page.get_by_test_id("usage")
    expect(usage.locator("tbody tr").first).to_contain_text(key[:11])
    expect(usage.locator("tbody tr").first).to_contain_text("charged")
    page.goto("/account/keys")
    expect(page.get_by_test_id("new-key")).to_have_count(0)  # shown once only
    row = page.locator(f"tr[data-prefix='{key[:11]}']")
    expect(row).to_contain_text("laptop")
    expect(row).not_to_contain_text("never")  # last used

    # Revoke it, once asked to confirm: the API refuses it.
    row.get_by_role("link", name="Revoke", exact=True).click()
    page.get_by_role("button", name="Revoke key", exact=True).click()
    expect(page.locator(f"tr[data-prefix='{key[:11]}']")).to_contain_text("Revoked")
    refused = call_api(server, key)
    assert refused.status_code == 403 and refused.json() == {"error": "This API key has been revoked."}

    # Another key: the credits stayed with the account.
    page.get_by_role("button", name="Create key", exact=True).click()
    second = page.get_by_test_id("new-key").inner_text().strip()
    assert second != key
    page.goto("/account")
    expect(balance).to_have_text("98")
    assert call_api(server, second).headers["x-remaining-credits"] == "96"

    # The playground, paid through the same path.
    page.get_by_role("link", name="Playground", exact=True).click()
    page.get_by_label("Prompt").fill("a red apple")
    page.get_by_label("Format").select_option("png")
    page.get_by_role("button", name="Generate", exact=True).click()
    result = page.get_by_test_id("result")
    expect(result).to_be_visible()
    assert result.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.querySelector('[data-testid=result]').naturalWidth") == 512
    expect(page.get_by_test_id("playground-balance")).to_have_text("94")
    shot("playground")

    expect(page.get_by_test_id("history").locator("img")).to_have_count(1)
    page.get_by_role("link", name="Account", exact=True).click()
    expect(balance).to_have_text("94")
    shot("account")
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Usage").click()
    expect(usage.locator("tbody tr").first).to_contain_text("Playground")
    expect(page.locator("#usage svg rect.bar")).to_have_count(1)  # today's bar
    shot("usage")

    # Buy 500 credits on the billing page: Stripe Checkout (a local fake), whose webhook adds them.
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Billing").click()
    pack = page.locator("form.pack").filter(has=page.locator("input[name=credits][value='500']"))
    pack.get_by_role("button", name="Buy", exact=True).click()
    expect(page.get_by_role("heading", name="Fake Stripe Checkout")).to_be_visible()
    assert stripe_fake.requests[-1]["params"]["metadata[credits]"] == "500"
    page.get_by_role("button", name="Pay", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account/billing\?purchase=success"))
    expect(balance).to_have_text("594")
    assert [status for status, _ in stripe_fake.deliveries] == [200]
    expect(page.get_by_test_id("ledger").locator("tbody tr").first).to_contain_text("Purchase")
    page.locator("#buy").scroll_into_view_if_needed()
    shot("account-after-purchase")

    # Log out: the account is no longer reachable, not even with a copy of the cookie saved before.
    saved = context.cookies()
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("status")).to_contain_text("logged out")
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login\?next=/account"))
    shot("login")
    copy = browser.new_context(base_url=server.url)
    copy.add_cookies(saved)
    replayed = copy.new_page()
    replayed.goto("/account")
    expect(replayed).to_have_url(re.compile(r"/login\?next=/account"))
    copy.close()

    # And back in with the same password, to the same balance.
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(balance).to_have_text("594")
    assert blocked == []
    context.close()


def test_an_account_made_by_the_operator_signs_in_and_gets_credits_without_stripe(browser, tmp_path, tiny_model,
                                                                                   artifacts_dir):
    from playwright.sync_api import expect

    from pixeldrop.accounts import passwords
    from pixeldrop.storage import Database

    from ..server import cli

    home = tmp_path / "home"
    assert cli(home, "accounts", "create", "ops@example.com").returncode == 0
    db = Database.open(f"sqlite:///{home / 'pixeldrop.db'}")
    passwords.set_password(db, "ops@example.com", PASSWORD)  # what `accounts set-password` does
    db.close()
    server = Server(home, "--model", tiny_model, PIXELDROP_DEMO_ACCOUNT="false").start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
        page = context.new_page()
        page.goto("/account")
        page.get_by_label("Email").fill("ops@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in", exact=True).click()
        expect(page.get_by_test_id("balance")).to_have_text("100")
        page.goto("/account/billing")
        buying = page.locator("#buy")
        expect(buying).to_contain_text("Buying credits is not available on this server.")
        expect(buying).not_to_contain_text("pixeldrop credits")
        expect(buying.get_by_role("button", name="Buy", exact=True)).to_have_count(0)
        assert cli(home, "credits", "add", "ops@example.com", "500").returncode == 0
        page.reload()
        expect(page.get_by_test_id("balance")).to_have_text("600")
        expect(page.get_by_test_id("ledger").locator("tbody tr").first).to_contain_text("Operator")
        page.screenshot(path=str(artifacts_dir / "web-account-buying-disabled.png"), full_page=True)
        context.close()
    finally:
        server.stop()
