"""The outbox: work that must happen after a commit, at least once, retried with backoff.

One table (`outbox`) and one dispatcher for every kind of job: the billing webhook, CSM notices
to Slack (or the log), and outbound phone messages (kind "message", one job per queued SMS or
WhatsApp row of `messages`, which stays the record of the message; core.delivery).

A use case calls `enqueue` inside its own transaction, so the job exists if and only if the
change that wants it was committed. An `OutboxDispatcher` (a scheduled job, never a web request)
later claims due jobs and hands each to the sender registered for its kind: a plain callable
(core.jobs.Sender), or a handler (core.jobs.JobHandler) for a kind whose subject lives in other
tables, which also decides at claim time whether the job may still go out (`prepare`) and records
its outcome there (`record`), in the dispatcher's transactions.

Delivery is at least once, never exactly once: a sender can succeed and the process die before
the outcome is written, or a receiver can apply a request whose answer never arrives. The job is
then sent again, with the same `key`. Every receiver must therefore dedupe by that idempotency
key (the webhook sender passes it as the `Idempotency-Key` header); Twilio has none, which is why
its client's timeout is short (channels.twilio_outbound).

How a job moves:

- claim: in a short transaction, due rows (pending, `next_attempt_at` <= now) are taken, oldest
  first. On PostgreSQL the rows are selected `FOR UPDATE SKIP LOCKED`, so dispatchers running at
  once never take the same row; on SQLite the writer lock (BEGIN IMMEDIATE, see storage.db)
  serializes claims. Each kind's handler then says which may go out: the others end there
  (`Settle`: cancelled or failed, no attempt counted), as does a job of an unknown kind (failed).
  A job that has had `max_attempts` sends already fails (a poison job: its dispatcher died each
  time). The rest are leased: `attempts` goes up by one and `next_attempt_at` moves to now +
  lease. The lease is what brings a job back if its dispatcher dies mid-send; it should exceed
  the time a whole batch can take (limit x the senders' timeout), and a batch that outlives it
  stops, leaving the rest to the next run.
- send: the sender runs outside any transaction: no database lock is held during network I/O.
- record: in a new transaction that locks the job row first, success marks the job sent (always:
  it went out); an exception schedules the next try after the kind's backoff; `PermanentFailure`
  or the last allowed attempt marks it failed. A failure is written only while the claim is
  still current (pending, `next_attempt_at` still our lease): if the lease ran out and another
  dispatcher took the job, its outcome wins. `AccountRefused` (the provider refused our
  credentials) fails nothing: the job and the batch's other jobs of its kind are given back,
  due again after `hold_for`, their attempt not counted. `ProviderBusy` (the provider asked us
  to wait: 429, 503) is held the same way, for its Retry-After (core.jobs.ProviderBusy.wait).
  Either way the dispatcher then claims no job of that kind until the hold ends, so a provider
  that asked for a pause is not asked again before it (within this dispatcher, which the
  scheduler keeps from pass to pass; a separate `jobs run` process only finds the held jobs not
  yet due).

`attempts` counts sends started, so a job whose dispatcher dies every time (a poison job) still
fails after max_attempts instead of coming back forever.

Locks: the dispatcher's transactions take the job row first, then whatever its handler needs
(for a message: the account, the thread, the message: the order every writer keeps). Use cases
only ever insert jobs, never wait on an existing job row, so the two orders cannot form a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.jobs import (CANCELLED, FAILED, HELD, RETRY, SENT, AccountRefused, Backoff, JobHandler,
                       JobResult, Later, OutboxJob, PermanentFailure, ProviderBusy, Sender, Settle,
                       describe)
from core.ports import UnitOfWork
from storage.models import OutboxRow
from storage.uow import SqlUnitOfWork

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing's own from Python 3.13

log = logging.getLogger(__name__)

PENDING = "pending"  # then sent, failed or cancelled

# The dispatcher's statements, built once with named parameters (building and hashing a new
# statement tree per job cost SQLAlchemy more than the database's work; bench/outbox.py).
_JOBS = OutboxRow.__table__
_CLAIM = (select(_JOBS.c.id, _JOBS.c.kind, _JOBS.c.key, _JOBS.c.payload, _JOBS.c.attempts)
          .where(_JOBS.c.status == PENDING, _JOBS.c.next_attempt_at <= bindparam("now"),
                 _JOBS.c.kind.not_in(bindparam("paused", expanding=True)))
          .order_by(_JOBS.c.next_attempt_at, _JOBS.c.id)
          .limit(bindparam("limit"))
          .with_for_update(skip_locked=True))  # rendered on PostgreSQL, omitted on SQLite
_LEASE = (update(_JOBS).where(_JOBS.c.id.in_(bindparam("ids", expanding=True)))
          .values(attempts=_JOBS.c.attempts + 1, next_attempt_at=bindparam("lease_until")))
_END = (update(_JOBS).where(_JOBS.c.id == bindparam("job_id"))
        .values(status=bindparam("new_status"), last_error=bindparam("error")))
_LATER = (update(_JOBS).where(_JOBS.c.id == bindparam("job_id"))
          .values(next_attempt_at=bindparam("next_at"), last_error=bindparam("error")))
_SENT = (update(_JOBS).where(_JOBS.c.id == bindparam("job_id"), _JOBS.c.status != SENT)
         .values(status=SENT, sent_at=bindparam("now")))
# Only while the claim stands: if the lease ran out and another dispatcher took the job, its
# outcome (perhaps "sent") must not be overwritten by this late one.
_OURS = (_JOBS.c.id == bindparam("job_id"), _JOBS.c.status == PENDING,
         _JOBS.c.next_attempt_at == bindparam("lease_until"))
_FAIL = update(_JOBS).where(*_OURS).values(status=FAILED, last_error=bindparam("error"))
_RETRY = update(_JOBS).where(*_OURS).values(next_attempt_at=bindparam("next_at"),
                                            last_error=bindparam("error"))
_HOLD = update(_JOBS).where(*_OURS).values(next_attempt_at=bindparam("next_at"),
                                           attempts=_JOBS.c.attempts - 1,
                                           last_error=bindparam("error"))


def enqueue(session: Session, kind: str, key: str, payload: dict[str, Any], now: datetime, *,
            due: datetime | None = None) -> bool:
    """Add a pending job inside the caller's transaction, due at `due` (default: now); False if
    `key` is already taken.

    The key makes enqueueing idempotent: a retried request that enqueues the same job again
    changes nothing (INSERT ... ON CONFLICT (key) DO NOTHING; the first payload stays).
    `payload` must be JSON-serializable and should carry no more personal data than the
    receiver needs.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (insert(OutboxRow)
            .values(kind=kind, key=key, payload=payload, status=PENDING, attempts=0,
                    next_attempt_at=due or now, created_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(OutboxRow.id))
    return session.connection().execute(stmt).first() is not None


@dataclass
class DispatchStats:
    """What one `dispatch_due` call did: jobs sent, scheduled for another try, failed for good,
    cancelled (nothing to send any more), held (given back untried: the provider refused
    our account), and put off at claim (`Later`: not yet). `claimed` is how many due jobs the
    claim took, whatever became of them."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    held: int = 0
    later: int = 0  # not yet (quiet hours now): due again later, no attempt counted
    claimed: int = field(default=0, compare=False)  # what was done is compared, not looked at

    def __add__(self, other: DispatchStats) -> DispatchStats:
        return DispatchStats(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                                for f in fields(self)})


class _Plain:
    """A plain sender as a handler: nothing to check at claim, nothing to record beside the job."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    def prepare(self, uow: UnitOfWork, jobs: list[OutboxJob], now: datetime) -> dict[int, Any]:
        return {job.id: None for job in jobs}

    def send(self, job: OutboxJob, prepared: Any) -> Any:
        return self._sender(job)

    def record(self, uow: UnitOfWork, job: OutboxJob, prepared: Any, outcome: JobResult,
               now: datetime) -> None:
        pass


class _NoSender(_Plain):
    def __init__(self) -> None:
        super().__init__(lambda job: None)

    def prepare(self, uow: UnitOfWork, jobs: list[OutboxJob], now: datetime) -> dict[int, Any]:
        return {job.id: Settle(FAILED, f"no sender is configured for outbox kind {job.kind!r}")
                for job in jobs}


_NO_SENDER = _NoSender()


def _is_handler(sender: Sender | JobHandler) -> TypeIs[JobHandler]:
    """A handler has `prepare` (and `record`); a plain sender is only called."""
    return hasattr(sender, "prepare")


@dataclass(frozen=True)
class _Claimed:
    job: OutboxJob
    lease_until: datetime
    prepared: Any


class OutboxDispatcher:
    """Sends due outbox jobs through the sender registered for each job's kind.

    Safe to run from several threads or processes at once. `senders` maps a kind to a plain
    sender (a callable taking the job) or a `JobHandler`. The retry policy is `max_attempts`,
    `base_delay` and `max_delay`, or a kind's own `Backoff` in `backoffs`.
    """

    def __init__(self, engine: Engine, senders: Mapping[str, Sender | JobHandler],
                 clock: Callable[[], datetime], *, max_attempts: int = 8,
                 base_delay: timedelta = timedelta(seconds=10),
                 max_delay: timedelta = timedelta(hours=1),
                 lease: timedelta = timedelta(minutes=5),
                 hold_for: timedelta = timedelta(minutes=5),
                 backoffs: Mapping[str, Backoff] | None = None) -> None:
        if lease <= timedelta(0) or hold_for <= timedelta(0):
            raise ValueError("the lease and hold_for must be positive")
        self._engine = engine
        self._handlers: dict[str, JobHandler] = {
            kind: sender if _is_handler(sender) else _Plain(sender)
            for kind, sender in senders.items()}
        self._clock = clock
        self._backoff = Backoff(max_attempts, base_delay, max_delay)
        self._backoffs = dict(backoffs or {})
        self._lease = lease
        self._hold_for = hold_for
        # Kinds whose provider refused our account or asked us to wait: not claimed until then.
        self._paused: dict[str, datetime] = {}

    def dispatch_due(self, limit: int = 50) -> DispatchStats:
        """Claim up to `limit` due jobs and send each; one job's error never stops the others
        (a refused account stops the rest of its kind in this batch, nothing else)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        stats = DispatchStats()
        claimed = self._claim(limit, stats)
        held_kinds: set[str] = set()
        for n, c in enumerate(claimed):
            if c.job.kind in held_kinds:
                continue
            if self._clock() >= c.lease_until:
                # The batch outlived its lease (slow receivers): the rest may be another
                # dispatcher's by now. Leave them; they are due again already.
                log.warning("outbox batch outlived its lease; %d jobs left for the next run",
                            len(claimed) - n)
                break
            result, error = self._send(c)
            try:
                if isinstance(error, (AccountRefused, ProviderBusy)):
                    held_kinds.add(c.job.kind)
                    self._hold([x for x in claimed[n:] if x.job.kind == c.job.kind], error,
                               stats)
                else:
                    self._record(c, result, error, stats)
            except Exception:
                # The job stays leased and comes back when the lease ends (at least once).
                log.exception("outbox job %s (%s) attempt %s: could not record the outcome",
                              c.job.key, c.job.kind, c.job.attempts)
        return stats

    def _handler(self, kind: str) -> JobHandler:
        return self._handlers.get(kind, _NO_SENDER)

    def _policy(self, kind: str) -> Backoff:
        return self._backoffs.get(kind, self._backoff)

    def _claim(self, limit: int, stats: DispatchStats) -> list[_Claimed]:
        now = self._clock()
        lease_until = now + self._lease
        ended: list[tuple[OutboxJob, str, str]] = []  # (job, status, reason), logged after commit
        leased: list[_Claimed] = []
        paused = [kind for kind, until in list(self._paused.items()) if until > now]
        with SqlUnitOfWork(self._engine) as uow:
            conn = uow.session.connection()
            rows = conn.execute(_CLAIM, {"now": now, "limit": limit, "paused": paused}).all()
            stats.claimed = len(rows)
            jobs = [OutboxJob(id=r.id, kind=r.kind, key=r.key, payload=r.payload,
                              attempts=r.attempts) for r in rows]
            prepared: dict[int, Any] = {}
            for kind in dict.fromkeys(job.kind for job in jobs):
                prepared.update(self._handler(kind).prepare(
                    uow, [job for job in jobs if job.kind == kind], now))
            for job in jobs:
                ready = prepared.get(job.id)
                spent = job.attempts >= self._policy(job.kind).max_attempts
                if spent and not isinstance(ready, Settle):
                    # Claimed before and never recorded: its dispatcher died each time. Give up
                    # on it rather than send once more.
                    ready = Settle(FAILED, f"gave up after {job.attempts} attempts; no outcome "
                                           "recorded for the last (its dispatcher stopped "
                                           "mid-send)")
                if isinstance(ready, Later):  # not yet: due again then, no attempt counted
                    conn.execute(_LATER, {"job_id": job.id, "next_at": ready.at,
                                          "error": ready.reason})
                    stats.later += 1
                elif isinstance(ready, Settle):
                    conn.execute(_END, {"job_id": job.id, "new_status": ready.status,
                                        "error": ready.reason})
                    self._handler(job.kind).record(
                        uow, job, None,
                        JobResult(ready.status, job.attempts, error=ready.reason),
                        now)
                    ended.append((job, ready.status, ready.reason))
                else:
                    leased.append(_Claimed(
                        OutboxJob(id=job.id, kind=job.kind, key=job.key, payload=job.payload,
                                  attempts=job.attempts + 1), lease_until, ready))
            if leased:
                conn.execute(_LEASE, {"ids": [c.job.id for c in leased],
                                      "lease_until": lease_until})
            uow.commit()
        for job, status, reason in ended:
            if status == CANCELLED:
                stats.cancelled += 1
                log.info("outbox job %s (%s) cancelled at claim: %s", job.key, job.kind, reason)
            else:
                stats.failed += 1
                log.error("outbox job %s (%s) failed at claim: %s", job.key, job.kind, reason)
        return leased

    def _send(self, c: _Claimed) -> tuple[Any, Exception | None]:
        try:
            return self._handler(c.job.kind).send(c.job, c.prepared), None
        except Exception as exc:  # any error is this job's outcome, never the batch's
            return None, exc

    def _record(self, c: _Claimed, result: Any, error: Exception | None,
                stats: DispatchStats) -> None:
        job, now = c.job, self._clock()
        handler = self._handler(job.kind)
        with SqlUnitOfWork(self._engine) as uow:
            conn = uow.session.connection()
            # The job row first (see the module's note on locks).
            if error is None:  # it went out: recorded whoever holds the claim now
                conn.execute(_SENT, {"job_id": job.id, "now": now})
                handler.record(uow, job, c.prepared, JobResult(SENT, job.attempts, result=result),
                               now)
                uow.commit()
                stats.sent += 1
                log.info("outbox job %s (%s) sent on attempt %s", job.key, job.kind,
                         job.attempts)
                return
            text = describe(error)
            policy = self._policy(job.kind)
            final = isinstance(error, PermanentFailure) or job.attempts >= policy.max_attempts
            next_at = now + policy.delay(job.attempts)
            current = bool(conn.execute(_FAIL if final else _RETRY, {
                "job_id": job.id, "lease_until": c.lease_until, "error": text,
                "next_at": next_at}).rowcount)
            handler.record(uow, job, c.prepared,
                           JobResult(FAILED if final else RETRY, job.attempts, error=text,
                                   cause=error, current=current), now)
            uow.commit()
        if not current:
            log.warning("outbox job %s (%s) attempt %s: its lease ran out and another attempt "
                        "took over; this outcome is not recorded", job.key, job.kind,
                        job.attempts)
        elif final:
            stats.failed += 1
            log.error("outbox job %s (%s) failed for good on attempt %s: %s",
                      job.key, job.kind, job.attempts, text)
        else:
            stats.retried += 1
            log.warning("outbox job %s (%s) attempt %s failed, next try at %s: %s",
                        job.key, job.kind, job.attempts, next_at.isoformat(), text)

    def _hold(self, rest: list[_Claimed], error: AccountRefused | ProviderBusy,
              stats: DispatchStats) -> None:
        """The provider refused our account, or asked us to wait: give this job and the rest of
        its kind back, untried, and claim none of the kind until the hold ends."""
        now = self._clock()
        kind = rest[0].job.kind
        if isinstance(error, ProviderBusy):
            next_at = now + error.wait(self._policy(kind))
        else:
            next_at = now + self._hold_for
        self._paused[kind] = max(next_at, self._paused.get(kind, next_at))
        text = describe(error)
        held = 0
        with SqlUnitOfWork(self._engine) as uow:
            conn = uow.session.connection()
            for c in rest:
                if conn.execute(_HOLD, {"job_id": c.job.id, "lease_until": c.lease_until,
                                        "next_at": next_at, "error": text}).rowcount:
                    held += 1
                    self._handler(c.job.kind).record(
                        uow, c.job, c.prepared, JobResult(HELD, c.job.attempts - 1, error=text,
                                                        cause=error), now)
            uow.commit()
        stats.held += held
        log.log(logging.WARNING if isinstance(error, ProviderBusy) else logging.ERROR,
                "%s; %d %s jobs held, not failed, until %s", text, held, kind,
                next_at.isoformat())
