"""The SQL unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, TypeGuard

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.ports import (Conflict, ConnectionLost, StorageBusy, StorageUnavailable,
                        UnitOfWork)
from storage.db import database_unreachable
from storage.conversations import (SqlContactRepository, SqlMessageRepository,
                                   SqlPlanChangeRepository, SqlThreadRepository)
from storage.calls import SqlCallRepository
from storage.metrics import SqlMetricsRepository
from storage.escalations import SqlEscalationRepository
from storage.operators import SqlOperatorRepository
from storage.reads import SqlAccountReads
from storage.delivery import SqlOutboxRepository
from storage.repositories import (SqlAccountRepository, SqlSignalRepository,
                                  SqlThresholdStateRepository, SqlUsageRepository)

# What "lost a race, try again" looks like. PostgreSQL: unique violation, serialization failure,
# deadlock. SQLite: a unique or primary key taken meanwhile. Any other constraint failure (a
# foreign key, NOT NULL) is a bug, and must surface as one rather than be retried.
RACE_SQLSTATES = {"23505", "40001", "40P01"}
RACE_SQLITE_ERRORS = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def _is_race(exc: BaseException | None) -> TypeGuard[DBAPIError]:
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) in RACE_SQLSTATES
            or getattr(orig, "sqlite_errorname", None) in RACE_SQLITE_ERRORS)


def _code(exc: DBAPIError) -> str:
    """A database error by its code alone (SQLSTATE, or SQLite's error name)."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    return f"{type(orig).__name__} ({code or 'no code'})"


def _is_busy(exc: BaseException | None) -> TypeGuard[DBAPIError]:
    # SQLite gave up waiting for the writer lock (after the busy timeout).
    return (isinstance(exc, DBAPIError)
            and getattr(exc.orig, "sqlite_errorname", None) in {"SQLITE_BUSY", "SQLITE_LOCKED"})


class SqlJobQueue:
    """The job outbox (storage.outbox) inside this unit of work's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def enqueue(self, kind: str, key: str, payload: dict[str, Any], now: datetime, *,
                due: datetime | None = None) -> bool:
        from storage.outbox import enqueue  # storage.outbox runs its dispatcher on this module
        return enqueue(self.session, kind, key, payload, now, due=due)


class SqlUnitOfWork(UnitOfWork):
    """Enter it once per use case; a new session each time. Races become `core.ports.Conflict`.

    `read_only` units of work do not take SQLite's writer lock, so reads go on while a batch is
    being written (WAL); everything else takes it at BEGIN (see storage.db).

    It subclasses the port, so its attributes have the ports' types: mypy checks that each
    repository given them, and the unit of work itself, implements its port.
    """

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        if read_only:
            engine = engine.execution_options(sqlite_begin="DEFERRED")
        # A plain Session per `with`: a sessionmaker here made a new Session subclass per unit
        # of work, and SQLAlchemy set up that class's event dispatch each time (a third of a
        # delivery report's CPU).
        self._engine = engine
        self._session: Session | None = None
        self._committing = False  # COMMIT was sent: a broken link now leaves the outcome unknown

    @property
    def session(self) -> Session:
        """This unit of work's session: there is one only inside `with`."""
        if self._session is None:
            raise RuntimeError("the unit of work has no session outside `with`")
        return self._session

    def __enter__(self) -> SqlUnitOfWork:
        self._committing = False
        session = self._session = Session(bind=self._engine, expire_on_commit=False)
        self.accounts = SqlAccountRepository(session)
        self.usage = SqlUsageRepository(session)
        self.thresholds = SqlThresholdStateRepository(session)
        self.signals = SqlSignalRepository(session)
        self.contacts = SqlContactRepository(session)
        self.threads = SqlThreadRepository(session)
        self.messages = SqlMessageRepository(session)
        self.plan_changes = SqlPlanChangeRepository(session)
        self.escalations = SqlEscalationRepository(session)
        self.jobs = SqlJobQueue(session)
        self.outbox = SqlOutboxRepository(session)
        self.calls = SqlCallRepository(session)
        self.metrics = SqlMetricsRepository(session)
        self.operators = SqlOperatorRepository(session)
        self.reads = SqlAccountReads(session)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        session = self.session
        try:
            session.rollback()  # a no-op after commit
        finally:
            session.close()
            self._session = None
        # Only the error's code goes into the text, which the API logs: a driver's message
        # quotes the key's values (PostgreSQL's DETAIL: contact ids, emails) or parameters.
        if _is_race(exc):
            raise Conflict(_code(exc)) from exc
        if _is_busy(exc):
            raise StorageBusy(_code(exc)) from exc
        if isinstance(exc, DBAPIError) and exc.connection_invalidated and not self._committing:
            # A stale pooled connection, found before anything was committed: safe to run the
            # work again. Broken during COMMIT, the work may have landed: running it again
            # would repeat what has no key (an API message, its queued replies) or answer a
            # Twilio retry of a landed message with nothing; so that is StorageUnavailable
            # below, not retried (the webhook spools, the API answers 503).
            raise ConnectionLost(type(exc).__name__) from exc
        if exc is not None and database_unreachable(exc):
            # Its text stays out: a driver's message can quote parameters.
            raise StorageUnavailable(type(exc).__name__) from exc

    def commit(self) -> None:
        self._committing = True
        self.session.commit()

