"""The audit trail's storage (core/audit.py says what it is): one event per transaction of its
own, numbered and chained under a lock so concurrent writers never fork the chain.

The lock: on PostgreSQL a transaction-level advisory lock (held to the commit), on SQLite the
database's write lock (every transaction here begins IMMEDIATE, storage/db.py). Under it the
last event is read and the next appended with the following number and the hash over both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, text

from core.audit import GENESIS, AuditEvent, Outcome, StoredAuditEvent, chain_hash
from storage.models import AuditEventRow

# pg_advisory_xact_lock's key for the chain: any constant no other lock in the service uses.
CHAIN_LOCK = 0x61756469  # "audi"
PAGE = 1000


def _stored(row: Any) -> StoredAuditEvent:
    return StoredAuditEvent(row.seq, AuditEvent(
        at=row.at, actor=row.actor, source=row.source, action=row.action,
        object_type=row.object_type, object_id=row.object_id, outcome=Outcome(row.outcome),
        address=row.address, detail=dict(row.detail or {})), row.prev_hash, row.hash)


class SqlAuditTrail:
    """core.ports.AuditTrail on SQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, event: AuditEvent) -> StoredAuditEvent:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK})
            last = conn.execute(select(AuditEventRow.seq, AuditEventRow.hash)
                                .order_by(AuditEventRow.seq.desc()).limit(1)).first()
            seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
            digest = chain_hash(prev, seq, event)
            conn.execute(AuditEventRow.__table__.insert().values(
                seq=seq, at=event.at, actor=event.actor[:200], source=event.source,
                address=event.address, action=event.action, object_type=event.object_type,
                object_id=event.object_id, outcome=str(event.outcome), detail=dict(event.detail),
                prev_hash=prev, hash=digest))
        return StoredAuditEvent(seq, event, prev, digest)

    def events(self, start: datetime | None = None, end: datetime | None = None, *,
               after_seq: int = 0) -> Iterator[StoredAuditEvent]:
        """Events in sequence order, `start` <= at < `end` where given, read a page at a time."""
        while True:
            query = select(AuditEventRow).where(AuditEventRow.seq > after_seq)
            if start is not None:
                query = query.where(AuditEventRow.at >= start)
            if end is not None:
                query = query.where(AuditEventRow.at < end)
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(AuditEventRow.seq).limit(PAGE)).all()
            for row in rows:
                yield _stored(row)
            if len(rows) < PAGE:
                return
            after_seq = rows[-1].seq
