"""Fixtures build real things: SQLite and PostgreSQL databases, a Redis server, a tiny real
diffusers pipeline, and a pixeldrop server on a loopback port.

PostgreSQL and Redis are started by scripts/test (and so by CI), which exports their URLs.
Without them (a bare `pytest`), those cases are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pixeldrop.settings import Settings
from pixeldrop.storage import Database

from .tiny_pipeline import build_tiny_pipeline

# Nothing in the tests may reach a model hub: fail fast instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSTGRES_URL = os.environ.get("PIXELDROP_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("PIXELDROP_TEST_REDIS_URL")
IN_CI = os.environ.get("CI") == "true"


def require(url: str | None, what: str) -> str:
    if url:
        return url
    if IN_CI:
        pytest.fail(f"{what} is required in CI: run the tests through scripts/test")
    pytest.skip(f"{what} not available: run the tests through scripts/test")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def tiny_generator(tiny_model):
    from pixeldrop.generation.diffusers_backend import DiffusersGenerator

    return DiffusersGenerator(tiny_model, device="cpu", precision="fp32")


def _fresh_postgres_database() -> str:
    """A new, empty database on the test cluster, so tests never see each other's rows."""
    base = require(POSTGRES_URL, "PostgreSQL")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pixeldrop.db'}"
    return _fresh_postgres_database()


@pytest.fixture
def db(database_url):
    database = Database.open(database_url)
    yield database
    database.close()


@pytest.fixture
def sqlite_db(tmp_path):
    database = Database.open(f"sqlite:///{tmp_path / 'pixeldrop.db'}")
    yield database
    database.close()


@pytest.fixture
def settings(tmp_path, tiny_model) -> Settings:
    return Settings(home=tmp_path / "home", model=tiny_model, device="cpu", precision="fp32", warm_up=False,
                    _env_file=None)


@pytest.fixture
def redis_url() -> str:
    return require(REDIS_URL, "Redis")


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def database_url_postgresql() -> str:
    return _fresh_postgres_database()
