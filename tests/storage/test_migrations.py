"""The schema is created and migrated on first use, once, even by processes starting together."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import inspect, text

from pixeldrop.storage import Database


def _open(url: str) -> None:
    Database.open(url).close()


def test_first_use_creates_every_table(db):
    tables = set(inspect(db.engine).get_table_names())
    assert {"accounts", "api_keys", "credit_ledger", "image_requests", "alembic_version"} <= tables


def test_processes_starting_together_migrate_once(database_url):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open, args=(database_url,)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    database = Database.open(database_url)
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    database.close()
