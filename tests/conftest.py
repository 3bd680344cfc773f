"""Shared fixtures: the catalog, a controllable clock, databases (SQLite and PostgreSQL), the app."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from app import load_catalog
from storage import migrate
from storage.db import make_engine
from storage.models import Base
from tests.support import postgres

API_KEY = "test-key-0123456789"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="session", autouse=True)
def _instance_folder_outside_the_checkout(tmp_path_factory):
    """Tests that build an app without INSTANCE_PATH get one in a temp folder: the start step
    and the sandbox's first request write there (the sandbox's secrets), never into the
    checkout's instance/, which is the developer's own."""
    folder = tmp_path_factory.mktemp("default-instance")
    saved = os.environ.get("UPGRADE_CHAT_INSTANCE_PATH")
    os.environ["UPGRADE_CHAT_INSTANCE_PATH"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("UPGRADE_CHAT_INSTANCE_PATH", None)
    else:
        os.environ["UPGRADE_CHAT_INSTANCE_PATH"] = saved


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(None)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_server():
    """(admin URL, Cluster) of the PostgreSQL server for this test session; the Cluster is None
    when UPGRADE_CHAT_TEST_PG_URL names an existing server."""
    try:
        url, cluster = postgres.start_server()
    except postgres.Unavailable as exc:
        if os.environ.get("UPGRADE_CHAT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required for this run but unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield url, cluster
    if cluster is not None:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server) -> str:
    """The admin URL of a PostgreSQL server for this test session (a throwaway cluster)."""
    return pg_server[0]


@pytest.fixture(scope="session")
def pg_cluster(pg_server):
    """The session's throwaway cluster (postgres.Cluster), for tests that stop and start it;
    None when UPGRADE_CHAT_TEST_PG_URL is used. It is shared: start it again in a `finally`."""
    return pg_server[1]


def migrated_database(admin_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `admin_url`, migrated to the head; its URL."""
    url = postgres.create_database(admin_url, name)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_test_url(pg_admin_url) -> str:
    """A migrated database on the session's server."""
    return migrated_database(pg_admin_url, "upgrade_chat_test")


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, sqlite_template) -> str:
    """An empty, migrated database: run once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_test_url")
    _truncate_all(url)
    return url


@pytest.fixture
def engine(db_url):
    """A SQLAlchemy engine on this test's database."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_app(db_url, clock, tmp_path):
    """Build an app on this test's database; keyword arguments override config. With DEMO=True
    the explicit start step runs too (create_app loads nothing), as scripts/serve would."""
    from app import create_app, start

    apps = []

    def build(**config):
        # The instance folder in the test's temp folder: the sandbox's generated secrets go
        # there on first use, never into the checkout's instance/.
        settings = {"DATABASE_URL": db_url, "API_KEY": API_KEY, "CLOCK": clock,
                    "AUTO_MIGRATE": False, "SPOOL_DIR": str(tmp_path / "spool"),
                    "INSTANCE_PATH": str(tmp_path / "instance")}
        settings.update(config)
        app = create_app(settings)
        apps.append(app)
        if settings.get("DEMO"):
            start(app, demo=True)
        return app

    yield build
    for app in apps:
        app.extensions["upgrade_chat"].engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


class Api:
    """A test client that sends the bearer key and JSON."""

    def __init__(self, client) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {API_KEY}"}

    def get(self, path: str, **kw):
        return self.client.get(f"/api/v1{path}", headers=self.headers, **kw)

    def put(self, path: str, json=None, **kw):
        return self.client.put(f"/api/v1{path}", headers=self.headers, json=json, **kw)

    def post(self, path: str, json=None, **kw):
        return self.client.post(f"/api/v1{path}", headers=self.headers, json=json, **kw)


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


@pytest.fixture
def receiver():
    """A local webhook receiver (tests/support/receiver.py)."""
    from tests.support.receiver import serving

    with serving() as r:
        yield r
