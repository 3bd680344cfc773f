"""The SQL unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from core.ports import Conflict, StorageBusy, StorageUnavailable
from storage.db import database_unreachable
from storage.conversations import (SqlContactRepository, SqlMessageRepository,
                                   SqlPlanChangeRepository, SqlThreadRepository)
from storage.escalations import SqlEscalationRepository
from storage.delivery import SqlOutboxRepository
from storage.repositories import (SqlAccountRepository, SqlSignalRepository,
                                  SqlThresholdStateRepository, SqlUsageRepository)

# What "lost a race, try again" looks like. PostgreSQL: unique violation, serialization failure,
# deadlock. SQLite: a unique or primary key taken meanwhile. Any other constraint failure (a
# foreign key, NOT NULL) is a bug, and must surface as one rather than be retried.
RACE_SQLSTATES = {"23505", "40001", "40P01"}
RACE_SQLITE_ERRORS = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def _is_race(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) in RACE_SQLSTATES
            or getattr(orig, "sqlite_errorname", None) in RACE_SQLITE_ERRORS)


def _is_busy(exc: BaseException) -> bool:
    # SQLite gave up waiting for the writer lock (after the busy timeout).
    return (isinstance(exc, DBAPIError)
            and getattr(exc.orig, "sqlite_errorname", None) in {"SQLITE_BUSY", "SQLITE_LOCKED"})


class SqlJobQueue:
    """The job outbox (storage.outbox) inside this unit of work's transaction."""

    def __init__(self, session) -> None:
        self.session = session

    def enqueue(self, kind: str, key: str, payload: dict, now, *, due=None) -> bool:
        from storage.outbox import enqueue  # storage.outbox runs its dispatcher on this module
        return enqueue(self.session, kind, key, payload, now, due=due)


class SqlUnitOfWork:
    """Enter it once per use case; a new session each time. Races become `core.ports.Conflict`.

    `read_only` units of work do not take SQLite's writer lock, so reads go on while a batch is
    being written (WAL); everything else takes it at BEGIN (see storage.db).
    """

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        if read_only:
            engine = engine.execution_options(sqlite_begin="DEFERRED")
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self.session = None

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self._sessions()
        self.accounts = SqlAccountRepository(self.session)
        self.usage = SqlUsageRepository(self.session)
        self.thresholds = SqlThresholdStateRepository(self.session)
        self.signals = SqlSignalRepository(self.session)
        self.contacts = SqlContactRepository(self.session)
        self.threads = SqlThreadRepository(self.session)
        self.messages = SqlMessageRepository(self.session)
        self.plan_changes = SqlPlanChangeRepository(self.session)
        self.escalations = SqlEscalationRepository(self.session)
        self.jobs = SqlJobQueue(self.session)
        self.outbox = SqlOutboxRepository(self.session)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.session.rollback()  # a no-op after commit
        finally:
            self.session.close()
            self.session = None
        if exc is not None and _is_race(exc):
            raise Conflict(str(exc.orig)) from exc
        if exc is not None and _is_busy(exc):
            raise StorageBusy(str(exc.orig)) from exc
        if exc is not None and database_unreachable(exc):
            # Its text stays out: a driver's message can quote parameters.
            raise StorageUnavailable(type(exc).__name__) from exc

    def commit(self) -> None:
        self.session.commit()
