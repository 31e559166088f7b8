"""The schema is created and migrated on first use, once, even by processes starting together; a
migration that changes recorded data (0007) translates the rows already there, both ways."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from pixeldrop.storage import Base, Database
from pixeldrop.storage.database import MIGRATIONS, create_db_engine


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


# Rows as 0006 recorded them: (id, state, http_status), and the outcome 0007 gives each.
RECORDED = [
    (1, "charged", 200, "charged"),
    (2, "refused", 402, "out_of_credits"),
    (3, "refunded", 499, "abandoned"),
    (4, "refunded", 500, "failed"),
    (5, "refunded", 503, "busy"),
    (6, "refused", 429, "rate_limited"),
    (7, "refused", 400, "invalid_request"),
    (8, "refused", 406, "not_acceptable"),
    (9, "refused", 413, "body_too_large"),
    (10, "refused", 418, "refused"),  # a refusal of no listed kind
    (11, "refunded", 499, "canceled"),  # its job was canceled
    (12, "pending", None, None),
]


def _alembic(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def test_0007_turns_recorded_http_statuses_into_outcomes_and_back(database_url):
    engine = create_db_engine(database_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "0006")
            connection.execute(text("INSERT INTO accounts (id, email, credits, created_at) "
                                    "VALUES (1, 'ada@example.com', 10, :now)"), {"now": now})
            for request_id, state, status, _ in RECORDED:
                connection.execute(text("INSERT INTO image_requests (id, account_id, state, http_status, credits, "
                                        "created_at) VALUES (:id, 1, :state, :status, 0, :now)"),
                                   {"id": request_id, "state": state, "status": status, "now": now})
            # Rows that reference the requests: the column is dropped under them, foreign keys on.
            connection.execute(text("INSERT INTO credit_ledger (account_id, delta, balance_after, reason, "
                                    "request_id, note, created_at) VALUES (1, -2, 8, 'image', 1, '', :now)"),
                               {"now": now})
            connection.execute(text("INSERT INTO jobs (public_id, account_id, request_id, status, prompt, seed, "
                                    "attempts, created_at) VALUES ('job_1', 1, 11, 'canceled', 'a cat', 7, 0, :now)"),
                               {"now": now})

        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "head")
            outcomes = dict(connection.execute(text("SELECT id, outcome FROM image_requests")).all())
            columns = {column["name"] for column in inspect(connection).get_columns("image_requests")}
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert outcomes == {request_id: outcome for request_id, _, _, outcome in RECORDED}
        assert "http_status" not in columns and "outcome" in columns
        assert [d for d in differences if "image_requests" in repr(d)] == [], "the model is what the migration made"

        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0006")
            statuses = dict(connection.execute(text("SELECT id, http_status FROM image_requests")).all())
        assert statuses == {request_id: 400 if outcome == "refused" else status
                            for request_id, _, status, outcome in RECORDED}
    finally:
        engine.dispose()
