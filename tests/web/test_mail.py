"""Mail through a real SMTP server on loopback: password resets by e-mail, the notice to an
address someone tried to sign up with, and the SMTP URL's TLS and credentials."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from pixeldrop import accounts, mail
from pixeldrop.accounts import resets
from pixeldrop.errors import InvalidInput, MailFailed
from pixeldrop.settings import Settings
from pixeldrop.storage import BrowserSession, PasswordReset

from .conftest import PASSWORD, csrf, log_in, running, sign_up
from .mailbox import USER, make_certificate, smtp_server

NEW_PASSWORD = "a brand new password"


@pytest.fixture
def mailbox():
    with smtp_server() as mailbox:
        yield mailbox


@pytest.fixture
def mail_settings(settings, mailbox):
    settings.smtp_url = f"smtp://127.0.0.1:{mailbox.port}"
    settings.mail_from = "pixeldrop <noreply@images.example.com>"
    return settings


def forgot(client, email: str):
    return client.post("/forgot-password", data={"csrf_token": csrf(client, "/login"), "email": email},
                       follow_redirects=False)


def reset(client, link: str, password: str = NEW_PASSWORD):
    parts = urlsplit(link)
    page = client.get(f"{parts.path}?{parts.query}")
    token = parts.query.removeprefix("token=")
    return page, client.post("/reset-password", data={"csrf_token": csrf(client, "/login"), "token": token,
                                                      "password": password}, follow_redirects=False)


def test_a_reset_link_is_mailed_works_once_and_signs_every_browser_out(mail_settings, db, tiny_generator, mailbox):
    with running(mail_settings, db, tiny_generator) as client, running(mail_settings, db, tiny_generator) as other:
        sign_up(client)
        sign_up(other, "bob@example.com")
        client.cookies.clear()
        assert 'href="/forgot-password">Forgot password?</a>' in client.get("/login").text
        log_in(other, "alice@example.com")  # alice is signed in in another browser
        assert other.get("/account").status_code == 200
        asked = forgot(client, "Alice@Example.com")
        assert asked.status_code == 303 and asked.headers["location"] == "/forgot-password?sent=1"
        [message] = mailbox.to("alice@example.com")
        assert message["From"] == "pixeldrop <noreply@images.example.com>"
        assert message["Subject"] == "Reset your pixeldrop password"
        link = mailbox.reset_link("alice@example.com")
        assert link.startswith("http://testserver/reset-password?token=")
        with db.session() as session:  # only the token's hash is stored
            assert link.rsplit("=", 1)[1] not in str(session.scalars(select(PasswordReset.token_hash)).all())

        page, done = reset(client, link)
        assert page.status_code == 200 and "alice@example.com" in page.text and 'name="token"' in page.text
        assert done.status_code == 303 and done.headers["location"] == "/login?reset=1"
        assert other.get("/account", follow_redirects=False).status_code == 303  # signed out everywhere
        assert log_in(client, "alice@example.com", PASSWORD).status_code == 401
        assert log_in(client, "alice@example.com", NEW_PASSWORD).status_code == 303
        # Single use: the same link again changes nothing.
        client.cookies.clear()
        again_page, again = reset(client, link, "yet another password")
        assert again_page.status_code == 400 and 'data-testid="reset-invalid"' in again_page.text
        assert again.status_code == 400
        assert log_in(client, "alice@example.com", NEW_PASSWORD).status_code == 303


def test_an_expired_link_resets_nothing(mail_settings, sqlite_db, tiny_generator, mailbox):
    with running(mail_settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        forgot(client, "alice@example.com")
        with sqlite_db.session() as session:
            session.execute(update(PasswordReset).values(expires_at=PasswordReset.created_at - timedelta(seconds=1)))
        page, done = reset(client, mailbox.reset_link("alice@example.com"))
        assert page.status_code == done.status_code == 400 and "expired" in page.text
        assert log_in(client, "alice@example.com", PASSWORD).status_code == 303


def test_the_forgot_form_answers_the_same_whether_or_not_the_address_has_an_account(mail_settings, sqlite_db,
                                                                                    tiny_generator, mailbox):
    with running(mail_settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        client.cookies.clear()
        answers = [forgot(client, email) for email in ("alice@example.com", "nobody@example.com", "not an email")]
        assert {(answer.status_code, answer.headers["location"]) for answer in answers} == {
            (303, "/forgot-password?sent=1")}
        assert [message["To"] for message in mailbox.messages] == ["alice@example.com"]
        assert 'data-testid="reset-sent"' in client.get("/forgot-password?sent=1").text
        # A few links a minute per address at most, whatever the address: past it, the same answer and no mail.
        for _ in range(3):
            assert forgot(client, "alice@example.com").headers["location"] == "/forgot-password?sent=1"
        assert len(mailbox.to("alice@example.com")) == 2


def test_without_smtp_the_page_says_to_ask_the_operator(settings, sqlite_db, tiny_generator):
    with running(settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        client.cookies.clear()
        page = client.get("/forgot-password")
        assert 'data-testid="no-mail"' in page.text and 'action="/forgot-password"' not in page.text
        assert forgot(client, "alice@example.com").status_code == 503
        with sqlite_db.session() as session:
            assert session.scalars(select(PasswordReset)).all() == []


def test_signing_up_with_a_taken_address_mails_its_owner_and_answers_as_for_a_new_one(mail_settings, sqlite_db,
                                                                                      tiny_generator, mailbox):
    with running(mail_settings, sqlite_db, tiny_generator) as client:
        sign_up(client)
        client.cookies.clear()
        answers = [client.post("/signup", data={"csrf_token": csrf(client, "/signup"), "email": email,
                                                "password": "another password"}, follow_redirects=False)
                   for email in ("ALICE@example.com", "carol@example.com")]
        assert [(a.status_code, a.headers["location"]) for a in answers] == [(answers[1].status_code,
                                                                              answers[1].headers["location"])] * 2
        [notice] = mailbox.to("alice@example.com")
        assert notice["Subject"] == "Someone tried to sign up with your address"
        body = notice.get_content()
        assert "http://testserver/login" in body and "http://testserver/forgot-password" in body
        assert mailbox.to("carol@example.com") == []  # a new account gets no such mail
        assert log_in(client, "alice@example.com", PASSWORD).status_code == 303  # alice's account is untouched


def test_smtp_urls_are_checked_when_settings_load():
    assert mail.parse_smtp_url("smtp://mail.example.com") == mail.SmtpServer("mail.example.com", 25, False)
    server = mail.parse_smtp_url("smtps://me%40example.com:p%40ss:word@mail.example.com")
    assert (server.host, server.port, server.implicit_tls, server.user, server.password) == (
        "mail.example.com", 465, True, "me@example.com", "p@ss:word")
    assert "p@ss" not in repr(server)
    for wrong in ("http://mail.example.com", "smtp://", "smtp://host:99999", "smtp://host/path"):
        with pytest.raises(ValueError):
            Settings(smtp_url=wrong, _env_file=None)


@pytest.fixture
def trusted_certificate(tmp_path, monkeypatch):
    certificate = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # what an operator's own CA would be
    return certificate


@pytest.mark.parametrize("implicit", [True, False], ids=["smtps", "starttls"])
def test_mail_goes_over_tls_with_the_urls_user_and_password(trusted_certificate, implicit):
    with smtp_server(trusted_certificate, implicit=implicit, password="s3cret:/@") as mailbox:
        scheme = "smtps" if implicit else "smtp"
        settings = Settings(smtp_url=f"{scheme}://{USER.replace('@', '%40')}:s3cret%3A%2F%40@127.0.0.1:{mailbox.port}",
                            mail_from="noreply@example.com", _env_file=None)
        mail.send(settings, "alice@example.com", "Hello", "over TLS")
        assert mailbox.logins == [USER]
        assert [message.get_content().strip() for message in mailbox.messages] == ["over TLS"]
    with pytest.raises(MailFailed, match=f"127.0.0.1:{mailbox.port}"):  # the server is gone: one clear error
        mail.send(settings, "alice@example.com", "Hello", "nobody listens")


def test_a_password_is_never_sent_without_tls(mailbox):
    settings = Settings(smtp_url=f"smtp://user:pass@127.0.0.1:{mailbox.port}", _env_file=None)
    with pytest.raises(MailFailed, match="STARTTLS"):
        mail.send(settings, "alice@example.com", "Hello", "in clear?")
    assert mailbox.messages == []


def test_a_reset_ends_sessions_and_tokens_in_the_domain_too(db):
    """The rules of accounts/resets.py on both databases, without the pages."""
    from pixeldrop.accounts import passwords

    accounts.create_account(db, "dana@example.com", 10)
    passwords.set_password(db, "dana@example.com", PASSWORD)
    passwords.authenticate(db, "dana@example.com", PASSWORD)
    assert resets.start(db, "nobody@example.com") is None
    (_, first), (_, second) = resets.start(db, "dana@example.com"), resets.start(db, "DANA@example.com")
    assert resets.check(db, first).email == "dana@example.com"
    resets.finish(db, second, NEW_PASSWORD)
    for used in (first, second):  # the other pending link stopped working too
        with pytest.raises(InvalidInput, match="expired or was already used"):
            resets.finish(db, used, "third password!")
    with db.session() as session:
        assert session.scalars(select(BrowserSession)).all() == []
        assert session.scalars(select(PasswordReset)).all() == []
    passwords.authenticate(db, "dana@example.com", NEW_PASSWORD)

    # A link mailed before the password changed another way stops working too: the owner's change
    # and the operator's set-password end pending links as a reset does.
    (_, before_change) = resets.start(db, "dana@example.com")
    signed_in = passwords.authenticate(db, "dana@example.com", NEW_PASSWORD)
    passwords.change_password(db, signed_in.account.id, NEW_PASSWORD, "third password!", signed_in.token)
    (_, before_operator) = resets.start(db, "dana@example.com")
    passwords.set_password(db, "dana@example.com", "fourth password!")
    for stale in (before_change, before_operator):
        with pytest.raises(InvalidInput, match="expired or was already used"):
            resets.check(db, stale)
