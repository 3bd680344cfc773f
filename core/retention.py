"""Retention: message bodies older than the configured retention are purged; the rows stay.

The scheduler runs `purge_expired_bodies` on every pass (`flask --app app jobs run`). A body
stored more than `retention` ago is replaced by the marker `PURGED` and the message marked
redacted; its row (direction, kind, channel, status, times, provider id) stays, so every count
stays what it was. The age is the message's own, whatever its thread's state: the retention is
a promise about the oldest text kept, and nothing the service decides reads an old body (a
live thread's confirmation figures are on the thread, its case card is computed anew). The one
exception: a message still queued to go out keeps its body until it is sent or withdrawn, or
the buyer would be sent the marker.

One pass purges at most `batches` batches of `batch` messages, oldest first, each in its own
unit of work: the accounts of a batch's messages are locked first, in id order (core.locking),
then their bodies replaced. What is left waits for the next pass.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from core.locking import lock_accounts
from core.ports import UnitOfWork
from core.retry import retrying

PURGED = "[purged]"  # what a body past the retention says instead
BATCH = 500
BATCHES = 4


def purge_expired_bodies(uows: Callable[[], UnitOfWork], retention: timedelta, now: datetime,
                         *, batch: int = BATCH, batches: int = BATCHES) -> int:
    """Purge the bodies of messages stored before `now - retention`, in at most `batches`
    batches of `batch`; how many were purged."""
    if retention <= timedelta(0):
        raise ValueError("a retention is a positive duration (none: keep bodies forever)")
    before = now - retention
    purged = 0
    for _ in range(batches):
        found, done = retrying(lambda: _purge_batch(uows(), before, batch, now))
        purged += done
        if found < batch:
            break
    return purged


def _purge_batch(uow: UnitOfWork, before: datetime, batch: int,
                 now: datetime) -> tuple[int, int]:
    """One batch: (messages found, bodies purged)."""
    with uow:
        expired = uow.messages.expired_bodies(before, batch)
        if not expired:
            return 0, 0
        lock_accounts(uow, (m.account_id for m in expired if m.account_id is not None))
        done = uow.messages.redact([m.id for m in expired], PURGED, before, now)
        uow.commit()
        return len(expired), done
