"""The account pages in Chromium against a real `pixeldrop serve`: no second key on reload, a
confirmation before Revoke, every page within a 390 px phone screen, the API docs with every
request outside this machine blocked, and a password reset through a real SMTP server.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

from pixeldrop import accounts
from pixeldrop.storage import Database

from ..server import Server, wait_until
from .fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe
from .mailbox import smtp_server

API = "/text-to-image/v1"
PASSWORD, NEW_PASSWORD = "correct horse battery", "a brand new password"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def mailbox():
    with smtp_server() as mailbox:
        yield mailbox


@pytest.fixture(scope="module")
def stripe_fake():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, mailbox, stripe_fake):
    home = tmp_path_factory.mktemp("pages") / "home"
    server = Server(home, "--model", tiny_model, PIXELDROP_DEMO_ACCOUNT="false",
                    PIXELDROP_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}", PIXELDROP_MAIL_FROM="noreply@example.com",
                    PIXELDROP_STRIPE_SECRET_KEY=SECRET_KEY, PIXELDROP_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                    PIXELDROP_STRIPE_API_BASE=stripe_fake.url, NO_PROXY="127.0.0.1,localhost")
    server.home = home
    try:
        server.start()
        yield server
    finally:
        server.stop()


def call_api(server: Server, key: str, prompt: str = "a red apple") -> requests.Response:
    return requests.post(server.url + API, files={"prompt": (None, prompt)}, headers={"x-api-key": key}, timeout=120)


def keys_of(server: Server, email: str) -> list[accounts.KeyInfo]:
    db = Database.open(f"sqlite:///{server.home / 'pixeldrop.db'}")
    try:
        return accounts.list_keys(db, accounts.get_account(db, email).id)
    finally:
        db.close()


def new_page(browser, server, viewport=None):
    """A page in a fresh browser context that records what the pages' CSP blocks."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, base_url=server.url)
    page = context.new_page()
    page.blocked = []
    page.on("console", lambda message: page.blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    return page


def sign_up_and_log_in(page, email: str, password: str = PASSWORD) -> None:
    from playwright.sync_api import expect

    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign up", exact=True).click()
    log_in(page, email, password)
    expect(page).to_have_url(re.compile(r"/account"))


def log_in(page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()


def test_reloading_after_create_key_makes_no_second_key_and_revoke_asks_first(browser, server, artifacts_dir):
    from playwright.sync_api import expect

    page = new_page(browser, server)
    sign_up_and_log_in(page, "reload@example.com")
    page.goto("/account/keys")
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name="Create key", exact=True).click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("pd_")
    page.reload()
    expect(page.get_by_test_id("key-shown-once")).to_be_visible()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    page.go_back()
    page.go_forward()
    assert [k.name for k in keys_of(server, "reload@example.com")] == ["ci"]

    row = page.locator(f"tr[data-prefix='{key[:11]}']")
    row.get_by_role("link", name="Revoke", exact=True).click()
    expect(page.get_by_role("heading", name=f"Revoke key {key[:11]}?")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "web-revoke-confirm.png"), full_page=True)
    assert call_api(server, key).status_code == 200  # one click revoked nothing
    page.get_by_role("link", name="Cancel", exact=True).click()
    expect(row).to_contain_text("Active")
    row.get_by_role("link", name="Revoke", exact=True).click()
    page.get_by_role("button", name="Revoke key", exact=True).click()
    expect(row).to_contain_text("Revoked")
    assert call_api(server, key).status_code == 403
    assert page.blocked == []
    page.context.close()


def _fits(page, path: str, artifacts_dir) -> None:
    """The page is no wider than the phone's screen: nothing scrolls sideways."""
    width = page.evaluate("document.documentElement.scrollWidth")
    name = path.strip("/").replace("/", "-").split("?")[0] or "landing"
    page.screenshot(path=str(artifacts_dir / f"web-phone-{name}.png"), full_page=True)
    assert width <= 390, f"{path} is {width} px wide at 390 px"


def test_every_page_fits_a_390_px_phone(browser, server, mailbox, artifacts_dir):
    from playwright.sync_api import expect

    page = new_page(browser, server, PHONE)
    for path in ("/", "/signup", "/login", "/forgot-password", "/reset-password?token=nonsense"):
        page.goto(path)
        _fits(page, path, artifacts_dir)

    sign_up_and_log_in(page, "a.rather.long.address.for.a.phone@example.com")
    _fits(page, "/account", artifacts_dir)
    page.goto("/account/keys")
    page.get_by_label("Name").fill("a key with a long name that a table has to fit somewhere")
    page.get_by_role("button", name="Create key", exact=True).click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    _fits(page, "/account/keys?created=1", artifacts_dir)
    call_api(server, key, "a red apple on a blue background " * 8)
    page.goto("/playground")
    page.get_by_label("Prompt").fill("a red apple")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.get_by_test_id("result")).to_be_visible()
    _fits(page, "/playground", artifacts_dir)

    for path in ("/account", "/account/keys", f"/account/keys/{key[:11]}/revoke", "/account/usage",
                 "/account/billing", "/account/settings", "/logout", "/account/keys/pd_00000000/revoke"):
        page.goto(path)
        _fits(page, path, artifacts_dir)
    # The keys table keeps every column, Revoke included, within the screen.
    page.goto("/account/keys")
    revoke = page.locator(f"tr[data-prefix='{key[:11]}']").get_by_role("link", name="Revoke", exact=True)
    expect(revoke).to_be_visible()
    box = revoke.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.blocked == []
    page.context.close()


def test_the_api_docs_work_with_every_outside_request_blocked(browser, server, artifacts_dir):
    from playwright.sync_api import expect

    page = new_page(browser, server)
    outside: list[str] = []

    def only_this_machine(route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_this_machine)
    page.goto("/docs")
    operation = page.locator(".opblock-summary-path", has_text="/text-to-image/v1")
    expect(operation).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/healthz")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "web-docs.png"), full_page=False)
    page.goto("/redoc")
    expect(page.get_by_text("Generate a 512x512 image from a text prompt").first).to_be_visible()
    expect(page.get_by_text("/text-to-image/v1").first).to_be_attached()
    page.screenshot(path=str(artifacts_dir / "web-redoc.png"), full_page=False)
    assert outside == []
    page.context.close()


def test_a_forgotten_password_is_reset_through_the_mailed_link(browser, server, mailbox, artifacts_dir):
    from playwright.sync_api import expect

    email = "forgetful@example.com"
    page = new_page(browser, server)
    sign_up_and_log_in(page, email)
    page.get_by_role("button", name="Log out", exact=True).click()
    page.get_by_role("link", name="Forgot password?", exact=True).click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send the link", exact=True).click()
    expect(page.get_by_test_id("reset-sent")).to_be_visible()
    wait_until(lambda: mailbox.to(email), "the reset mail")
    link = mailbox.reset_link(email)
    assert link.startswith(server.url + "/reset-password?token=")
    page.goto(link)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password", exact=True).click()
    expect(page.get_by_test_id("password-reset")).to_be_visible()
    log_in(page, email, PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("Invalid email or password.")
    log_in(page, email, NEW_PASSWORD)
    expect(page).to_have_url(re.compile(r"/account$"))
    page.goto(link)  # used once: the link now says so
    expect(page.get_by_test_id("reset-invalid")).to_be_visible()
    assert page.blocked == []
    page.context.close()
