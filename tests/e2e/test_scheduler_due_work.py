"""Due work under the scheduler, with real processes and a real database outage.

- Two `flask --app app scheduler` processes on one database (SQLite and PostgreSQL): a due
  billing webhook reaches the operator's receiver (a real local HTTP endpoint) exactly once, sent
  by the scheduler that holds the lock, while the other says it waits.
- The scheduler lock on PostgreSQL across a server restart: its holder notices the lock went
  with its connection, and takes it again or knows another scheduler has it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.db import make_engine
from storage.outbox import enqueue
from storage.scheduler_lock import SchedulerLock
from tests.conftest import API_KEY, _truncate_all

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec-test-0123456789abcdef"


# --- helpers ------------------------------------------------------------------------------------

def _scheduler(db_url: str, tmp_path: Path, name: str, webhook_url: str
               ) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.log"
    env = {**os.environ, "UPGRADE_CHAT_DATABASE_URL": db_url, "UPGRADE_CHAT_API_KEY": API_KEY,
           "UPGRADE_CHAT_INSTANCE_PATH": str(tmp_path / "instance"),
           "UPGRADE_CHAT_BILLING_WEBHOOK_URL": webhook_url,
           "UPGRADE_CHAT_BILLING_WEBHOOK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "scheduler",
                             "--every", "1"], cwd=ROOT, env=env, stdout=out.open("w"),
                            stderr=subprocess.STDOUT)
    return proc, out


def _until(done: Callable[[], bool], seconds: float, why: Callable[[], str] = lambda: "",
           alive: tuple[subprocess.Popen, ...] = ()) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        for proc in alive:
            assert proc.poll() is None, f"a scheduler exited ({proc.returncode}): {why()}"
        assert time.monotonic() < deadline, f"timed out: {why()}"
        time.sleep(0.05)


def _stop(*procs: subprocess.Popen | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        if proc is not None:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _enqueue_webhook(db_url: str, key: str, now: datetime, due: datetime) -> None:
    """A billing webhook job, as a completed upgrade leaves one (core.handlers)."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            assert enqueue(session, "billing_webhook", key,
                           {"event": "plan_change.completed", "account_id": key}, now, due=due)
            session.commit()
    finally:
        engine.dispose()


def _job(db_url: str, key: str) -> tuple[str, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status, attempts FROM outbox WHERE key = :k"),
                               {"k": key}).one()
            return row.status, row.attempts
    finally:
        engine.dispose()


def _lock_is_taken(db_url: str) -> bool:
    """Whether someone else holds the scheduler lock (an outsider cannot take it)."""
    engine = make_engine(db_url)
    lock = SchedulerLock(engine)
    try:
        return not lock.try_acquire()
    finally:
        lock.release()
        engine.dispose()


@contextmanager
def database_down(cluster):
    """The session's shared cluster, stopped for the block and always started again (same data
    folder and port, so every URL stays valid)."""
    cluster.stop()
    try:
        yield
    finally:
        cluster.start()


def _needs_the_throwaway_cluster(pg_cluster) -> None:
    if pg_cluster is None:
        pytest.skip("stops the server: needs the throwaway cluster, not UPGRADE_CHAT_TEST_PG_URL")


# --- two schedulers: a due job runs once ---------------------------------------------------------

def test_two_schedulers_send_a_due_webhook_exactly_once(db_url, tmp_path, receiver):
    first = second = None
    try:
        first, first_out = _scheduler(db_url, tmp_path, "first", receiver.url)
        _until(lambda: "running background jobs every 1 s" in first_out.read_text(), 30,
               first_out.read_text, (first,))
        second, second_out = _scheduler(db_url, tmp_path, "second", receiver.url)
        _until(lambda: "another scheduler is running against this database"
               in second_out.read_text(), 30, second_out.read_text, (second,))
        now = datetime.now(timezone.utc)
        keys = [f"plan-change-{n}" for n in range(5)]
        for key in keys:
            _enqueue_webhook(db_url, key, now, due=now)
        _until(lambda: len(receiver.requests) >= len(keys), 20,
               lambda: first_out.read_text() + second_out.read_text(), (first, second))
        time.sleep(3)  # three more ticks of each: nothing is sent again
        assert receiver.per_key() == {key: 1 for key in keys}
        assert [_job(db_url, key) for key in keys] == [("sent", 1)] * len(keys)
        assert all(r.headers["X-Upgrade-Chat-Signature"] for r in receiver.requests)
        assert _lock_is_taken(db_url)
    finally:
        _stop(first, second)
    first_log, second_log = first_out.read_text(), second_out.read_text()
    # The first sent them (it logged each); the second only waited.
    assert all(f"outbox job {key} (billing_webhook) sent on attempt 1" in first_log
               for key in keys)
    assert "running background jobs" not in second_log and "outbox job" not in second_log


# --- a database outage under a running scheduler ------------------------------------------------

@pytest.fixture
def pg_url(pg_test_url) -> str:
    """PostgreSQL only: these tests stop and start the server under the scheduler."""
    _truncate_all(pg_test_url)
    return pg_test_url


@pytest.mark.postgres
def test_a_lock_lost_with_its_connection_is_taken_again_or_reported_taken(pg_url, pg_cluster):
    """A session lock dies with its connection; the holder must notice, not go on believing."""
    _needs_the_throwaway_cluster(pg_cluster)
    engines = make_engine(pg_url), make_engine(pg_url)
    one, two = SchedulerLock(engines[0]), SchedulerLock(engines[1])
    try:
        assert one.try_acquire()
        pg_cluster.restart()  # the server forgot every session, and their locks
        assert one.try_acquire()  # noticed, and took it again on a new connection
        assert not two.try_acquire()
        with database_down(pg_cluster):
            with pytest.raises(sa_exc.OperationalError):
                one.try_acquire()  # unreachable: said, not taken for "held"
            assert not one.held
        assert two.try_acquire()  # the other got in first after the outage...
        assert not one.try_acquire() and not one.held  # ...so this one knows it is not the holder
        pg_cluster.restart()
        one.release()  # no lock, no connection: nothing to do
        two.release()  # its connection died: releasing says nothing
        assert one.try_acquire()
    finally:
        one.release()
        two.release()
        for engine in engines:
            engine.dispose()
