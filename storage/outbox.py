"""The job outbox: work that must happen after a commit, at least once, retried with backoff.

A use case calls `enqueue` inside its own transaction, so the job exists if and only if the
change that wants it was committed. An `OutboxDispatcher` (a scheduled job, never a web request)
later claims due jobs and hands each to the sender registered for its kind.

Delivery is at least once, never exactly once: a sender can succeed and the process die before
the outcome is written, or a receiver can apply a request whose answer never arrives. The job is
then sent again, with the same `key`. Every receiver must therefore dedupe by that idempotency
key (the webhook sender passes it as the `Idempotency-Key` header).

How a job moves:

- claim: in a short transaction, due rows (pending, `next_attempt_at` <= now) are taken, oldest
  first; their `attempts` goes up by one and `next_attempt_at` moves to now + lease. The lease is
  what brings a job back if its dispatcher dies mid-send. On PostgreSQL the rows are selected
  `FOR UPDATE SKIP LOCKED`, so dispatchers running at once never take the same row; on SQLite
  the writer lock (BEGIN IMMEDIATE, see storage.db) serializes claims. The lease should exceed
  the time a whole batch can take (limit x the senders' timeout); a batch that outlives it
  stops, leaving the rest to the next run.
- send: the sender runs outside any transaction: no database lock is held during network I/O.
- record: in a new transaction, success marks the job sent; an exception schedules the next try
  after base_delay * 2**(attempts - 1), capped at max_delay; `PermanentFailure`, an unknown kind
  or the last allowed attempt marks it failed.

`attempts` counts sends started, so a job whose dispatcher dies every time (a poison job) still
fails after max_attempts instead of coming back forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.jobs import OutboxJob, PermanentFailure
from storage.models import OutboxRow

log = logging.getLogger(__name__)

PENDING, SENT, FAILED = "pending", "sent", "failed"
MAX_ERROR_CHARS = 500
_MAX_DOUBLINGS = 30  # keeps base_delay * 2**n inside timedelta's range whatever max_attempts is


def enqueue(session: Session, kind: str, key: str, payload: dict, now: datetime) -> bool:
    """Add a pending job inside the caller's transaction; False if `key` is already taken.

    The key makes enqueueing idempotent: a retried request that enqueues the same job again
    changes nothing (INSERT ... ON CONFLICT (key) DO NOTHING; the first payload stays).
    `payload` must be JSON-serializable and should carry no more personal data than the
    receiver needs.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (insert(OutboxRow)
            .values(kind=kind, key=key, payload=payload, status=PENDING, attempts=0,
                    next_attempt_at=now, created_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(OutboxRow.id))
    return session.connection().execute(stmt).first() is not None


@dataclass
class DispatchStats:
    """What one `dispatch_due` call did: jobs sent, scheduled for another try, failed for good."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


Sender = Callable[[OutboxJob], None]


class OutboxDispatcher:
    """Sends due outbox jobs through the sender registered for each job's kind.

    Safe to run from several threads or processes at once. A sender returns normally on success,
    raises `PermanentFailure` for an error that retrying cannot fix, and any other exception
    (a timeout, a 503) to be retried later.
    """

    def __init__(self, engine: Engine, senders: Mapping[str, Sender],
                 clock: Callable[[], datetime], *, max_attempts: int = 8,
                 base_delay: timedelta = timedelta(seconds=10),
                 max_delay: timedelta = timedelta(hours=1),
                 lease: timedelta = timedelta(minutes=5)) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay <= timedelta(0) or max_delay < base_delay or lease <= timedelta(0):
            raise ValueError("delays and lease must be positive, max_delay >= base_delay")
        self._engine = engine
        self._senders = dict(senders)
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lease = lease

    def dispatch_due(self, limit: int = 50) -> DispatchStats:
        """Claim up to `limit` due jobs and send each; one job's error never stops the others."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        stats = DispatchStats()
        claimed, stats.failed = self._claim(limit)
        for n, (job, lease_until) in enumerate(claimed):
            if self._clock() >= lease_until:
                # The batch outlived its lease (slow receivers): the rest may be another
                # dispatcher's by now. Leave them; they are due again already.
                log.warning("outbox batch outlived its lease; %d jobs left for the next run",
                            len(claimed) - n)
                break
            error = self._send(job)
            try:
                self._record(job, lease_until, error, stats)
            except Exception:
                # The job stays leased and comes back when the lease ends (at least once).
                log.exception("outbox job %s (%s) attempt %s: could not record the outcome",
                              job.id, job.kind, job.attempts)
        return stats

    def _claim(self, limit: int) -> tuple[list[tuple[OutboxJob, datetime]], int]:
        now = self._clock()
        lease_until = now + self._lease
        with self._engine.begin() as conn:
            rows = conn.execute(
                select(OutboxRow.id, OutboxRow.kind, OutboxRow.key, OutboxRow.payload,
                       OutboxRow.attempts)
                .where(OutboxRow.status == PENDING, OutboxRow.next_attempt_at <= now)
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)  # rendered on PostgreSQL, omitted on SQLite
            ).all()
            # Rows already at max_attempts were claimed before and never recorded: their
            # dispatcher died each time. Give up on them rather than send once more.
            spent = [r for r in rows if r.attempts >= self._max_attempts]
            due = [r for r in rows if r.attempts < self._max_attempts]
            for r in spent:
                conn.execute(update(OutboxRow).where(OutboxRow.id == r.id).values(
                    status=FAILED,
                    last_error=f"gave up after {r.attempts} attempts; no outcome recorded for "
                               "the last (its dispatcher stopped mid-send)"))
            if due:
                conn.execute(update(OutboxRow).where(OutboxRow.id.in_([r.id for r in due]))
                             .values(attempts=OutboxRow.attempts + 1, next_attempt_at=lease_until))
        for r in spent:
            log.error("outbox job %s (%s) failed for good after %s attempts: no outcome "
                      "recorded for the last", r.id, r.kind, r.attempts)
        jobs = [(OutboxJob(id=r.id, kind=r.kind, key=r.key, payload=r.payload,
                           attempts=r.attempts + 1), lease_until) for r in due]
        return jobs, len(spent)

    def _send(self, job: OutboxJob) -> Exception | None:
        sender = self._senders.get(job.kind)
        if sender is None:
            return PermanentFailure(f"no sender is configured for outbox kind {job.kind!r}")
        try:
            sender(job)
        except Exception as exc:  # any error is this job's outcome, never the batch's
            return exc
        return None

    def _record(self, job: OutboxJob, lease_until: datetime, error: Exception | None,
                stats: DispatchStats) -> None:
        now = self._clock()
        if error is None:
            with self._engine.begin() as conn:
                conn.execute(update(OutboxRow)
                             .where(OutboxRow.id == job.id, OutboxRow.status != SENT)
                             .values(status=SENT, sent_at=now))
            stats.sent += 1
            log.info("outbox job %s (%s) sent on attempt %s", job.id, job.kind, job.attempts)
            return
        text = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        final = isinstance(error, PermanentFailure) or job.attempts >= self._max_attempts
        values: dict[str, Any] = {"last_error": text}
        if final:
            values["status"] = FAILED
        else:
            doublings = min(job.attempts - 1, _MAX_DOUBLINGS)
            values["next_attempt_at"] = now + min(self._max_delay,
                                                  self._base_delay * 2 ** doublings)
        with self._engine.begin() as conn:
            # Only while our claim stands: if the lease ran out and another dispatcher took the
            # job, its outcome (perhaps "sent") must not be overwritten by this late one.
            recorded = conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id == job.id, OutboxRow.status == PENDING,
                       OutboxRow.next_attempt_at == lease_until)
                .values(**values)).rowcount
        if not recorded:
            log.warning("outbox job %s (%s) attempt %s: its lease ran out and another attempt "
                        "took over; this outcome is not recorded", job.id, job.kind, job.attempts)
            return
        if final:
            stats.failed += 1
            log.error("outbox job %s (%s) failed for good on attempt %s: %s",
                      job.id, job.kind, job.attempts, text)
        else:
            stats.retried += 1
            log.warning("outbox job %s (%s) attempt %s failed, next try at %s: %s",
                        job.id, job.kind, job.attempts, values["next_attempt_at"].isoformat(),
                        text)
