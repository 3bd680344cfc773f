"""DATABASE_REPLICA_URL: the console's pages, the metrics and the account list read through a
read replica; every write and every read that decides something stays on the primary.

On PostgreSQL the "replica" is a second real database that the test fills differently on
purpose (no streaming replication: what each route read shows in what it answers). Without the
setting, everything reads the primary, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from app import ConfigError, create_app
from core import operators
from storage.db import make_engine
from storage.models import AccountRow
from tests.conftest import API_KEY, Api, _truncate_all, migrated_database
from tests.e2e.helpers import account, ago, batch, contact, event
from web.passwords import WerkzeugHasher

PASSWORD = "correct horse battery"
EMAIL = "ops@example.com"


@pytest.fixture(scope="module")
def replica_db(pg_admin_url) -> str:
    """A second migrated database on the session's server, standing in for the replica."""
    return migrated_database(pg_admin_url, "upgrade_chat_replica")


@pytest.fixture
def replica_url(replica_db) -> str:
    _truncate_all(replica_db)
    return replica_db


def _disposed(*apps) -> None:
    for app in apps:
        rt = app.extensions["upgrade_chat"]
        rt.engine.dispose()
        if rt.replica is not None:
            rt.replica.dispose()


def _fill(app, external_id: str, name: str, *, cross: bool) -> None:
    """An account written through `app` (so into its DATABASE_URL), crossing Starter → Growth
    on messages when `cross`."""
    api = Api(app.test_client())
    body = account(name=name, contacts=[contact(f"{external_id}-pat", name="Pat", role="billing",
                                                phone="+13125550142" if cross else None)])
    assert api.put(f"/accounts/{external_id}", json=body).status_code == 201
    if cross:
        events = [event(f"{external_id}-m{i}", external_id, "messages", 600, ago(days=7 - i))
                  for i in range(8)]
        r = api.post("/usage", json=batch(*events))
        assert r.status_code == 200 and r.get_json()["signals"], r.get_json()


def _sign_in(client) -> None:
    page = client.get("/console/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/console/sign-in", data={"email": EMAIL, "password": PASSWORD,
                                              "csrf_token": csrf})
    assert r.status_code == 303, r.get_data(as_text=True)


def _opportunities(api) -> int:
    figures = api.get("/metrics?from=2026-09-01&to=2026-12-01").get_json()
    return sum(figures["opportunities"].values())


def _count(url: str, table: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text(f"SELECT count(*) FROM {table}"))
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_reads_that_may_lag_go_to_the_replica_and_everything_else_to_the_primary(
        db_url, replica_url, make_app):
    # The replica holds what the primary does not, and the other way round: whichever a
    # route answers with says which database it read.
    on_replica = make_app(DATABASE_URL=replica_url)
    _fill(on_replica, "replica-co", "Replica Co", cross=True)
    for n in (2, 3):
        _fill(on_replica, f"replica-{n}", f"Replica {n}", cross=False)
    # What the replica got while it was filled as a database of its own (the opening the
    # crossing queued, the audit of those requests): nothing may be added later.
    replica_before = {t: _count(replica_url, t) for t in ("messages", "audit_events", "threads")}
    plain = make_app()  # the primary, no replica: the operator and the primary's account
    _fill(plain, "primary-co", "Primary Co", cross=False)
    rt = plain.extensions["upgrade_chat"]
    operators.create_operator(rt.uow(), WerkzeugHasher(), email=EMAIL, name="Ops", role="admin",
                              password=PASSWORD, now=rt.now())

    app = make_app(DATABASE_REPLICA_URL=replica_url, SECRET_KEY="console-test-key")
    try:
        api = Api(app.test_client())
        # The metrics and the account list: the replica's.
        listed = api.get("/accounts").get_json()
        assert [a["external_id"] for a in listed["accounts"]] == ["replica-2", "replica-3", "replica-co"]
        assert api.get("/accounts?q=primary").get_json()["total"] == 0
        assert _opportunities(api) == 1  # the replica's crossing; the primary has none
        csv_rows = api.get("/metrics.csv?from=2026-09-01&to=2026-12-01&rows=opportunities")
        assert csv_rows.status_code == 200 and "replica-co" in csv_rows.get_data(as_text=True)

        # The console: signing in checks the operator on the primary (the replica has none),
        # then its pages show the replica's accounts.
        console = app.test_client()
        _sign_in(console)
        home = console.get("/console")
        assert home.status_code == 200
        total = re.search(r'href="/console/accounts">(\d+)</a>', home.get_data(as_text=True))
        assert total and total.group(1) == "3"  # the replica's three, not the primary's one
        listing = console.get("/console/accounts").get_data(as_text=True)
        assert "Replica Co" in listing and "Primary Co" not in listing
        assert console.get("/console/accounts/replica-co").status_code == 200
        assert console.get("/console/accounts/primary-co").status_code == 404  # not there yet

        # Everything else: the primary. An account read by id, its case, a write.
        assert api.get("/accounts/primary-co").status_code == 200
        assert api.get("/accounts/replica-co").status_code == 404
        body = account(name="Written Co")
        assert api.put("/accounts/written-co", json=body).status_code == 201
        assert api.get("/accounts/written-co").status_code == 200  # read back at once
        # A buyer's message decides on the primary's thread state: the primary's contact.
        r = api.post("/conversations/primary-co-pat/messages",
                     json={"channel": "sms", "text": "hello", "id": "m-1"})
        assert r.status_code == 200, r.get_json()
    finally:
        _disposed(app, plain, on_replica)

    primary_accounts = _account_ids(db_url)
    assert primary_accounts == ["primary-co", "written-co"]
    assert _account_ids(replica_url) == ["replica-2", "replica-3", "replica-co"]  # unchanged
    assert _count(db_url, "messages") >= 2  # the buyer's message and the reply
    # Every request above left its audit event on the primary, none on the replica.
    assert _count(db_url, "audit_events") >= 10
    assert {t: _count(replica_url, t) for t in replica_before} == replica_before


def _account_ids(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(AccountRow.external_id)
                                     .order_by(AccountRow.external_id)))
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_replica_is_read_only(db_url, replica_url, make_app):
    app = make_app(DATABASE_REPLICA_URL=replica_url)
    rt = app.extensions["upgrade_chat"]
    try:
        with rt.replica_uow() as uow:
            assert uow.session.execute(text("SHOW transaction_read_only")).scalar() == "on"
        with rt.uow(read_only=True) as uow:  # the primary's read-only flavour is unchanged
            assert uow.session.execute(text("SHOW transaction_read_only")).scalar() == "off"
    finally:
        _disposed(app)


def test_without_a_replica_every_read_is_the_primarys(make_app, db_url):
    """The default, on SQLite and PostgreSQL: what was just written is listed, counted and shown
    on the console at once."""
    app = make_app(SECRET_KEY="console-test-key")
    rt = app.extensions["upgrade_chat"]
    assert rt.replica is None and rt.replica_uow() is not None
    operators.create_operator(rt.uow(), WerkzeugHasher(), email=EMAIL, name="Ops", role="admin",
                              password=PASSWORD, now=rt.now())
    _fill(app, "primary-co", "Primary Co", cross=True)
    api = Api(app.test_client())
    assert [a["external_id"] for a in api.get("/accounts").get_json()["accounts"]] == ["primary-co"]
    assert _opportunities(api) == 1
    console = app.test_client()
    _sign_in(console)
    assert "Primary Co" in console.get("/console/accounts").get_data(as_text=True)
    assert console.get("/console/accounts/primary-co").status_code == 200


@pytest.mark.parametrize("url, message", [
    ("not a url", "UPGRADE_CHAT_DATABASE_REPLICA_URL: not a database URL"),
    ("nosuchdb://u:p@h/d", "UPGRADE_CHAT_DATABASE_REPLICA_URL: not a database URL"),
    ("postgresql+psycopg://u:sekrit@replica.internal/db",
     "UPGRADE_CHAT_DATABASE_REPLICA_URL: a replica of DATABASE_URL must be the same kind"),
])
def test_a_bad_replica_url_stops_start_up_naming_the_key(tmp_path, url, message):
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "API_KEY": API_KEY,
              "INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_REPLICA_URL": url}
    with pytest.raises(ConfigError, match=message) as caught:
        create_app(config)
    assert "sekrit" not in str(caught.value)


def test_a_blank_replica_url_means_none(tmp_path, monkeypatch):
    monkeypatch.setenv("UPGRADE_CHAT_DATABASE_REPLICA_URL", "  ")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                      "API_KEY": API_KEY, "INSTANCE_PATH": str(tmp_path / "instance")})
    assert app.extensions["upgrade_chat"].replica is None
    _disposed(app)


def test_the_replica_url_is_kept_out_of_the_config_fingerprint():
    from app import DEFAULTS, config_fingerprint

    base = {**DEFAULTS, "DATABASE_URL": "sqlite:///x"}
    one = config_fingerprint({**base, "DATABASE_REPLICA_URL": "postgresql://u:a@h/d"})
    two = config_fingerprint({**base, "DATABASE_REPLICA_URL": "postgresql://u:b@h/d"})
    assert one == two


def test_a_replica_that_cannot_be_reached_is_a_503_on_its_routes_and_nothing_else(
        make_app, db_url):
    """Only the lagging reads go to the replica: while it is down they say so (503, Retry-After),
    and every other route still works on the primary."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "sqlite:////nonexistent-folder/replica.sqlite3" if db_url.startswith("sqlite") \
        else f"postgresql+psycopg://nobody@127.0.0.1:{port}/replica"
    app = make_app(DATABASE_REPLICA_URL=backend)
    try:
        api = Api(app.test_client())
        assert api.put("/accounts/written-co", json=account(name="Written Co")).status_code == 201
        for path in ("/accounts", "/metrics", "/metrics.csv"):
            r = api.get(path)
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", (path, r.data)
            assert r.get_json()["error"]["code"] == "unavailable"
        assert api.get("/accounts/written-co").status_code == 200  # the primary
    finally:
        _disposed(app)
