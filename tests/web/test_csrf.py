"""Every form carries the session's CSRF token, and one account's session reaches only its own keys."""

from __future__ import annotations

import pytest

from pixeldrop import accounts
from pixeldrop.errors import InvalidApiKey

from .conftest import PASSWORD, create_key, csrf, keys_of, sign_up


@pytest.mark.parametrize("path, data", [
    ("/account/keys", {"name": "sneaky"}),
    ("/account/buy", {"credits": "500"}),
    ("/playground", {"prompt": "a cat", "format": "png"}),
    ("/logout", {}),
])
def test_a_form_post_without_the_token_is_refused_and_changes_nothing(client, sqlite_db, path, data):
    sign_up(client)
    for token in (None, "", "not-the-token"):
        form = data if token is None else {**data, "csrf_token": token}
        answer = client.post(path, data=form, follow_redirects=False)
        assert answer.status_code == 403, (path, token)
        assert answer.headers["content-type"].startswith("text/html")
        assert "This form has expired" in answer.text
    assert keys_of(sqlite_db, "alice@example.com") == []
    assert accounts.get_account(sqlite_db, "alice@example.com").credits == 100
    assert client.get("/account", follow_redirects=False).status_code == 200  # still signed in


def test_sign_up_and_log_in_need_the_token_too(client, sqlite_db):
    refused = client.post("/signup", data={"email": "mallory@example.com", "password": PASSWORD})
    assert refused.status_code == 403 and accounts.count_accounts(sqlite_db) == 0
    sign_up(client)
    client.cookies.clear()
    login = client.post("/login", data={"email": "alice@example.com", "password": PASSWORD}, follow_redirects=False)
    assert login.status_code == 403
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_a_token_from_another_session_is_refused(client, sqlite_db):
    sign_up(client, "alice@example.com")
    alices_token = csrf(client, "/account")
    client.cookies.clear()
    sign_up(client, "bob@example.com")
    answer = client.post("/account/keys", data={"csrf_token": alices_token, "name": "x"})
    assert answer.status_code == 403
    assert keys_of(sqlite_db, "bob@example.com") == []


def test_another_accounts_session_cannot_revoke_your_key(client, sqlite_db):
    sign_up(client, "alice@example.com")
    alices_key = create_key(client, "alice's")
    client.cookies.clear()
    sign_up(client, "bob@example.com")
    answer = client.post(f"/account/keys/{alices_key[:11]}/revoke", data={"csrf_token": csrf(client, "/account")},
                         follow_redirects=False)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html") and "No key with prefix" in answer.text
    assert accounts.verify_key(sqlite_db, alices_key).active
    # Alice can.
    client.cookies.clear()
    client.post("/login", data={"csrf_token": csrf(client), "email": "alice@example.com", "password": PASSWORD})
    revoked = client.post(f"/account/keys/{alices_key[:11]}/revoke", data={"csrf_token": csrf(client, "/account")},
                          follow_redirects=False)
    assert revoked.status_code == 303
    with pytest.raises(InvalidApiKey):
        accounts.verify_key(sqlite_db, alices_key)


def test_signing_in_starts_a_new_session_with_a_new_token(client):
    before = csrf(client, "/login")
    sign_up(client)
    assert csrf(client, "/account") != before
