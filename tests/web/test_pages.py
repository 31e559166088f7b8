"""The account's pages, in-process: the landing page, POST-redirect-GET with the new key shown
once, Revoke behind a confirmation, the quickstart, prompts shown to their owner only, the
playground's history, changing the password, deleting the account, and docs without a CDN."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from pixeldrop import accounts
from pixeldrop.accounts import credits, gallery, passwords, resets
from pixeldrop.errors import InvalidApiKey
from pixeldrop.storage import Account, BrowserSession, ImageRequest, Job

from ..statements import statements
from .conftest import PASSWORD, create_key, csrf, keys_of, log_in, running, sign_up

API = "/text-to-image/v1"
NEW_KEY = re.compile(r'data-testid="new-key">([^<]+)<')


def post_key(client, name: str = ""):
    return client.post("/account/keys", data={"csrf_token": csrf(client, "/account/keys"), "name": name},
                       follow_redirects=False)


def test_create_key_redirects_and_the_page_after_shows_the_key_once(client, sqlite_db):
    sign_up(client)
    created = post_key(client, "laptop")
    assert created.status_code == 303 and created.headers["location"] == "/account/keys?created=1"
    first = client.get(created.headers["location"])
    key = NEW_KEY.search(first.text).group(1)
    assert accounts.verify_key(sqlite_db, key).name == "laptop"
    # The key travelled in the session, encrypted: the database never holds it in clear.
    with sqlite_db.session() as session:
        assert session.scalar(select(BrowserSession.flash)) is None  # taken by the page
    reloaded = client.get(created.headers["location"])
    assert reloaded.status_code == 200 and key not in reloaded.text and not NEW_KEY.search(reloaded.text)
    assert 'data-testid="key-shown-once"' in reloaded.text
    assert [k.name for k in keys_of(sqlite_db, "alice@example.com")] == ["laptop"]


def test_the_new_key_is_kept_encrypted_until_its_page_takes_it(client, sqlite_db):
    sign_up(client)
    post_key(client)
    with sqlite_db.session() as session:
        sealed = session.scalar(select(BrowserSession.flash))
    key = NEW_KEY.search(client.get("/account/keys?created=1").text).group(1)
    assert sealed and key not in sealed and key[12:] not in sealed


def test_revoke_asks_first_and_only_its_form_revokes(client, sqlite_db):
    sign_up(client)
    post_key(client)
    key = NEW_KEY.search(client.get("/account/keys?created=1").text).group(1)
    prefix = key[:11]
    question = client.get(f"/account/keys/{prefix}/revoke")
    assert question.status_code == 200 and f"Revoke key <code>{prefix}</code>?" in question.text
    assert accounts.verify_key(sqlite_db, key).active  # asking revoked nothing
    done = client.post(f"/account/keys/{prefix}/revoke", data={"csrf_token": csrf(client, "/account")},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/account/keys?revoked=1"
    with pytest.raises(InvalidApiKey):
        accounts.verify_key(sqlite_db, key)
    # Asking again about a revoked key goes back to the list; another account's key is not found.
    assert client.get(f"/account/keys/{prefix}/revoke", follow_redirects=False).status_code == 303
    assert client.get("/account/keys/pd_00000000/revoke").status_code == 404


def test_the_landing_page_is_for_visitors_and_the_overview_has_a_quickstart(settings, sqlite_db, tiny_generator):
    settings.public_url = "http://images.example.com/"
    with running(settings, sqlite_db, tiny_generator) as client:
        landing = client.get("/")
        assert landing.status_code == 200 and "ClipDrop" in landing.text
        assert all(f'href="{path}"' in landing.text for path in ("/signup", "/login", "/docs"))
        sign_up(client)
        overview = client.get("/account").text
        assert 'data-testid="base-url">http://images.example.com<' in overview
        curl = re.search(r'data-testid="quickstart-curl">(.*?)</pre>', overview, re.S).group(1)
        assert "curl -X POST http://images.example.com/text-to-image/v1" in curl
        assert "-H 'x-api-key: YOUR_API_KEY'" in curl and "-F 'prompt=a red apple'" in curl
        for path in ("/account/keys", "/account/usage", "/account/billing", "/account/settings"):
            assert f'href="{path}"' in overview


def test_each_page_holds_its_own_part(client, sqlite_db):
    sign_up(client)
    pages = {path: client.get(path).text for path in ("/account", "/account/keys", "/account/usage",
                                                       "/account/billing", "/account/settings")}
    assert ">Create key</button>" in pages["/account/keys"] and ">Create key</button>" not in pages["/account"]
    assert 'data-testid="usage"' not in pages["/account"] and "Credits spent per day" in pages["/account/usage"]
    assert 'data-testid="ledger"' in pages["/account/billing"] and 'data-testid="ledger"' not in pages["/account"]
    assert ">Change password</button>" in pages["/account/settings"]
    for path, html in pages.items():
        assert re.search(rf'href="{path}" aria-current="page"', html), path


def test_recent_requests_show_the_prompt_to_their_owner_only(client, sqlite_db):
    sign_up(client, "alice@example.com")
    alice = accounts.get_account(sqlite_db, "alice@example.com")
    reservation = credits.reserve(sqlite_db, alice.id, None, 2, prompt="a red apple <b>on a blue background</b>")
    credits.settle(sqlite_db, reservation)
    usage = client.get("/account/usage").text
    assert "a red apple &lt;b&gt;on a blue background&lt;/b&gt;" in usage  # shown, escaped
    client.cookies.clear()
    sign_up(client, "bob@example.com")
    assert "a red apple" not in client.get("/account/usage").text


@pytest.mark.parametrize("store_prompts", [True, False])
def test_an_api_requests_prompt_is_on_the_usage_page_unless_the_operator_turns_storage_off(
        settings, sqlite_db, tiny_generator, store_prompts):
    settings.store_prompts = store_prompts
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        key = create_key(client)
        paid = client.post("/text-to-image/v1", headers={"x-api-key": key}, files={"prompt": (None, "a green pear")})
        assert paid.status_code == 200
        with sqlite_db.session() as session:
            stored = session.scalars(select(ImageRequest.prompt)).all()
        assert stored == (["a green pear"] if store_prompts else [None])
        assert ("a green pear" in client.get("/account/usage").text) is store_prompts


def test_the_playground_redirects_to_its_image_and_keeps_a_history(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        form = {"csrf_token": csrf(client, "/playground"), "prompt": "a red apple", "format": "png", "seed": "7"}
        made = client.post("/playground", data=form, follow_redirects=False)
        assert made.status_code == 303 and made.headers["location"].startswith("/playground?image=")
        shown = client.get(made.headers["location"])
        assert shown.headers["seed"] == "7" and 'data-testid="result"' in shown.text
        again = client.get(made.headers["location"])  # a reload shows it again and charges nothing
        assert 'data-testid="result"' in again.text
        alice = accounts.get_account(sqlite_db, "alice@example.com")
        assert alice.credits == 98
        [kept] = gallery.recent(sqlite_db, alice.id)
        assert (kept.prompt, kept.seed, kept.media_type) == ("a red apple", 7, "image/png")
        assert f'src="/playground/images/{kept.id}"' in again.text
        picture = client.get(f"/playground/images/{kept.id}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content.startswith(b"\x89PNG")
        client.cookies.clear()
        sign_up(client, "bob@example.com")  # another account sees none of it
        assert client.get(f"/playground/images/{kept.id}").status_code == 404
        assert 'data-testid="result"' not in client.get(made.headers["location"]).text


def test_without_prompt_storage_the_history_keeps_no_prompt(settings, sqlite_db, tiny_generator):
    settings.store_prompts = False
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        client.post("/playground", data={"csrf_token": csrf(client, "/playground"), "prompt": "a secret apple",
                                         "format": "jpeg"})
        alice = accounts.get_account(sqlite_db, "alice@example.com")
        assert [item.prompt for item in gallery.recent(sqlite_db, alice.id)] == [None]
        assert "a secret apple" not in client.get("/playground").text
        assert "This server does not keep prompts." in client.get("/account/usage").text


def test_the_history_keeps_the_last_images_only(db):
    alice = accounts.create_account(db, "alice@example.com", 0)
    bob = accounts.create_account(db, "bob@example.com", 0)
    bobs = gallery.add(db, bob.id, "image/png", b"bob's")
    ids = [gallery.add(db, alice.id, "image/png", bytes([n]), prompt=f"n{n}", seed=n) for n in range(gallery.KEEP + 3)]
    assert [item.id for item in gallery.recent(db, alice.id)] == ids[::-1][:gallery.KEEP]
    assert gallery.image(db, alice.id, ids[0]) is None and gallery.image(db, alice.id, bobs) is None
    assert gallery.image(db, bob.id, bobs) == ("image/png", b"bob's")


def test_changing_the_password_needs_the_current_one_and_signs_out_other_browsers(settings, sqlite_db,
                                                                                 tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client, \
            running(settings, sqlite_db, tiny_generator) as other:
        sign_up(client)
        log_in(other, "alice@example.com")
        token = csrf(client, "/account/settings")
        wrong = client.post("/account/password",
                            data={"csrf_token": token, "current": "not it", "new": "new password!"})
        assert wrong.status_code == 400 and "The current password is not right." in wrong.text
        short = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD, "new": "short"})
        assert short.status_code == 400 and "at least 8 characters" in short.text
        assert other.get("/account", follow_redirects=False).status_code == 200  # nothing changed yet
        changed = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                         "new": "new password!"}, follow_redirects=False)
        assert changed.headers["location"] == "/account/settings?password_changed=1"
        assert client.get("/account", follow_redirects=False).status_code == 200  # this browser stays in
        assert other.get("/account", follow_redirects=False).status_code == 303  # the other is out
        assert log_in(other, "alice@example.com", PASSWORD).status_code == 401
        assert log_in(other, "alice@example.com", "new password!").status_code == 303


def test_deleting_the_account_revokes_keys_ends_sessions_and_keeps_the_ledger(settings, db, tiny_generator):
    settings.run_jobs = False  # its job stays queued: closing the account cancels and refunds it
    with running(settings, db, tiny_generator) as client, running(settings, db, tiny_generator) as other:
        sign_up(client)
        log_in(other, "alice@example.com")
        post_key(client)
        key = NEW_KEY.search(client.get("/account/keys?created=1").text).group(1)
        assert client.post(API, data={"prompt": "a red apple"}, headers={"x-api-key": key}).status_code == 200
        client.post("/playground", data={"csrf_token": csrf(client, "/playground"), "prompt": "a cat",
                                         "format": "jpeg"})
        job = client.post("/v1/jobs", data={"prompt": "a pear"}, headers={"x-api-key": key})
        assert job.status_code == 202 and job.headers["x-remaining-credits"] == "94"
        assert "whsec_" in client.get("/account").text  # the account's webhook signing secret
        token = csrf(client, "/account/settings")
        refused = client.post("/account/delete", data={"csrf_token": token, "password": "not it"})
        assert refused.status_code == 400 and accounts.verify_key(db, key).active
        deleted = client.post("/account/delete", data={"csrf_token": token, "password": PASSWORD},
                              follow_redirects=False)
        assert deleted.status_code == 303 and deleted.headers["location"] == "/?deleted=1"
        assert 'data-testid="account-deleted"' in client.get("/?deleted=1").text
        for browser in (client, other):
            assert browser.get("/account", follow_redirects=False).status_code == 303
        assert client.post(API, data={"prompt": "a red apple"}, headers={"x-api-key": key}).status_code == 403
        assert log_in(client, "alice@example.com").status_code == 401
        # The ledger and usage stay for the operator; the images do not.
        alice = accounts.get_account(db, "alice@example.com")
        assert alice.credits == 96 and sum(row.delta for row in accounts.usage.ledger(db, alice.id)) == 96
        assert len(accounts.usage.recent_requests(db, alice.id)) == 3 and gallery.recent(db, alice.id) == []
        with db.session() as session:
            assert session.scalar(select(Job.status)) == "canceled"  # queued when the account closed: refunded
            assert session.scalar(select(Job.prompt)) == ""  # and its prompt forgotten
            assert session.scalar(select(Account.webhook_secret).where(Account.id == alice.id)) is None
        # The address cannot sign up again: the same answer as ever, and no new account.
        again = client.post("/signup", data={"csrf_token": csrf(client, "/signup"), "email": "alice@example.com",
                                             "password": "another password"}, follow_redirects=False)
        assert again.status_code == 303 and accounts.count_accounts(db) == 1
        assert log_in(client, "alice@example.com", "another password").status_code == 401


def test_the_docs_are_served_from_this_server_without_a_cdn(client):
    for path, asset in (("/docs", "/docs/assets/swagger-ui-bundle.js"), ("/redoc", "/docs/assets/redoc.standalone.js")):
        page = client.get(path)
        assert page.status_code == 200 and asset in page.text, path
        assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page.text), path
        assert client.get(asset).status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert "/text-to-image/v1" in client.get("/openapi.json").json()["paths"]


def test_the_account_pages_read_the_signed_in_account_once_and_write_nothing(client, sqlite_db):
    sign_up(client)
    create_key(client)
    client.get("/account")  # the first visit makes the webhook signing secret
    for path, account_reads in (("/account", 2), ("/account/billing", 1)):  # the session's, (the secret's)
        with statements(sqlite_db) as sent:
            page = client.get(path)
        assert page.status_code == 200 and 'data-testid="balance">100<' in page.text
        assert len(sent.reads("accounts")) == account_reads, path
        assert sent.writes() == [], path
    with statements(sqlite_db) as sent:
        keys = client.get("/account/keys")
    assert keys.status_code == 200 and len(sent.reads("accounts")) == 1 and len(sent.reads("api_keys")) == 1


def test_the_playground_reads_its_history_once_to_show_an_image(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        form = {"csrf_token": csrf(client, "/playground"), "prompt": "a red apple", "format": "png", "seed": "7"}
        shown_at = client.post("/playground", data=form, follow_redirects=False).headers["location"]
        with statements(sqlite_db) as sent:
            shown = client.get(shown_at)
        assert shown.headers["seed"] == "7" and 'data-testid="result"' in shown.text
        assert len(sent.reads("playground_images")) == 2  # the history, then the image's bytes
        with statements(sqlite_db) as sent:
            unknown = client.get("/playground?image=999")
        assert 'data-testid="result"' not in unknown.text and len(sent.reads("playground_images")) == 1


def test_the_forms_fields_come_from_one_place_with_the_servers_password_minimum(settings, sqlite_db,
                                                                                tiny_generator, monkeypatch):
    monkeypatch.setattr(passwords, "MIN_LENGTH", 12)
    settings.smtp_url = "smtp://127.0.0.1:25"  # the forgot form shows only where mail is sent (none is, here)
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client, password="twelve chars")
        (_, token) = resets.start(sqlite_db, "alice@example.com")
        new_password = re.compile(r'type="password" autocomplete="new-password"\s+minlength="(\d+)"')
        settings_page = client.get("/account/settings").text
        client.post("/logout", data={"csrf_token": csrf(client, "/account")})
        for page in (settings_page, client.get(f"/reset-password?token={token}").text, client.get("/signup").text):
            assert new_password.findall(page) == ["12"] and "At least 12 characters." in page
        for path in ("/login", "/signup", "/forgot-password"):
            assert client.get(path).text.count('<input id="email" name="email" type="email"') == 1, path
        short = client.post("/signup", data={"csrf_token": csrf(client, "/signup"), "email": "bob@example.com",
                                             "password": "eleven char"})
        assert short.status_code == 400 and "at least 12 characters" in short.text  # the server's own rule
