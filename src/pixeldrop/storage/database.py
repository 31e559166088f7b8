"""Engine, transactions, and migrating the database on first use.

Every command opens the database through `Database.open`, which creates and migrates it if
needed. Two processes starting together (the server and a CLI command) must not both run the
migrations: on PostgreSQL they take an advisory lock, on SQLite an exclusive file lock beside
the database file.

Storage that fails at run time (SQLite locked past its busy timeout, a read-only file, a
PostgreSQL that is down) surfaces as StorageUnavailable, never as a driver's exception: the API
answers 503 with a neutral message, and the caller's transaction has changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import CursorResult, Engine, Executable, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pixeldrop.errors import StorageUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x706978656C  # "pixel": any constant shared by all pixeldrop processes


def _sqlite_engine(url: str, busy_timeout: float) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
        # can then never fail half-way with "database is locked" under concurrency.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _sqlite_file(url) -> str | None:
    """The file behind a SQLite URL (plain path or `file:` URI with `uri=true`); None in memory."""
    database = url.database
    if not database or database == ":memory:":
        return None
    if url.query.get("uri"):
        database = database.removeprefix("file:").split("?", 1)[0]
    return database


def create_db_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    """`busy_timeout`: how long a SQLite writer waits for another's lock before giving up."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if (database := _sqlite_file(parsed)) is not None:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_engine(url, busy_timeout)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _alembic_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, once, even with several processes starting."""
    if engine.dialect.name == "sqlite":
        database = _sqlite_file(engine.url)
        with FileLock(f"{database}.migrate.lock") if database else nullcontext():
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection), "head")
        return
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        command.upgrade(_alembic_config(connection), "head")


def changed_rows(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE or DELETE changed: the conditional writes' way to know they won."""
    result = cast(CursorResult, session.execute(statement))  # an UPDATE or DELETE answers with a cursor
    return result.rowcount


class Database:
    """The one way into storage: short transactions through `session()`."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, busy_timeout: float = 30.0) -> Database:
        """Connect and migrate; StorageUnavailable with the reason when that cannot be done."""
        try:
            engine = create_db_engine(url, busy_timeout)
            migrate(engine)
        except (OSError, DBAPIError) as error:
            reason = getattr(error, "orig", None) or error
            where = make_url(url).render_as_string(hide_password=True)
            raise StorageUnavailable(f"cannot open the database {where}: {reason}") from error
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self._sessions.begin() as session:
                yield session
        except DBAPIError as error:
            if isinstance(error, (OperationalError, InterfaceError)) or error.connection_invalidated:
                raise StorageUnavailable("The service's storage is unavailable; try again shortly.") from error
            raise

    def close(self) -> None:
        self.engine.dispose()
