"""A database that is locked, read-only or gone: answers are 503 with a neutral message, the
event loop never waits on it, refunds that could not be written are retried, and a server that
cannot open its database says so in one line."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import time

import httpx
import pytest

from pixeldrop.accounts import credits
from pixeldrop.storage import Database
from pixeldrop.storage.database import create_db_engine

from ..books import assert_books_balance, new_payer, requests_by_state
from ..generators import FailingGenerator, GatedGenerator
from ..server import BIN, cli_env
from .test_money import live_server, post, post_in_background

NEUTRAL = "The service's storage is unavailable; try again shortly."


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "pixeldrop.db"


def test_a_refund_blocked_by_a_locked_database_stalls_nothing_and_is_retried(settings, db_path):
    db = Database.open(f"sqlite:///{db_path}", busy_timeout=2.0)
    gated = GatedGenerator(FailingGenerator())
    with live_server(settings, db, gated) as live:
        payer = new_payer(db)
        client, answers = post_in_background(live, payer.key)
        assert gated.started.wait(timeout=30)
        lock = sqlite3.connect(db_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the database past the busy timeout
        gated.gate.set()  # the model fails: its refund now waits on the lock, then fails

        latencies = []
        while client.is_alive():
            started = time.monotonic()
            assert httpx.get(live.url + "/healthz", timeout=10).status_code == 200
            latencies.append(time.monotonic() - started)
        assert len(latencies) >= 3 and max(latencies) < 1.0, f"the event loop stalled: {latencies}"
        assert answers[0].status_code == 500 and "failed" in answers[0].json()["error"]

        lock.execute("ROLLBACK")
        lock.close()
        assert credits.balance(db, payer.account_id) == 98, "the refund could not be written yet"
        assert asyncio.run(live.services.paid.sweep()) == 1, "the next sweep retries it"
    assert credits.balance(db, payer.account_id) == 100
    assert requests_by_state(db, payer.account_id) == {"refunded": ["failed"]}
    assert_books_balance(db, payer.account_id)
    db.close()


def test_a_locked_database_answers_503_with_a_neutral_message(settings, db_path, tiny_generator):
    db = Database.open(f"sqlite:///{db_path}", busy_timeout=0.5)
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db)
        lock = sqlite3.connect(db_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        refused = post(live, payer.key)
        lock.execute("ROLLBACK")
        lock.close()
        assert refused.status_code == 503
        assert refused.json() == {"error": NEUTRAL}
        assert "retry-after" in refused.headers
        assert post(live, payer.key).status_code == 200, "the server recovers with its database"
    assert credits.balance(db, payer.account_id) == 98
    db.close()


def test_a_read_only_database_at_run_time_answers_503(settings, db_path, tiny_generator):
    writable = Database.open(f"sqlite:///{db_path}")
    payer = new_payer(writable)
    writable.close()
    read_only = Database(create_db_engine(f"sqlite:///file:{db_path}?mode=ro&uri=true"))
    with live_server(settings, read_only, tiny_generator) as live:
        refused = post(live, payer.key)
        assert refused.status_code == 503 and refused.json() == {"error": NEUTRAL}
        assert httpx.get(live.url + "/healthz").status_code == 200
    read_only.close()
    with_writes = Database.open(f"sqlite:///{db_path}")
    assert credits.balance(with_writes, payer.account_id) == 100
    assert requests_by_state(with_writes, payer.account_id) == {}
    with_writes.close()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a private read-only mount")
def test_serve_on_a_read_only_file_system_says_so_in_one_line(tmp_path, tiny_model):
    home = tmp_path / "home"
    home.mkdir()
    Database.open(f"sqlite:///{home / 'pixeldrop.db'}").close()
    # A mount namespace of its own, where the home folder is mounted read-only.
    script = f'mount --bind "{home}" "{home}" && mount -o remount,bind,ro "{home}" && exec "$0" "$@"'
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(BIN), "serve", "--model", tiny_model],
                            env=cli_env(home), capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot open the database" in errors[0] and "Read-only file system" in errors[0]
