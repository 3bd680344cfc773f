"""Retention (core.retention) on SQLite and PostgreSQL: bodies older than the retention are purged
in bounded batches, oldest first, rows kept; a queued message keeps its body; an erased one stays
erased. The scheduler's pass reports it, the setting is validated, and migration 0009 adds the
columns to a database with data."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, inspect

from app import ConfigError, create_app, settings
from core.erasure import ERASED
from core.retention import PURGED, purge_expired_bodies
from storage import migrate
from storage.db import make_engine
from storage.models import AccountRow, ContactRow, MessageRow, ThreadRow
from storage.uow import SqlUnitOfWork
from tests.conftest import API_KEY, NOW
from tests.e2e.helpers import account, contact

YEAR = timedelta(days=365)


def _rows(engine):
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(sa.select(MessageRow).order_by(MessageRow.id))}


@pytest.fixture
def stored(engine):
    """An account, its contact and an offered (live) thread, with messages of many ages;
    {name: message id}."""
    with engine.begin() as conn:
        account_id = conn.execute(insert(AccountRow).returning(AccountRow.id), dict(
            external_id="acct", name="Acct", plan="starter", vertical="generic", timezone="UTC",
            billing_day=1, plan_since=NOW - 2 * YEAR, open_escalations=0, created_at=NOW,
            updated_at=NOW)).scalar_one()
        contact_id = conn.execute(insert(ContactRow).returning(ContactRow.id), dict(
            account_id=account_id, external_id="c-1", position=0, role="billing",
            phone="+13125550142")).scalar_one()
        thread_id = conn.execute(insert(ThreadRow).returning(ThreadRow.id), dict(
            account_id=account_id, contact_id=contact_id, current_plan="starter",
            target_plan="growth", direction="up", state="offered", last_channel="sms",
            opened_at=NOW - 2 * YEAR, updated_at=NOW, initiated_by="business")).scalar_one()

        def message(name, age, *, direction="in", status="received", contact=contact_id,
                    thread=thread_id, body=None, redacted_at=None):
            return name, conn.execute(insert(MessageRow).returning(MessageRow.id), dict(
                thread_id=thread, contact_id=contact, channel="sms", direction=direction,
                kind="inbound" if direction == "in" else "reply", body=body or f"text of {name}",
                status=status, at=NOW - age, attempts=0, redacted_at=redacted_at)).scalar_one()

        return dict([
            message("stranger", timedelta(days=500), contact=None, thread=None),
            message("queued", timedelta(days=450), direction="out", status="queued"),
            message("old_in", timedelta(days=400)),
            message("erased", timedelta(days=400), body=ERASED, redacted_at=NOW - YEAR),
            message("old_out", timedelta(days=366), direction="out", status="sent"),
            message("recent", timedelta(days=364)),
            message("today", timedelta(0), direction="out", status="relayed"),
        ])


def test_bodies_past_the_retention_are_purged_oldest_first_in_bounded_batches(engine, stored):
    before = _rows(engine)
    uows = lambda: SqlUnitOfWork(engine)  # noqa: E731

    passes = [purge_expired_bodies(uows, YEAR, NOW, batch=2, batches=1) for _ in range(3)]

    assert passes == [2, 1, 0]  # stranger and old_in; then old_out; then nothing is left
    after = _rows(engine)
    purged = {name for name, i in stored.items() if after[i].body == PURGED}
    assert purged == {"stranger", "old_in", "old_out"}
    assert all(after[stored[n]].redacted_at == NOW for n in purged)
    # A queued message keeps its body until it goes out; recent ones and erased ones are as
    # they were, and so is everything but the body on every row.
    for name in ("queued", "recent", "today", "erased"):
        assert after[stored[name]] == before[stored[name]], name
    assert after[stored["erased"]].body == ERASED
    keep = ("id", "thread_id", "contact_id", "channel", "direction", "kind", "status", "at",
            "provider_id", "sent_at")
    assert [tuple(getattr(r, k) for k in keep) for r in after.values()] == \
        [tuple(getattr(r, k) for k in keep) for r in before.values()]


def test_one_pass_purges_everything_due_when_the_batches_allow(engine, stored):
    uows = lambda: SqlUnitOfWork(engine)  # noqa: E731
    assert purge_expired_bodies(uows, YEAR, NOW) == 3
    assert purge_expired_bodies(uows, YEAR, NOW) == 0
    # A year later the rest is due too (the queued one still waits to go out).
    assert purge_expired_bodies(uows, YEAR, NOW + YEAR + timedelta(days=1)) == 2
    assert _rows(engine)[stored["queued"]].body == "text of queued"


def test_no_retention_is_no_purge():
    with pytest.raises(ValueError):
        purge_expired_bodies(lambda: None, timedelta(0), NOW)  # type: ignore[arg-type,return-value]


# --- the scheduler's pass ------------------------------------------------------------------------

def _conversation(make_app, clock, **config):
    app = make_app(CONTROL_SHARE="0", **config)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert client.put("/api/v1/accounts/acme", headers=headers, json=account(contacts=[
        contact("acme-dana", role="billing", phone="+13125550142")])).status_code == 201
    for i, text in enumerate(("how much is growth?", "what does it include?")):
        r = client.post("/api/v1/conversations/acme-dana/messages", headers=headers,
                        json={"channel": "sms", "text": text, "id": f"m{i}"})
        assert r.status_code == 200, r.get_json()
    return app, client, headers


def _jobs(app) -> str:
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_scheduler_purges_and_reports_bodies_past_the_retention(make_app, clock):
    app, client, headers = _conversation(make_app, clock, MESSAGE_RETENTION_DAYS="30")
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        stored = conn.scalar(sa.select(sa.func.count()).select_from(MessageRow))
    assert stored >= 4  # two questions, their answers
    assert "bodies purged: 0" in _jobs(app)

    clock.now = NOW + timedelta(days=30, minutes=1)
    assert f"bodies purged: {stored}" in _jobs(app)

    with app.extensions["upgrade_chat"].engine.connect() as conn:
        bodies = set(conn.scalars(sa.select(MessageRow.body)))
        count = conn.scalar(sa.select(sa.func.count()).select_from(MessageRow))
    assert (bodies, count) == ({PURGED}, stored)
    assert "bodies purged: 0" in _jobs(app)


def test_a_retention_of_0_keeps_bodies_forever(make_app, clock):
    app, _, _ = _conversation(make_app, clock, MESSAGE_RETENTION_DAYS="0")
    assert app.extensions["upgrade_chat"].message_retention is None
    clock.now = NOW + timedelta(days=3650)
    assert "bodies purged: off" in _jobs(app)
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        assert PURGED not in set(conn.scalars(sa.select(MessageRow.body)))


# --- the setting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, days", [("365", 365), (" 7 ", 7), ("0", 0), ("", 0), ("  ", 0)])
def test_the_retention_setting_is_a_whole_number_of_days(raw, days):
    values = settings({"UPGRADE_CHAT_MESSAGE_RETENTION_DAYS": raw}, None)
    assert values["MESSAGE_RETENTION_DAYS"] == days


def test_the_retention_defaults_to_a_year(db_url):
    app = create_app({"DATABASE_URL": db_url, "API_KEY": API_KEY})
    assert app.extensions["upgrade_chat"].message_retention == timedelta(days=365)
    app.extensions["upgrade_chat"].engine.dispose()


@pytest.mark.parametrize("raw", ["ten", "-1", "1.5", "1e3", "36501", "30d", "٣"])
def test_a_bad_retention_stops_start_up_naming_the_setting_and_what_it_expects(raw):
    with pytest.raises(ConfigError) as caught:
        settings({"UPGRADE_CHAT_MESSAGE_RETENTION_DAYS": raw}, None)
    message = str(caught.value)
    assert message.startswith("UPGRADE_CHAT_MESSAGE_RETENTION_DAYS: expected a whole number of "
                              "days from 0 to 36,500 (0 or empty: keep message bodies forever)")
    assert repr(raw) in message


@pytest.mark.parametrize("value", [True, 2.5, -3])
def test_a_bad_retention_given_by_a_test_mapping_is_refused_too(value):
    with pytest.raises(ConfigError, match="MESSAGE_RETENTION_DAYS"):
        settings({}, {"MESSAGE_RETENTION_DAYS": value})


# --- the migration -------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    from tests.support import postgres
    return postgres.create_database(request.getfixturevalue("pg_admin_url"),
                                    "upgrade_chat_migrate_0009")


def test_0009_adds_erasure_and_redaction_to_a_database_with_data(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, "0007")
        with engine.begin() as conn:
            old = sa.table("messages", *(sa.column(c) for c in (
                "channel", "direction", "kind", "body", "status", "at", "attempts")))
            conn.execute(insert(old), dict(channel="sms", direction="in", kind="inbound",
                                           body="hello", status="received", at=NOW - 2 * YEAR,
                                           attempts=0))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("messages")}
            row = conn.execute(sa.select(MessageRow.body, MessageRow.redacted_at)).one()
        assert "ix_messages_unredacted_at" in indexes
        assert tuple(row) == ("hello", None)
        assert purge_expired_bodies(lambda: SqlUnitOfWork(engine), YEAR, NOW) == 1
    finally:
        engine.dispose()
