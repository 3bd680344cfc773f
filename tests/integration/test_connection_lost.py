"""A pooled PostgreSQL connection broken since its last use (a server restart, an idle timeout):
without a ping before each checkout, the unit of work finds it on its first statement, says
ConnectionLost, and `core.retry.retrying` runs the work again on a new connection."""

import pytest
from sqlalchemy import text

from core.ports import ConnectionLost, StorageUnavailable
from core.retry import retrying
from storage.db import make_engine
from storage.uow import SqlUnitOfWork

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine(pg_test_url):
    engine = make_engine(pg_test_url)
    yield engine
    engine.dispose()


def _break_pooled_connection(engine, admin_url: str) -> None:
    """Use a connection (it goes back to the pool), then end its server process."""
    with SqlUnitOfWork(engine) as uow:
        pid = uow.session.connection().execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = make_engine(admin_url)
    with admin.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_a_broken_pooled_connection_is_retried_on_a_new_one(pg_engine, pg_admin_url):
    _break_pooled_connection(pg_engine, pg_admin_url)
    attempts = []

    def attempt() -> int:
        attempts.append(1)
        with SqlUnitOfWork(pg_engine) as uow:
            return uow.session.connection().execute(text("SELECT 1")).scalar_one()

    assert retrying(attempt) == 1
    assert len(attempts) == 2  # the broken connection, then a new one


def test_without_a_retry_it_is_storage_unavailable(pg_engine, pg_admin_url):
    _break_pooled_connection(pg_engine, pg_admin_url)
    with pytest.raises(ConnectionLost) as caught:
        with SqlUnitOfWork(pg_engine) as uow:
            uow.session.connection().execute(text("SELECT 1"))
    assert isinstance(caught.value, StorageUnavailable)  # a read: 503, a webhook: spooled
    with SqlUnitOfWork(pg_engine) as uow:  # the pool dropped it: the next one works
        assert uow.session.connection().execute(text("SELECT 1")).scalar_one() == 1


def test_a_connection_broken_at_commit_is_not_run_again(pg_engine, pg_admin_url):
    """Broken during COMMIT, the work may have landed (the acknowledgement was what got lost):
    running it again could store an API message twice or answer a landed Twilio message with
    nothing. So it is StorageUnavailable (spooled, or 503), not ConnectionLost, and not retried."""
    attempts = []

    def attempt() -> None:
        attempts.append(1)
        with SqlUnitOfWork(pg_engine) as uow:
            conn = uow.session.connection()
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            admin = make_engine(pg_admin_url)
            with admin.begin() as c:  # the link goes between the last statement and COMMIT
                c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            admin.dispose()
            uow.commit()

    with pytest.raises(StorageUnavailable) as caught:
        retrying(attempt)
    assert not isinstance(caught.value, ConnectionLost)
    assert len(attempts) == 1
