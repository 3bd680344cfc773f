"""The service on PostgreSQL under a role with no more than it needs: no CREATE on the database
(migration 0015 then makes no trigram indexes) and no TEMPORARY (ingestion then stores events
with its JSON insert instead of COPY through a temporary table). Both used to fail outright."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import load_catalog
from core.accounts import Account
from core.services import record_usage
from core.usage import UsageEvent
from storage import migrate
from storage.db import make_engine
from storage.uow import SqlUnitOfWork

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def least_privilege_url(pg_admin_url):
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "least_privilege" WITH (FORCE)'))
        conn.execute(text("DROP ROLE IF EXISTS least_app"))
        conn.execute(text("CREATE ROLE least_app LOGIN"))
        conn.execute(text('CREATE DATABASE "least_privilege"'))
        conn.execute(text('REVOKE TEMPORARY ON DATABASE "least_privilege" FROM PUBLIC'))
    admin.dispose()
    owner = create_engine(make_url(pg_admin_url).set(database="least_privilege"),
                          isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text("GRANT CREATE ON SCHEMA public TO least_app"))
    owner.dispose()
    return make_url(pg_admin_url).set(username="least_app", database="least_privilege") \
        .render_as_string(hide_password=False)


def test_a_role_without_create_or_temporary_migrates_and_ingests(least_privilege_url):
    engine = make_engine(least_privilege_url)
    try:
        migrate.upgrade(engine)  # to the head, 0015 included
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.connect() as conn:
            assert not conn.execute(text(
                "SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%trgm'")).scalar()
        with SqlUnitOfWork(engine) as uow:
            uow.accounts.save(Account("acme", "Acme", "starter", "saas", "UTC", 1,
                                      NOW - timedelta(days=90)), NOW)
            uow.commit()
        catalog = load_catalog(None)
        events = [UsageEvent(f"e{i}", "acme", "messages", 1000, NOW - timedelta(hours=i))
                  for i in range(5)]
        first = record_usage(SqlUnitOfWork(engine), catalog, events, NOW)
        again = record_usage(SqlUnitOfWork(engine), catalog, events, NOW)
        assert (first.accepted, again.accepted, again.duplicates) == (5, 0, 5)
        assert len(first.crossings) == 1  # 5,000 messages: over Starter's 4,500
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM usage_events")).scalar() == 5
    finally:
        engine.dispose()
