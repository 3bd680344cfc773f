"""One scheduler per database: a second `flask --app app scheduler` waits for the first instead
of running the same work twice, and takes over when the first dies (kill -9 included); the
scheduler logs no line per idle tick. Real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import make_engine
from storage.scheduler_lock import SchedulerLock
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]


def _scheduler(db_url: str, tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.log"
    env = {**os.environ, "UPGRADE_CHAT_DATABASE_URL": db_url, "UPGRADE_CHAT_API_KEY": API_KEY,
           "UPGRADE_CHAT_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "scheduler",
                             "--every", "1"], cwd=ROOT, env=env, stdout=out.open("w"),
                            stderr=subprocess.STDOUT)
    return proc, out


def _wait_for(out: Path, words: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while words not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.1)


def test_a_second_scheduler_waits_and_takes_over_when_the_first_dies(db_url, tmp_path):
    first, first_out = _scheduler(db_url, tmp_path, "first")
    second = None
    try:
        _wait_for(first_out, "running background jobs every 1 s", first)
        second, second_out = _scheduler(db_url, tmp_path, "second")
        _wait_for(second_out, "another scheduler is running against this database", second)
        time.sleep(2)  # two of the first one's ticks: the second still only waits
        assert "running background jobs" not in second_out.read_text()
        lock = SchedulerLock(make_engine(db_url))
        assert not lock.try_acquire()  # held (by the first): nobody else runs due work
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        _wait_for(second_out, "running background jobs every 1 s", second, seconds=15)
        assert not lock.try_acquire()  # the second holds it now
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=20)
    # Idle ticks said nothing: no APScheduler line per pass, and no summary of an empty pass.
    log = second_out.read_text()
    assert "executed successfully" not in log and "Running job" not in log
    assert "spool: 0 replayed" not in log


def test_the_lock_is_free_again_once_its_holder_releases_it(db_url):
    engine = make_engine(db_url)
    one, two = SchedulerLock(engine), SchedulerLock(engine)
    try:
        assert one.try_acquire() and one.try_acquire()  # ours already: still held
        assert not two.try_acquire()
        one.release()
        assert two.try_acquire()
    finally:
        one.release()
        two.release()
        engine.dispose()


@pytest.mark.postgres
def test_the_lock_session_gives_up_a_silent_link_within_a_minute_on_both_ends(pg_test_url):
    """A vanished host keeps no lock for the OS's two hours: the server drops the session and
    the holder's check fails after ~60 s of silence (keepalives and a user timeout each end)."""
    engine = make_engine(pg_test_url)
    lock = SchedulerLock(engine)
    try:
        assert lock.try_acquire()
        conn = lock._conn
        server = conn.execute(text("SELECT current_setting('tcp_keepalives_idle'), "
                                   "current_setting('tcp_keepalives_count'), "
                                   "current_setting('tcp_user_timeout')")).one()
        assert tuple(server) == ("30", "3", "60000")
        client = conn.connection.dbapi_connection.info.get_parameters()
        assert client["keepalives_idle"] == "30" and client["tcp_user_timeout"] == "60000"
        pooled = engine.connect()  # the service's own pool is left as it was
        assert pooled.execute(text("SELECT current_setting('tcp_user_timeout')")).scalar() == "0"
        pooled.close()
    finally:
        lock.release()
        engine.dispose()
