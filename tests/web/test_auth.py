"""Signing up, in and out: argon2 passwords, opaque session cookies, one answer for every bad
sign-in and for every sign-up, rate-limited attempts, and sessions that end at log out (on every
server) and when the password changes."""

from __future__ import annotations

import hashlib
import re
import stat

from sqlalchemy import select

from pixeldrop import accounts
from pixeldrop.accounts import passwords
from pixeldrop.storage import Account
from pixeldrop.storage.models import BrowserSession
from pixeldrop.web.auth import SIGNED_UP
from pixeldrop.web.sessions import COOKIE

from .conftest import PASSWORD, csrf, keys_of, log_in, running, sign_up


def test_sign_up_gives_the_free_credits_and_stores_only_an_argon2_hash(client, sqlite_db):
    sign_up(client, "Alice@Example.com")
    page = client.get("/account")
    assert page.status_code == 200
    assert re.search(r'data-testid="balance">100<', page.text)
    assert "alice@example.com" in page.text
    with sqlite_db.session() as session:
        stored = session.query(Account.password_hash).filter_by(email="alice@example.com").scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_session_cookie_is_an_opaque_token_httponly_and_samesite_lax(client, sqlite_db):
    answer = client.get("/signup")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here; see the next test
    sign_up(client)
    value = client.cookies.get(COOKIE)
    # Nothing a reader could use: 256 random bits, not the account, the CSRF token or the password.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value), value
    assert csrf(client, "/account") not in value
    with sqlite_db.session() as session:
        stored = session.scalar(select(BrowserSession.token_hash))
    assert stored == hashlib.sha256(value.encode()).hexdigest()  # the database has only its hash
    tampered = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    client.cookies.clear()
    client.cookies.set(COOKIE, tampered)
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_log_out_ends_the_session_on_every_server_even_for_a_copied_cookie(settings, db, tiny_generator):
    """Two servers on one database, as behind a load balancer: logging out on one ends the
    session for a saved copy of the cookie on both."""
    with running(settings, db, tiny_generator) as first, running(settings, db, tiny_generator) as second:
        sign_up(first)
        saved = first.cookies.get(COOKIE)
        second.cookies.set(COOKIE, saved)
        assert second.get("/account").status_code == 200
        logout = first.post("/logout", data={"csrf_token": csrf(first, "/account")}, follow_redirects=False)
        assert logout.status_code == 303 and f'{COOKIE}=""' in logout.headers["set-cookie"]
        assert second.get("/account", follow_redirects=False).status_code == 303
        first.cookies.set(COOKIE, saved)
        assert first.get("/account", follow_redirects=False).status_code == 303


def test_cookie_is_secure_when_the_public_url_is_https(settings, sqlite_db, tiny_generator):
    settings.public_url = "https://images.example.com"
    with running(settings, sqlite_db, tiny_generator) as client:
        assert "secure" in client.get("/login").headers["set-cookie"].lower()


def test_pages_need_a_session_and_send_visitors_to_login(client):
    for path in ("/account", "/account/keys", "/account/usage", "/account/billing", "/account/settings",
                 "/playground"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == f"/login?next={path}"
    landing = client.get("/", follow_redirects=False)  # visitors get the landing page
    assert landing.status_code == 200
    for link in ('href="/signup"', 'href="/login"', 'href="/docs"'):
        assert link in landing.text
    sign_up(client)
    assert client.get("/", follow_redirects=False).headers["location"] == "/account"
    assert client.get("/login", follow_redirects=False).headers["location"] == "/account"


def test_unknown_email_and_wrong_password_get_the_same_answer(client, sqlite_db):
    accounts.create_account(sqlite_db, "nopassword@example.com", 10)  # made by the CLI, no password yet
    sign_up(client, "alice@example.com")
    client.cookies.clear()
    answers = [log_in(client, email, password) for email, password in [
        ("alice@example.com", "wrong password"), ("nobody@example.com", "wrong password"),
        ("nopassword@example.com", "wrong password"), ("not an email", "wrong password"),
    ]]
    assert {answer.status_code for answer in answers} == {401}
    bodies = {answer.text.replace(email, "EMAIL") for answer, email in
              zip(answers, ["alice@example.com", "nobody@example.com", "nopassword@example.com", "not an email"],
                  strict=True)}
    assert len(bodies) == 1 and "Invalid email or password." in bodies.pop()
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_log_in_and_out(client):
    sign_up(client)
    client.cookies.clear()
    answer = log_in(client, "ALICE@example.com ", next="/playground")
    assert answer.status_code == 303 and answer.headers["location"] == "/playground"
    assert client.get("/playground").status_code == 200
    assert ">Log out</button>" in client.get("/logout").text  # a link cannot log anyone out: GET asks
    assert client.get("/account").status_code == 200
    logout = client.post("/logout", data={"csrf_token": csrf(client, "/account")}, follow_redirects=False)
    assert logout.status_code == 303 and logout.headers["location"] == "/login?signed_out=1"
    assert client.get("/account", follow_redirects=False).status_code == 303
    assert "You have logged out." in client.get("/login?signed_out=1").text


def test_after_login_only_local_redirects(client):
    sign_up(client)
    client.cookies.clear()
    for target in ("https://evil.example.com/", "//evil.example.com/", "/\\evil.example.com"):
        client.cookies.clear()
        assert log_in(client, "alice@example.com", next=target).headers["location"] == "/account"


def test_sign_up_refuses_short_passwords_and_bad_emails(client, sqlite_db):
    token = csrf(client, "/signup")
    short = client.post("/signup", data={"csrf_token": token, "email": "bob@example.com", "password": "short"})
    assert short.status_code == 400 and "at least 8 characters" in short.text
    bad = client.post("/signup", data={"csrf_token": token, "email": "bob@", "password": PASSWORD})
    assert bad.status_code == 400 and "Not a valid email address" in bad.text
    assert accounts.count_accounts(sqlite_db) == 0
    sign_up(client, "bob@example.com")
    assert accounts.get_account(sqlite_db, "bob@example.com").credits == 100


def test_sign_up_answers_the_same_whether_or_not_the_email_has_an_account(client, sqlite_db):
    passwords.sign_up(sqlite_db, "taken@example.com", PASSWORD, free_credits=100)
    answers = []
    for email in ("taken@example.com", "TAKEN@ｅxample.com", "new@example.com"):
        client.cookies.clear()
        token = csrf(client, "/signup")
        answers.append(client.post("/signup", data={"csrf_token": token, "email": email,
                                                    "password": "another password"}, follow_redirects=False))
    assert len({(answer.status_code, tuple(answer.headers.items()), answer.text) for answer in answers}) == 1
    assert answers[0].status_code == 303 and answers[0].headers["location"] == SIGNED_UP
    assert "set-cookie" not in answers[0].headers  # signed in as nobody, in either case
    assert 'data-testid="signed-up"' in client.get(SIGNED_UP).text
    # The taken account is untouched; the new one works; both log in the same way.
    assert log_in(client, "taken@example.com", "another password").status_code == 401
    assert log_in(client, "taken@example.com").status_code == 303
    client.cookies.clear()
    assert log_in(client, "new@example.com", "another password").status_code == 303
    assert accounts.count_accounts(sqlite_db) == 2


def test_the_per_email_limit_counts_every_spelling_of_an_address(settings, sqlite_db, tiny_generator):
    """A fullwidth letter or another case is the same account, so it is the same count."""
    settings.login_attempts_per_minute = 3
    passwords.sign_up(sqlite_db, "victim@example.com", PASSWORD, free_credits=100)
    with running(settings, sqlite_db, tiny_generator) as client:
        spellings = ["victim@ｅxample.com", "VICTIM@EXAMPLE.COM", " Victim@Ｅxample.Com "]
        assert [log_in(client, email, "guess").status_code for email in spellings] == [401] * 3
        limited = log_in(client, "victim@ｅxample.com")  # the right password, a fourth spelling's try
        assert limited.status_code == 429 and "Too many attempts" in limited.text
        assert client.get("/account", follow_redirects=False).status_code == 303


def test_sign_in_attempts_are_limited_per_email_even_with_the_right_password(settings, sqlite_db, tiny_generator):
    settings.login_attempts_per_minute = 3
    passwords.sign_up(sqlite_db, "alice@example.com", PASSWORD, free_credits=100)
    with running(settings, sqlite_db, tiny_generator) as client:
        assert [log_in(client, "alice@example.com", "guess").status_code for _ in range(3)] == [401] * 3
        limited = log_in(client, "alice@example.com")
        assert limited.status_code == 429 and "Too many attempts" in limited.text
        assert int(limited.headers["retry-after"]) > 0
        assert client.get("/account", follow_redirects=False).status_code == 303
        assert log_in(client, "other@example.com").status_code == 401  # another email is not blocked


def test_sign_in_and_sign_up_attempts_are_limited_per_client_ip(settings, sqlite_db, tiny_generator):
    settings.login_attempts_per_ip_per_minute = 4
    with running(settings, sqlite_db, tiny_generator) as client:
        statuses = [log_in(client, f"user{i}@example.com", "guess").status_code for i in range(4)]
        assert statuses == [401] * 4
        assert log_in(client, "user9@example.com").status_code == 429
        token = csrf(client, "/signup")
        signup = client.post("/signup", data={"csrf_token": token, "email": "new@example.com", "password": PASSWORD})
        assert signup.status_code == 429 and accounts.count_accounts(sqlite_db) == 0


def test_a_new_password_signs_out_other_browsers(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        assert client.get("/account").status_code == 200
        passwords.set_password(sqlite_db, "alice@example.com", "a brand new password")
        assert client.get("/account", follow_redirects=False).status_code == 303
        assert log_in(client, "alice@example.com").status_code == 401
        assert log_in(client, "alice@example.com", "a brand new password").status_code == 303


def test_sessions_and_form_tokens_survive_a_restart(settings, sqlite_db, tiny_generator):
    """Sessions are rows in the database; form tokens are made with a secret kept in the home folder."""
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        cookie = client.cookies.get(COOKIE)
        token = csrf(client, "/account")
    secret = settings.home_dir / "session_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text()) >= 40
    with running(settings, sqlite_db, tiny_generator) as restarted:
        restarted.cookies.set(COOKIE, cookie)
        assert restarted.get("/account").status_code == 200
        assert restarted.post("/account/keys", data={"csrf_token": token, "name": "after"}).status_code == 200
    settings.session_secret = "another secret, set by the operator"
    with running(settings, sqlite_db, tiny_generator) as other:
        other.cookies.set(COOKIE, cookie)
        assert other.get("/account").status_code == 200
        assert other.post("/account/keys", data={"csrf_token": token, "name": "other"}).status_code == 403
    assert [key.name for key in keys_of(sqlite_db, "alice@example.com")] == ["after"]


def test_closed_sign_ups_create_no_account_and_no_page_links_to_them(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        assert 'href="/signup"' in client.get("/login").text  # open by default
    settings.signups_open = False
    with running(settings, sqlite_db, tiny_generator) as client:
        page = client.get("/signup")
        assert page.status_code == 403 and 'data-testid="signups-closed"' in page.text
        assert 'action="/signup"' not in page.text
        token = csrf(client, "/login")
        tried = client.post("/signup", data={"csrf_token": token, "email": "bob@example.com", "password": PASSWORD})
        assert tried.status_code == 403 and accounts.count_accounts(sqlite_db) == 0
        assert 'href="/signup"' not in client.get("/login").text
        accounts.create_account(sqlite_db, "bob@example.com", 10)  # the operator's way in
        passwords.set_password(sqlite_db, "bob@example.com", PASSWORD)
        assert log_in(client, "bob@example.com").status_code == 303
