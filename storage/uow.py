"""The SQL unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import sessionmaker

from core.ports import Conflict
from storage.repositories import (SqlAccountRepository, SqlSignalRepository,
                                  SqlThresholdStateRepository, SqlUsageRepository)

# PostgreSQL SQLSTATEs that mean "lost a race, try again": serialization failure, deadlock.
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def _is_race(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    return False


class SqlUnitOfWork:
    """Enter it once per use case; a new session each time. Races become `core.ports.Conflict`."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self.session = None

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self._sessions()
        self.accounts = SqlAccountRepository(self.session)
        self.usage = SqlUsageRepository(self.session)
        self.thresholds = SqlThresholdStateRepository(self.session)
        self.signals = SqlSignalRepository(self.session)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.session.rollback()  # a no-op after commit
        finally:
            self.session.close()
            self.session = None
        if exc is not None and _is_race(exc):
            raise Conflict(str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)) from exc

    def commit(self) -> None:
        self.session.commit()
