"""Due work under the scheduler, with real processes and a real database outage.

- Two `flask --app app scheduler` processes on one database (SQLite and PostgreSQL): a due
  billing webhook reaches the operator's receiver (a real local HTTP endpoint) exactly once, sent
  by the scheduler that holds the lock, while the other says it waits.
- The scheduler lock on PostgreSQL across a server restart: its holder notices the lock went
  with its connection, and takes it again or knows another scheduler has it.
- PostgreSQL stopped for real under a running scheduler: a job that falls due during the outage
  is sent once the server is back, by the same scheduler, which neither crashed nor logged a
  traceback per tick, and which holds the scheduler lock again afterwards (a second scheduler
  started after the outage waits). Once with the real CLI process (a short outage in real time),
  once with the scheduler's loop in this process (`cli.schedule_jobs`, as both schedulers run it)
  and the app's clock moved 10 minutes while the server is down.
- A second scheduler waiting through the outage does not crash, and afterwards exactly one of
  the two runs the due work.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
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


@pytest.mark.postgres
def test_the_scheduler_process_sends_a_job_that_fell_due_during_an_outage_and_keeps_the_lock(
        pg_url, pg_cluster, tmp_path, receiver):
    _needs_the_throwaway_cluster(pg_cluster)
    sched = second = None
    try:
        sched, out = _scheduler(pg_url, tmp_path, "scheduler", receiver.url)
        _until(lambda: "running background jobs every 1 s" in out.read_text(), 30,
               out.read_text, (sched,))
        now = datetime.now(timezone.utc)
        due = now + timedelta(seconds=4)  # after the server has stopped (pg_ctl -w: < 1 s)
        _enqueue_webhook(pg_url, "during-the-outage", now, due=due)
        before = len(out.read_text().splitlines())
        with database_down(pg_cluster):
            assert receiver.requests == []  # not due yet when the server went away
            # Past its due time, and a few failed ticks more: the scheduler keeps going.
            _until(lambda: datetime.now(timezone.utc) > due + timedelta(seconds=3), 10,
                   out.read_text, (sched,))
            assert receiver.requests == []
        _until(lambda: len(receiver.requests) == 1, 20, out.read_text, (sched,))
        assert _job(pg_url, "during-the-outage") == ("sent", 1)
        # The lock is still this scheduler's: an outsider cannot take it, and a second scheduler
        # started now waits instead of running the same work.
        assert _lock_is_taken(pg_url)
        second, second_out = _scheduler(pg_url, tmp_path, "second", receiver.url)
        _until(lambda: "another scheduler is running against this database"
               in second_out.read_text(), 30, second_out.read_text, (second, sched))
        time.sleep(2)  # two ticks of each
        assert "running background jobs" not in second_out.read_text()
        assert receiver.per_key() == {"during-the-outage": 1}
    finally:
        _stop(sched, second)
    during = out.read_text().splitlines()[before:]
    # A few warnings about the outage, not a traceback (or an error) per tick.
    assert not any("Traceback" in line for line in during), "\n".join(during)
    warnings = [line for line in during if " WARNING " in line or " ERROR " in line]
    assert 1 <= len(warnings) <= 3, "\n".join(during)


@pytest.mark.postgres
def test_a_scheduler_waiting_through_an_outage_neither_crashes_nor_runs_alongside_the_first(
        pg_url, pg_cluster, tmp_path, receiver):
    """After the outage both try for the lock: whichever gets it runs the due work, the other
    waits (and says so when it was the one that lost it). Never both, never neither."""
    _needs_the_throwaway_cluster(pg_cluster)
    first = second = None
    try:
        first, first_out = _scheduler(pg_url, tmp_path, "first", receiver.url)
        _until(lambda: "running background jobs every 1 s" in first_out.read_text(), 30,
               first_out.read_text, (first,))
        second, second_out = _scheduler(pg_url, tmp_path, "second", receiver.url)
        _until(lambda: "another scheduler is running against this database"
               in second_out.read_text(), 30, second_out.read_text, (second,))
        now = datetime.now(timezone.utc)
        with database_down(pg_cluster):
            time.sleep(3)  # three ticks of each against a stopped server
            for proc, out in ((first, first_out), (second, second_out)):
                assert proc.poll() is None, out.read_text()
        _enqueue_webhook(pg_url, "after-the-outage", now, due=now)
        _until(lambda: len(receiver.requests) == 1, 20,
               lambda: first_out.read_text() + second_out.read_text(), (first, second))
        time.sleep(2)  # two more ticks of each
        assert receiver.per_key() == {"after-the-outage": 1}
        assert _lock_is_taken(pg_url)
    finally:
        _stop(first, second)
    first_log, second_log = first_out.read_text(), second_out.read_text()
    took_over = "running background jobs" in second_log
    lost = "another scheduler holds it now" in first_log
    assert took_over == lost, first_log + second_log  # one holder, and the other knows it
    sender = second_log if took_over else first_log
    assert "outbox job after-the-outage (billing_webhook) sent on attempt 1" in sender
    assert "Traceback" not in first_log + second_log


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # make_app's database
def test_a_job_due_during_a_ten_minute_outage_of_the_apps_clock_is_sent_after_it(
        db_url, pg_cluster, make_app, clock, receiver, caplog):
    """The scheduler's own loop (cli.schedule_jobs, as `flask --app app scheduler` and the
    embedded service run it), in this process so the app's clock can move: the server is down
    for real while the clock goes through ten minutes and the job falls due."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from cli import schedule_jobs

    _needs_the_throwaway_cluster(pg_cluster)
    app = make_app(BILLING_WEBHOOK_URL=receiver.url, BILLING_WEBHOOK_SECRET=SECRET)
    engine = app.extensions["upgrade_chat"].engine
    start = clock.now
    _enqueue_webhook(db_url, "due-at-minute-5", start, due=start + timedelta(minutes=5))
    lock = SchedulerLock(engine)
    scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
    schedule_jobs(scheduler, app, 0.2, lock)
    caplog.set_level(logging.INFO)
    scheduler.start()
    try:
        _until(lambda: lock.held, 10)
        assert _lock_is_taken(db_url)
        time.sleep(0.5)  # a few ticks: nothing is due yet
        assert receiver.requests == []
        caplog.clear()
        with database_down(pg_cluster):
            for minute in range(1, 11):  # ten minutes of the app's clock, two ticks a minute
                clock.now = start + timedelta(minutes=minute)
                time.sleep(0.4)
            assert receiver.requests == []
        outage = list(caplog.records)
        _until(lambda: len(receiver.requests) == 1, 20,
               lambda: caplog.text)
        assert _job(db_url, "due-at-minute-5") == ("sent", 1)
        assert _lock_is_taken(db_url)  # held again: no second scheduler can start running
        time.sleep(1)  # five more ticks: sent once
        assert receiver.per_key() == {"due-at-minute-5": 1}
        assert scheduler.running
    finally:
        scheduler.shutdown(wait=True)
        lock.release()
    loud = [r for r in outage if r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in outage), caplog.text
    assert 1 <= len(loud) <= 3, [r.getMessage() for r in loud]
