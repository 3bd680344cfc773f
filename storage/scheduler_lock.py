"""One scheduler per database: the lock a scheduler holds while it runs due work.

A second scheduler started by mistake (a deploy that starts the new one before stopping the old,
an operator's second terminal) must wait, not run the same work twice. The lock is the
database's own, so it covers every host that shares it, and is released by the operating system
or the server when its process dies, however it dies:
- PostgreSQL: a session-level advisory lock, on a connection held for the life of the lock;
- SQLite: an exclusive `flock` on a file beside the database file (one host: the file's).

A PostgreSQL session lock lasts only as long as its connection: a server restart or a dropped
connection releases it on the server, silently, and another scheduler may take it at once. So
`try_acquire` (every tick) asks the held connection whether the lock is still its own, and when
the connection is gone takes the lock again on a new one, or reports it taken by someone else.

A network that goes silent (a host that vanishes, a partition) closes nothing: by default the
server keeps the dead session, and its lock, for the operating system's two-hour keepalive, and
the holder's check would wait as long. So the lock's connection is its own (not the pool's), with
TCP keepalives and a user timeout on both ends (`LINK_TIMEOUTS`): about a minute after the link
goes silent, the server drops the session (a standby scheduler takes the lock) and the holder's
check fails (it stops running work and waits for the lock again).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

# pg_advisory_lock's key for the scheduler: a constant no other lock of the service uses.
SCHEDULER_LOCK = 0x73636864  # "schd"
# Whether this session still holds it: a bigint key is pg_locks' classid (high 32 bits) and
# objid (low 32 bits), objsubid 1.
_STILL_HELD = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                   "AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                   "AND ((classid::bigint << 32) | objid::bigint) = :k)")
# A silent link is given up after ~60 s: idle 30 s, then 3 probes 10 s apart; data unacknowledged
# for 60 s also ends it. libpq's names for the client end, the server's settings for its end.
LINK_TIMEOUTS = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                 "keepalives_count": 3, "tcp_user_timeout": 60_000}
_SERVER_TIMEOUTS = text("SELECT set_config('tcp_keepalives_idle', '30', false), "
                        "set_config('tcp_keepalives_interval', '10', false), "
                        "set_config('tcp_keepalives_count', '3', false), "
                        "set_config('tcp_user_timeout', '60000', false)")


class SchedulerLock:
    """`try_acquire()` takes the lock if it is free (True: held from now on, also when it was
    already ours and still is); `release()` gives it back. Not reentrant across threads: one per
    process. On PostgreSQL `try_acquire` raises the driver's error when the server cannot be
    reached (the caller decides how to wait)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Its own connections, opened and closed with the lock, with the link's timeouts.
        self._lock_engine = (create_engine(engine.url, poolclass=NullPool,
                                           connect_args={"connect_timeout": 5, **LINK_TIMEOUTS})
                             if engine.dialect.name == "postgresql" else engine)
        self._conn: Connection | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True  # a flock lasts as long as the descriptor: ours
        if self._conn is not None:
            if self._still_ours(self._conn):
                return True
            self._forget()  # lost with its connection (a restart, a dropped link): take it anew
        if self.engine.dialect.name == "postgresql":
            conn = self._lock_engine.connect()
            try:
                conn.execute(_SERVER_TIMEOUTS)
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                        {"k": SCHEDULER_LOCK}).scalar())
                conn.commit()  # the lock is the session's; no transaction stays open
            except Exception:
                conn.close()
                raise
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        path = self._lock_file()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEDULER_LOCK})
                self._conn.commit()
            except sa_exc.DBAPIError:
                pass  # the connection is gone, and the session's lock with it
            finally:
                self._forget()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @staticmethod
    def _still_ours(conn: Connection) -> bool:
        try:
            held = bool(conn.execute(_STILL_HELD, {"k": SCHEDULER_LOCK}).scalar())
            conn.commit()
        except sa_exc.DBAPIError:
            return False  # the connection died: the server released the lock with the session
        return held

    def _forget(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sa_exc.DBAPIError:
                pass

    def _lock_file(self) -> Path:
        database: Any = self.engine.url.database
        if not database or database == ":memory:":
            raise RuntimeError("a scheduler lock needs a database file")
        return Path(f"{database}.scheduler.lock")
