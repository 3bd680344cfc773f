"""Storage on real SQLite and PostgreSQL: migrations match the models, the SQL usage matrix is exact."""

import random
import time
from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, text
from sqlalchemy.exc import IntegrityError

from channels.twilio_outbound import SandboxSender
from core import services
from core.accounts import Contact
from channels import registered
from core.delivery import MESSAGE_KIND, MessageJobs
from core.errors import DomainError
from core.services import AccountInput
from core.ports import Conflict
from core.usage import MAX_QUANTITY, UsageEvent, UsageMatrix
from storage import migrate
from storage.db import make_engine
from storage import usage_totals
from storage.models import (AccountRow, Base, ContactRow, MessageRow, OutboxRow, ThreadRow,
                            ThresholdStateRow, UsageDailyRow, UsageEventRow, UsageTotalRow,
                            UTCDateTime, in_models)
from storage.outbox import DispatchStats, OutboxDispatcher
from storage.uow import SqlUnitOfWork
from tests.conftest import NOW


@pytest.fixture
def uow(engine, catalog):
    """A unit of work on this test's database, with one Starter account "acct"."""
    uow = SqlUnitOfWork(engine)
    _account(uow, catalog)
    return uow


def test_migrations_create_exactly_the_schema_the_models_describe(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": in_models}), Base.metadata)
    assert diff == []
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_upgrading_an_up_to_date_database_is_harmless(engine):
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path):
    """A database with no schema at all (a new file, or a new PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    from tests.support import postgres
    return postgres.create_database(request.getfixturevalue("pg_admin_url"), "upgrade_chat_migrate")


def test_0004_keeps_one_copy_of_a_message_an_unknown_sender_had_stored_twice(empty_db_url):
    """Before 0004 two concurrent deliveries from a number that is no contact could both be
    stored; the upgrade keeps the first so the unique index can be built."""
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, "0003")
        row = {"channel": "sms", "direction": "in", "kind": "inbound", "body": "hello?",
               "status": "received", "at": NOW, "attempts": 0}
        with engine.begin() as conn:
            for provider_id in ("SM1", "SM1", "SM1", "SM2", None, None):
                conn.execute(insert(MessageRow), {**row, "provider_id": provider_id})
        migrate.upgrade(engine)
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT id, provider_id FROM messages ORDER BY id")).all()
        assert [tuple(r) for r in kept] == [(1, "SM1"), (4, "SM2"), (5, None), (6, None)]
        with pytest.raises(IntegrityError), engine.begin() as conn:  # kept as a stranger's (0010)
            conn.execute(insert(MessageRow), {**row, "kind": "unmatched", "provider_id": "SM2"})
    finally:
        engine.dispose()


# `messages` as it was before 0007 (the model no longer has next_attempt_at).
_OLD_MESSAGES = sa.table(
    "messages", *(sa.column(c, t) for c, t in (
        ("id", sa.Integer), ("thread_id", sa.Integer), ("contact_id", sa.Integer),
        ("channel", sa.String), ("direction", sa.String), ("kind", sa.String),
        ("body", sa.Text), ("status", sa.String), ("not_before", UTCDateTime()),
        ("at", UTCDateTime()), ("attempts", sa.Integer), ("next_attempt_at", UTCDateTime()))))


def test_0007_gives_every_queued_phone_message_its_outbox_job_and_they_go_out(empty_db_url):
    """Messages queued on SMS or WhatsApp before 0007 get a job due when they were (a deferral,
    a retry's backoff or a lease kept), with the sends they had started; nothing else does. The
    one dispatcher then sends them, each at its time, once."""
    engine = make_engine(empty_db_url)
    clock = [NOW]
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            account = conn.execute(insert(AccountRow).returning(AccountRow.id), dict(
                external_id="old", name="Old Co", plan="starter", vertical="generic",
                timezone="UTC", billing_day=1, plan_since=NOW - timedelta(days=90),
                open_escalations=0, created_at=NOW, updated_at=NOW)).scalar_one()
            dana = conn.execute(insert(ContactRow).returning(ContactRow.id), dict(
                account_id=account, external_id="old-dana", position=0, role="billing",
                phone="+13125550142", whatsapp="+447700900123",
                whatsapp_opt_in_at=NOW - timedelta(days=9))).scalar_one()
            thread = conn.execute(insert(ThreadRow).returning(ThreadRow.id), dict(
                account_id=account, contact_id=dana, current_plan="starter",
                target_plan="growth", direction="up", state="open", last_channel="sms",
                opened_at=NOW, updated_at=NOW, initiated_by="business")).scalar_one()

            def message(channel, kind, status, *, direction="out", not_before=None,
                        next_attempt_at=None, attempts=0, at=NOW - timedelta(hours=1)):
                return conn.execute(insert(_OLD_MESSAGES).returning(_OLD_MESSAGES.c.id), dict(
                    thread_id=thread, contact_id=dana, channel=channel, direction=direction,
                    kind=kind, body=f"{kind} on {channel}", status=status, at=at,
                    not_before=not_before, next_attempt_at=next_attempt_at,
                    attempts=attempts)).scalar_one()

            deferred = message("sms", "opening", "queued", not_before=NOW + timedelta(hours=3))
            backing_off = message("whatsapp", "reply", "queued", attempts=2,
                                  next_attempt_at=NOW + timedelta(minutes=10))
            lease_ran_out = message("sms", "reply", "queued", attempts=1,
                                    next_attempt_at=NOW - timedelta(minutes=1))
            message("web", "reply", "queued")  # the widget's: no job
            message("sms", "reply", "sent")
            message("sms", "opening", "cancelled")
            message("sms", "inbound", "received", direction="in")
        migrate.upgrade(engine)

        with engine.connect() as conn:
            jobs = conn.execute(select_jobs()).all()
            columns = {c["name"] for c in inspect(conn).get_columns("messages")}
        assert "next_attempt_at" not in columns
        assert [tuple(j) for j in jobs] == [
            ("message", f"message:{m}", {"message_id": m}, "pending", attempts, due)
            for m, attempts, due in (
                (deferred, 0, NOW + timedelta(hours=3)),
                (backing_off, 2, NOW + timedelta(minutes=10)),
                (lease_ran_out, 1, NOW - timedelta(minutes=1)))]

        outbox = OutboxDispatcher(engine, {MESSAGE_KIND: MessageJobs(SandboxSender(), registered())},
                                  lambda: clock[0])
        sent = []
        for at in (NOW, NOW + timedelta(minutes=10), NOW + timedelta(hours=3),
                   NOW + timedelta(days=1)):
            clock[0] = at
            sent.append(outbox.dispatch_due())
        assert sent == [DispatchStats(sent=1)] * 3 + [DispatchStats()]
        with engine.connect() as conn:
            statuses = dict(conn.execute(sa.select(MessageRow.id, MessageRow.status)).all())
            state = conn.execute(sa.select(ThreadRow.state)).scalar_one()
        assert [statuses[m] for m in (deferred, backing_off, lease_ran_out)] == ["sent"] * 3
        assert state == "offered"  # the deferred opening went out
    finally:
        engine.dispose()


def select_jobs():
    return (sa.select(OutboxRow.kind, OutboxRow.key, OutboxRow.payload, OutboxRow.status,
                      OutboxRow.attempts, OutboxRow.next_attempt_at).order_by(OutboxRow.id))


def test_0007_downgrades_to_messages_that_carry_their_next_try_again(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            queued = conn.execute(insert(_OLD_MESSAGES).returning(_OLD_MESSAGES.c.id), dict(
                channel="sms", direction="out", kind="reply", body="hi", status="queued",
                at=NOW, attempts=1, next_attempt_at=NOW + timedelta(minutes=2))).scalar_one()
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert(OutboxRow), dict(kind="billing_webhook", key="thread:1:growth",
                                                 payload={}, status="pending", attempts=0,
                                                 next_attempt_at=NOW, created_at=NOW))
        cfg = migrate.alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")
        with engine.connect() as conn:
            row = conn.execute(sa.select(_OLD_MESSAGES.c.next_attempt_at)
                               .where(_OLD_MESSAGES.c.id == queued)).one()
            kinds = conn.scalars(sa.select(OutboxRow.kind)).all()
        assert row.next_attempt_at == NOW + timedelta(minutes=2)
        assert kinds == ["billing_webhook"]  # the message jobs went, the others stay
        assert migrate.current_revision(engine) == "0006"
    finally:
        engine.dispose()


def _account(uow, catalog, external_id="acct", plan="starter"):
    services.upsert_account(uow, catalog, AccountInput(
        external_id=external_id, name="Acct", plan=plan, vertical="generic", timezone="UTC",
        billing_day=1, contacts=(Contact("c-" + external_id, role="billing"),),
        plan_since=NOW - timedelta(days=400)), NOW)


def test_sql_usage_matrix_equals_the_core_matrix_for_the_same_events(uow, catalog):
    rng = random.Random(7)
    metrics = ["messages", "messages", "seats", "integrations", "feature:workflows", "feature:sso"]
    events = sorted((UsageEvent(f"e{i}", "acct", rng.choice(metrics), rng.randint(0, 900),
                                NOW - timedelta(minutes=rng.randint(0, 60 * 24 * 45)))
                     for i in range(400)), key=lambda e: e.at)
    for start in range(0, len(events), 37):  # batches of an awkward size
        services.record_usage(uow, catalog, events[start:start + 37], NOW)
    # As of several moments, so the window's first day is cut at different hours.
    for as_of in [NOW + timedelta(hours=h) for h in (0, 7, 31, 24 * 9 + 13, 24 * 40)]:
        _, from_sql = services.get_account(uow, "acct", as_of)
        expected = UsageMatrix()
        for e in events:
            expected = expected.apply(e, as_of)
        assert from_sql == expected, as_of


def _core_matrix(events, as_of):
    expected = UsageMatrix()
    for e in events:
        expected = expected.apply(e, as_of)
    return expected


def _history(seed, n=500, days=70):
    """Events of every metric over the last `days` days (most older than the window), with
    quantities that may be 0 (a feature hit of 0 still names the feature)."""
    rng = random.Random(seed)
    metrics = ["messages", "messages", "seats", "integrations", "integrations",
               "feature:workflows", "feature:sso"]
    return rng, [UsageEvent(f"e{i}", "acct", rng.choice(metrics), rng.choice([0, 1, 2, 3, 5, 900]),
                            NOW - timedelta(minutes=rng.randint(0, 60 * 24 * days)))
                 for i in range(n)]


def _moments(clock):
    # Earlier than the last write (the row's base day is ahead of the window: derived anew),
    # the write's own moment, a day and some hours later (the row catches up), two and a half
    # weeks later, and after everything left the window (derived anew).
    return [clock - timedelta(days=2, hours=5), clock, clock + timedelta(days=1, hours=3),
            clock + timedelta(days=17, hours=11), clock + timedelta(days=44)]


@pytest.mark.parametrize("order", ["in time order", "out of order"])
def test_the_usage_row_keeps_the_matrix_exact_as_events_arrive_and_days_leave_the_window(
        uow, catalog, order):
    """usage_totals (storage/usage_totals.py) against the core's event-by-event matrix: events
    arriving in time order or shuffled, many older than the window, written by a clock that
    moves on over twelve days (so the rows' base days move), read before, at and after it."""
    rng, events = _history(11)
    if order == "in time order":
        events.sort(key=lambda e: e.at)
    else:
        rng.shuffle(events)
    stored = []
    for i, start in enumerate(range(0, len(events), 41)):
        clock = NOW + timedelta(days=i, hours=rng.randint(0, 23))
        batch = events[start:start + 41]
        services.record_usage(uow, catalog, batch, clock)
        stored.extend(sorted(batch, key=lambda e: e.at))  # as storage applies a batch
        for as_of in _moments(clock):
            _, from_sql = services.get_account(uow, "acct", as_of)
            assert from_sql == _core_matrix(stored, as_of), (i, as_of)


def test_the_usage_rows_are_derived_anew_from_the_rollups_or_the_raw_events(engine, uow, catalog):
    """rebuild_usage_totals (migration 0014, a bulk loader) and rebuild_usage_summaries (a
    loader that wrote raw events only) give the matrices ingestion kept."""
    rng, events = _history(5)
    events.sort(key=lambda e: e.at)
    for start in range(0, len(events), 50):
        services.record_usage(uow, catalog, events[start:start + 50], NOW)
    moments = _moments(NOW)
    kept = [services.get_account(uow, "acct", as_of)[1] for as_of in moments]
    assert kept == [_core_matrix(events, as_of) for as_of in moments]
    # From the rollups, as of a later moment than the reads (rows ahead of some windows).
    with engine.begin() as conn:
        conn.execute(sa.delete(UsageTotalRow))
        assert usage_totals.rebuild_usage_totals(conn, NOW + timedelta(days=3)) == 1
    assert [services.get_account(uow, "acct", as_of)[1] for as_of in moments] == kept
    # From the raw events alone (a bulk loader's COPY).
    with engine.begin() as conn:
        conn.execute(sa.delete(UsageTotalRow))
        conn.execute(sa.delete(UsageDailyRow))
        usage_totals.rebuild_usage_summaries(conn, NOW)
    assert [services.get_account(uow, "acct", as_of)[1] for as_of in moments] == kept


def test_a_matrix_read_takes_the_same_few_statements_for_one_account_or_many(engine, uow,
                                                                             catalog):
    """The inbound reply reads one matrix, a re-evaluation thousands: no round trip per
    account, whether the rows are read as they are or caught up after days left the window."""
    names = [f"m{i}" for i in range(60)]
    for name in names:
        _account(uow, catalog, name)
    services.record_usage(uow, catalog, [
        UsageEvent(f"{name}-{k}", name, metric, 3, NOW - timedelta(days=k * 7, hours=k))
        for name in names for k, metric in enumerate(["messages", "seats", "integrations",
                                                       "feature:workflows"])], NOW)
    statements = []

    def count(conn, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for as_of in (NOW, NOW + timedelta(days=3)):  # as they are; caught up
            counts = []
            for some in (names[:1], names):
                with uow:
                    ids = [uow.accounts.get(n).id for n in some]
                    statements.clear()
                    matrices = uow.usage.matrices(ids, as_of)
                    counts.append(len(statements))
                assert len(matrices) == len(some)
            assert counts[0] == counts[1] == (3 if as_of == NOW else 4), (as_of, counts)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_0014_derives_the_usage_rows_from_existing_usage(empty_db_url, catalog):
    """A database at 0013 with usage (events, rollups, gauges) gets its usage rows from the
    rollups, and its matrices are those of the events; a downgrade gives the gauges back."""
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, "0013")
        _, events = _history(3, n=300)
        events.sort(key=lambda e: e.at)
        with engine.begin() as conn:
            account_id = conn.execute(insert(AccountRow).returning(AccountRow.id).values(
                external_id="acct", name="Acct", plan="starter", vertical="generic",
                timezone="UTC", billing_day=1, plan_since=NOW - timedelta(days=400),
                open_escalations=0, created_at=NOW, updated_at=NOW)).scalar_one()
            conn.execute(insert(UsageEventRow), [
                {"event_id": e.id, "account_id": account_id, "metric": e.metric,
                 "quantity": e.quantity, "at": e.at, "received_at": NOW} for e in events])
            usage_totals.rebuild_usage_daily(conn)
            conn.execute(text(
                "INSERT INTO usage_gauges (account_id, metric, quantity, at) "
                "SELECT account_id, metric, 1, last_at FROM usage_daily WHERE metric = 'seats'"
                " LIMIT 1"))
        migrate.upgrade(engine)
        uow = SqlUnitOfWork(engine)
        for as_of in _moments(NOW):
            assert services.get_account(uow, "acct", as_of)[1] == _core_matrix(events, as_of)
        cfg = migrate.alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0013")
        with engine.connect() as conn:
            gauges = dict(conn.execute(text("SELECT metric, quantity FROM usage_gauges")).all())
        matrix = _core_matrix(events, NOW)
        assert gauges == {"seats": matrix.seats, "integrations": matrix.integrations}
    finally:
        engine.dispose()


def test_a_rejected_batch_leaves_no_trace(uow, catalog):
    good = UsageEvent("ok", "acct", "seats", 9, NOW)
    bad = UsageEvent("bad", "nobody", "seats", 9, NOW)
    with pytest.raises(DomainError) as err:
        services.record_usage(uow, catalog, [good, bad], NOW)
    assert (err.value.code, err.value.index) == ("unknown_account", 1)
    assert services.get_account(uow, "acct", NOW)[1] == UsageMatrix()
    assert services.list_signals(uow, "acct") == []
    assert services.record_usage(uow, catalog, [good], NOW).accepted == 1  # "ok" was not kept


def test_the_largest_quantities_are_stored_and_summed_on_both_databases(uow, catalog):
    big = [UsageEvent(f"big{i}", "acct", "messages", MAX_QUANTITY, NOW - timedelta(hours=i))
           for i in range(3)]
    result = services.record_usage(uow, catalog, big, NOW)
    assert result.accepted == 3 and len(result.crossings) == 1
    assert services.get_account(uow, "acct", NOW)[1].messages == 3 * MAX_QUANTITY
    [(signal, _, _)] = services.list_signals(uow, "acct")
    assert signal.value == MAX_QUANTITY  # the value at the first event's crossing


def test_a_broken_constraint_is_a_bug_not_a_race_to_retry(engine):
    uow = SqlUnitOfWork(engine)
    with pytest.raises(IntegrityError):
        with uow:
            uow.thresholds.replace_many({424242: frozenset({"k"})}, NOW)  # no such account
            uow.commit()


def test_a_duplicate_key_is_reported_as_a_race(uow, catalog):
    with pytest.raises(Conflict):
        with uow:
            account_id = uow.accounts.get("acct").id
            uow.thresholds.replace_many({account_id: frozenset({"k"})}, NOW)
            uow.session.connection().execute(insert(ThresholdStateRow), [
                {"account_id": account_id, "key": "k", "changed_at": NOW}])
            uow.commit()


def test_sqlite_readers_go_on_while_a_writer_holds_the_lock(tmp_path, sqlite_template, catalog):
    path = tmp_path / "busy.sqlite3"
    path.write_bytes(sqlite_template.read_bytes())
    engine = make_engine(f"sqlite:///{path}")
    try:
        _account(SqlUnitOfWork(engine), catalog)
        with engine.connect() as writer:  # BEGIN IMMEDIATE: holds the writer lock
            writer.execute(text("UPDATE accounts SET name = 'renamed'"))
            started = time.monotonic()
            account, _ = services.get_account(SqlUnitOfWork(engine, read_only=True), "acct", NOW)
            assert time.monotonic() - started < 2
            assert account.name == "Acct"  # the writer has not committed
    finally:
        engine.dispose()


def test_a_window_asked_for_in_another_time_zone_is_the_same_window(uow, catalog):
    old = UsageEvent("old", "acct", "messages", 5000, NOW - timedelta(days=30, hours=5))
    services.record_usage(uow, catalog, [old], NOW)
    honolulu = NOW.astimezone(timezone(timedelta(hours=-10)))
    assert services.get_account(uow, "acct", honolulu)[1].messages == 0
