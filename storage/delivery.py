"""The outbound messages that the outbox's "message" jobs deliver: their facts and outcomes in SQL.

`SqlOutboxRepository` (a unit of work's `outbox`, the ports' `OutboxRepository`) only reads and
writes rows; what the facts mean and which outcome to record is core.delivery's. The jobs
themselves, their claim, lease and backoff are storage.outbox's; the `messages` row stays the
record of the message (status queued / sent / failed / cancelled, the provider's id and delivery
status, `attempts` and `last_error` mirrored from its job).

A failure or a retry changes a message only while it is queued (a sent, cancelled or failed
message stays so); a send is recorded over the statuses core.delivery names.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Executable, Select, bindparam, func, select, update
from sqlalchemy.orm import Session

from core.ports import MessageFacts, ThreadView
from storage.conversations import _thread
from storage.models import AccountRow, ContactRow, MessageRow, ThreadRow

QUEUED, SENT = "queued", "sent"
MAX_ERROR_CHARS = 500

# Built once with named parameters: a statement tree built and hashed per message cost more than
# the database's work (bench/outbox.py).
_M, _C, _T = MessageRow.__table__, ContactRow.__table__, ThreadRow.__table__
_A = AccountRow.__table__
_FACTS = (
    select(_M.c.id, _M.c.status, _M.c.channel, _M.c.kind, _M.c.body, _M.c.thread_id,
           _T.c.state.label("thread_state"),
           func.coalesce(_T.c.account_id, _C.c.account_id).label("account_id"),
           _C.c.id.label("contact_id"), _C.c.opted_out_at, _C.c.whatsapp_opt_in_at, _C.c.phone,
           _C.c.whatsapp, _C.c.whatsapp_inbound_at, _A.c.timezone)
    .select_from(_M.outerjoin(_C, _C.c.id == _M.c.contact_id)
                 .outerjoin(_T, _T.c.id == _M.c.thread_id)
                 .outerjoin(_A, _A.c.id == func.coalesce(_T.c.account_id, _C.c.account_id)))
    .where(_M.c.id.in_(bindparam("ids", expanding=True)), _M.c.direction == "out"))
_CONTACT_ACCOUNT: Select[tuple[int]] = select(_C.c.account_id).where(_C.c.id == bindparam("row_id"))
_LOCK_THREAD = select(_T).where(_T.c.id == bindparam("row_id")).with_for_update()
_MARK_SENT = (update(_M)
              .where(_M.c.id == bindparam("row_id"),
                     _M.c.status.in_(bindparam("if_status", expanding=True)))
              .values(status=SENT, provider_id=bindparam("new_provider_id"),
                      sent_at=bindparam("now"), delivery_status="queued",
                      attempts=bindparam("new_attempts"), last_error=None))
_QUEUED_ROW = (_M.c.id == bindparam("row_id"), _M.c.status == QUEUED)
_SETTLE = update(_M).where(*_QUEUED_ROW).values(status=bindparam("new_status"),
                                                last_error=bindparam("error"),
                                                attempts=bindparam("new_attempts"))
_NOTE = update(_M).where(*_QUEUED_ROW).values(last_error=bindparam("error"),
                                              attempts=bindparam("new_attempts"))


class SqlOutboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _run(self, statement: Executable, **params: object) -> CursorResult[Any]:
        return self.session.connection().execute(statement, params)

    def message_facts(self, message_ids: Iterable[int]) -> dict[int, MessageFacts]:
        """The outbound messages with these ids, with their contact's reach and consent and their
        thread's state as they stand now (no lock: a claim's check, re-done at the next claim)."""
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        return {r.id: MessageFacts(
            id=r.id, status=r.status, channel=r.channel, kind=r.kind, body=r.body,
            thread_id=r.thread_id, thread_state=r.thread_state, account_id=r.account_id,
            contact_id=r.contact_id, opted_out=r.opted_out_at is not None,
            whatsapp_opt_in_at=r.whatsapp_opt_in_at, phone=r.phone,
            whatsapp=r.whatsapp, whatsapp_inbound_at=r.whatsapp_inbound_at,
            timezone=r.timezone)
            for r in self._run(_FACTS, ids=ids)}

    def contact_account(self, contact_id: int) -> int | None:
        """The contact's account id (read fresh, to be locked before the contact is read)."""
        return self.session.connection().scalar(_CONTACT_ACCOUNT, {"row_id": contact_id})

    def lock_thread(self, thread_id: int) -> ThreadView | None:
        """The thread, its row locked (after its account's: the order every writer keeps)."""
        row = self._run(_LOCK_THREAD, row_id=thread_id).first()
        return _thread(row) if row else None

    def mark_sent(self, message_id: int, provider_id: str, attempts: int, now: datetime, *,
                  if_status: Iterable[str]) -> bool:
        """Sent, with the provider's id (`delivery_status` "queued", the provider's first word;
        status callbacks move it on), if its status is one of `if_status` (checked and changed
        in one statement)."""
        return bool(self._run(_MARK_SENT, row_id=message_id, new_provider_id=provider_id, now=now,
                              new_attempts=attempts, if_status=list(if_status)).rowcount)

    def settle(self, message_id: int, status: str, error: str, attempts: int) -> bool:
        """Failed or cancelled for good, with why, if it was still queued."""
        return bool(self._run(_SETTLE, row_id=message_id, new_status=status,
                              error=error[:MAX_ERROR_CHARS], new_attempts=attempts).rowcount)

    def note_attempt(self, message_id: int, error: str, attempts: int) -> bool:
        """An attempt that failed for now (or was held): still queued, with the error."""
        return bool(self._run(_NOTE, row_id=message_id, error=error[:MAX_ERROR_CHARS],
                              new_attempts=attempts).rowcount)
