"""In-process fixtures for the account pages: the real app with a real SQLite database and the
tiny pipeline, driven through Starlette's TestClient (which keeps cookies like a browser)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pixeldrop import accounts
from pixeldrop.app import create_app

from ..conftest import require

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright (scripts/setup --test installs both)."""
    require(CHROMIUM if Path(CHROMIUM).exists() and _has_playwright() else None, "Chromium with playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def running(settings, db, generator, base_url: str = "http://testserver"):
    with TestClient(create_app(settings, generator=generator, db=db), base_url=base_url) as client:
        yield client


@pytest.fixture
def client(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        yield client


def csrf(client: TestClient, path: str = "/login") -> str:
    """The CSRF token of the client's session, as the page at `path` puts it in its forms."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return TOKEN.search(page.text).group(1)


def sign_up(client: TestClient, email: str = "alice@example.com", password: str = PASSWORD) -> None:
    """Sign up, then log in: signing up signs nobody in (its answer must not tell a taken email)."""
    answer = client.post("/signup", data={"csrf_token": csrf(client, "/signup"), "email": email, "password": password},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?signed_up=1"), answer.text
    signed_in = log_in(client, email, password)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/account", signed_in.text


def log_in(client: TestClient, email: str, password: str = PASSWORD, **extra):
    return client.post("/login", data={"csrf_token": csrf(client, "/login"), "email": email, "password": password,
                                       **extra}, follow_redirects=False)


def keys_of(db, email: str) -> list[accounts.KeyInfo]:
    """The keys of the account with this address, as the keys page lists them."""
    return accounts.list_keys(db, accounts.get_account(db, email).id)


def create_key(client: TestClient, name: str = "") -> str:
    page = client.post("/account/keys", data={"csrf_token": csrf(client, "/account"), "name": name})
    assert page.status_code == 200, page.text
    return re.search(r'data-testid="new-key">([^<]+)<', page.text).group(1)


def balance(page_html: str) -> int:
    return int(re.search(r'data-testid="balance">([\d,]+)<', page_html).group(1).replace(",", ""))
