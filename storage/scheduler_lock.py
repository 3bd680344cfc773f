"""One scheduler per database: the lock a scheduler holds while it runs due work.

A second scheduler started by mistake (a deploy that starts the new one before stopping the old,
an operator's second terminal) must wait, not run the same work twice. The lock is the
database's own, so it covers every host that shares it, and is released by the operating system
or the server when its process dies, however it dies:
- PostgreSQL: a session-level advisory lock, on a connection held for the life of the lock;
- SQLite: an exclusive `flock` on a file beside the database file (one host: the file's).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

# pg_advisory_lock's key for the scheduler: a constant no other lock of the service uses.
SCHEDULER_LOCK = 0x73636864  # "schd"


class SchedulerLock:
    """`try_acquire()` takes the lock if it is free (True: held from now on, also when it was
    already ours); `release()` gives it back. Not reentrant across threads: one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            try:
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
            finally:
                self._conn.close()
                self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def _lock_file(self) -> Path:
        database: Any = self.engine.url.database
        if not database or database == ":memory:":
            raise RuntimeError("a scheduler lock needs a database file")
        return Path(f"{database}.scheduler.lock")
