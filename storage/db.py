"""Engines for SQLite (the embedded default) and PostgreSQL, configured for safe concurrent writes."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from storage.bulk import EVENTS_IN, create_copy_tables


def make_engine(url: str) -> Engine:
    """An engine for `url`. On SQLite a transaction starts with BEGIN IMMEDIATE, so writers queue
    on the database lock (busy timeout) instead of failing when a reader upgrades to a writer;
    a connection with execution option sqlite_begin="DEFERRED" (read-only units of work) starts a
    plain reader, which WAL lets go on while a writer works. Foreign keys are enforced."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # hide_parameters: a database error must not print message bodies or numbers in logs.
        # connect_timeout: a database that drops packets must not hold a webhook for minutes
        # (Twilio waits 15 s; the message is spooled instead).
        # No pre-ping (a round trip for every transaction, a tenth of an inbound message's): a
        # connection broken since its last use (a server restart) fails its first statement,
        # the unit of work says ConnectionLost, SQLAlchemy drops every pooled connection older
        # than it, and core.retry runs the work again on a new one. pool_recycle replaces the
        # connections an idle timeout between here and the server could have cut.
        pg = create_engine(url, hide_parameters=True, pool_recycle=1800,
                           connect_args={"connect_timeout": 5})
        if parsed.get_backend_name() == "postgresql":

            @event.listens_for(pg, "connect")
            def _on_pg_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
                record.info[EVENTS_IN] = create_copy_tables(dbapi_conn)

        return pg
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                           hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if parsed.database and parsed.database != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")

    return engine


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


try:
    import psycopg
except ImportError:  # pragma: no cover - SQLite-only installs
    psycopg = None  # type: ignore[assignment]

# SQLite failures about reaching the file, not about the statement ("no such table" is a bug).
SQLITE_UNREACHABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR",
                      "SQLITE_FULL", "SQLITE_PROTOCOL")


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) means the database cannot be reached or used right now
    (down, restarting, connection lost, no connection free, SQLite locked), as opposed to a bug
    or a refusal that would fail again the same way (the unit of work raises
    core.ports.StorageUnavailable for these)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unreachable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return True
        if isinstance(exc, sa_exc.OperationalError):
            orig = exc.orig
            return _sqlite_unreachable(orig) if isinstance(orig, sqlite3.Error) else True
        return False
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection to give
        return True
    if psycopg is not None and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    return isinstance(exc, sqlite3.OperationalError) and _sqlite_unreachable(exc)


def _sqlite_unreachable(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(SQLITE_UNREACHABLE)
