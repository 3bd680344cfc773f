"""Calls in SQL (core.ports.CallRepository): stored, read and updated whole. What a call may do
is decided in core.calls; this module only persists and answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.ports import CallFacts, CallView
from storage.conversations import SqlContactRepository
from storage.models import AccountRow, CallRow, ThreadRow

SCHEDULED = "scheduled"
PENDING = ("scheduled", "ringing", "in_progress")


class SqlCallRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, *, account_id: int, contact_id: int, thread_id: int | None, reason: str,
            attempt: int, requested_at: datetime | None, scheduled_for: datetime,
            now: datetime) -> int:
        row = CallRow(account_id=account_id, contact_id=contact_id, thread_id=thread_id,
                      status=SCHEDULED, reason=reason, attempt=attempt, requested_at=requested_at,
                      scheduled_for=scheduled_for, created_at=now, updated_at=now)
        self.session.add(row)
        self.session.flush()
        return row.id

    def get(self, call_id: int, *, lock: bool = False) -> CallView | None:
        query = select(CallRow).where(CallRow.id == call_id)
        if lock:
            query = query.with_for_update()
        row = self.session.execute(query.execution_options(populate_existing=True)).scalar()
        return _view(row) if row else None

    def facts(self, call_id: int) -> CallFacts | None:
        call = self.get(call_id)
        if call is None:
            return None
        account = self.session.execute(
            select(AccountRow.timezone, AccountRow.vertical, AccountRow.plan)
            .where(AccountRow.id == call.account_id)).one()
        thread = self.session.execute(
            select(ThreadRow.state, ThreadRow.current_plan).where(ThreadRow.id == call.thread_id)
        ).first() if call.thread_id is not None else None
        contact = SqlContactRepository(self.session).contact_by_id(call.contact_id) \
            if call.contact_id is not None else None
        return CallFacts(call, contact, thread.state if thread else None, account.timezone,
                         account.vertical,
                         plan_changed=thread is not None and thread.current_plan != account.plan)

    def by_provider_id(self, provider_id: str) -> CallView | None:
        row = self.session.scalars(select(CallRow).where(CallRow.provider_id == provider_id)
                                   .limit(1)).first()
        return _view(row) if row else None

    def pending_for_contact(self, contact_id: int) -> CallView | None:
        row = self.session.scalars(select(CallRow).where(
            CallRow.contact_id == contact_id, CallRow.status.in_(PENDING))
            .order_by(CallRow.scheduled_for, CallRow.id).limit(1)).first()
        return _view(row) if row else None

    def waiting(self, *, contact_id: int | None = None,
                thread_id: int | None = None) -> list[CallView]:
        where = [CallRow.status == SCHEDULED]
        if contact_id is not None:
            where.append(CallRow.contact_id == contact_id)
        if thread_id is not None:
            where.append(CallRow.thread_id == thread_id)
        return [_view(r) for r in self.session.scalars(
            select(CallRow).where(*where).order_by(CallRow.id))]

    def cancel_waiting(self, *, contact_id: int | None = None, thread_id: int | None = None,
                       why: str, now: datetime) -> int:
        """Cancel the calls of a contact or a thread that wait to be placed; how many."""
        calls = self.waiting(contact_id=contact_id, thread_id=thread_id)
        for call in calls:
            self.save(replace(call, status="cancelled", note=why), now)
        return len(calls)

    def of_thread(self, thread_id: int) -> list[CallView]:
        return [_view(r) for r in self.session.scalars(
            select(CallRow).where(CallRow.thread_id == thread_id)
            .order_by(CallRow.created_at, CallRow.id))]

    def save(self, call: CallView, now: datetime) -> None:
        row = self.session.get(CallRow, call.id)
        if row is None:
            return
        row.status, row.scheduled_for, row.provider_id = call.status, call.scheduled_for, \
            call.provider_id
        row.requested_at, row.thread_id, row.note = call.requested_at, call.thread_id, call.note
        row.updated_at = now
        self.session.flush()


def _view(row: CallRow) -> CallView:
    return CallView(id=row.id, account_id=row.account_id, contact_id=row.contact_id,
                    thread_id=row.thread_id, status=row.status, reason=row.reason,
                    attempt=row.attempt, requested_at=row.requested_at,
                    scheduled_for=row.scheduled_for, provider_id=row.provider_id, note=row.note,
                    created_at=row.created_at, updated_at=row.updated_at)
