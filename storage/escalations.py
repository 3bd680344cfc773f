"""Escalations in SQL (core.ports.EscalationRepository): stored, locked, updated, and read as the
card a CSM sees. The lifecycle (claim, schedule a call, resolve, the buyer's follow-up) is
decided in core.csm; this module only persists and answers.

There is no column for the CSM who claimed an escalation, a requested call or the Slack post;
they are kept inside the escalation's `case` JSON under "claimed_by", "call_requested",
"resolved_by" and "slack" (the JSON is replaced whole, never mutated in place).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.ports import LANE_KEYS, EscalationCard, EscalationRecord
from storage.models import AccountRow, EscalationRow, MessageRow, ThreadRow

LAST_MESSAGES = 3
OPEN, CLAIMED = "open", "claimed"


class SqlEscalationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, account_id: int, thread_id: int | None, reason: str, case: dict[str, Any],
            now: datetime) -> int:
        row = EscalationRow(account_id=account_id, thread_id=thread_id, reason=reason, case=case,
                            status=OPEN, created_at=now)
        self.session.add(row)
        self.session.flush()
        return row.id

    def has_open(self, account_id: int, *, thread_id: int | None = None,
                 reason: str | None = None) -> bool:
        """An open escalation for the account (optionally: of this thread, for this reason)."""
        where = [EscalationRow.account_id == account_id, EscalationRow.status == OPEN]
        if thread_id is not None:
            where.append(EscalationRow.thread_id == thread_id)
        if reason is not None:
            where.append(EscalationRow.reason == reason)
        return (self.session.scalar(select(func.count()).select_from(EscalationRow)
                                    .where(*where)) or 0) > 0

    def of_account(self, account_id: int) -> list[EscalationRecord]:
        """The account's escalations, oldest first."""
        rows = self.session.scalars(select(EscalationRow)
                                    .where(EscalationRow.account_id == account_id)
                                    .order_by(EscalationRow.created_at, EscalationRow.id))
        return [_record(r) for r in rows]

    def account_of(self, escalation_id: int) -> int | None:
        return self.session.scalar(select(EscalationRow.account_id)
                                   .where(EscalationRow.id == escalation_id))

    def get(self, escalation_id: int, *, lock: bool = False) -> EscalationRecord | None:
        """The escalation (locked for this transaction with `lock`: take the account's lock
        first, the order every writer keeps)."""
        query = select(EscalationRow).where(EscalationRow.id == escalation_id)
        if lock:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        return _record(row) if row else None

    def update(self, escalation_id: int, *, status: str | None = None,
               **lane: dict[str, Any]) -> None:
        """Set the status and/or lane entries (claimed_by, call_requested, resolved_by, slack)."""
        unknown = set(lane) - set(LANE_KEYS)
        if unknown:
            raise ValueError(f"not an escalation lane entry: {sorted(unknown)}")
        row = self.session.get(EscalationRow, escalation_id)
        if row is None:
            return
        values: dict[str, Any] = {"case": {**(row.case or {}), **lane}}
        if status is not None:
            values["status"] = status
        self.session.execute(update(EscalationRow).where(EscalationRow.id == escalation_id)
                             .values(**values))
        self.session.expire(row)

    # the CSM's card (a read model) ------------------------------------------------------------
    def card(self, escalation_id: int) -> EscalationCard | None:
        row = self.session.get(EscalationRow, escalation_id)
        if row is None:
            return None
        return _card(self.session, row, _account_of(self.session, row))

    def recent_cards(self, limit: int = 50) -> list[EscalationCard]:
        """The latest escalations, unresolved first, newest first."""
        rows = self.session.scalars(select(EscalationRow).order_by(
            (EscalationRow.status == "resolved").asc(), EscalationRow.created_at.desc(),
            EscalationRow.id.desc()).limit(limit)).all()
        return [_card(self.session, r, _account_of(self.session, r)) for r in rows]

    def account_cards(self, account_id: int, limit: int = 5) -> list[EscalationCard]:
        """An account's latest escalations, newest first."""
        account = self.session.get(AccountRow, account_id)
        if account is None:
            return []  # nor has it escalations (they go with their account)
        rows = self.session.scalars(select(EscalationRow)
                                    .where(EscalationRow.account_id == account_id)
                                    .order_by(EscalationRow.created_at.desc(),
                                              EscalationRow.id.desc()).limit(limit)).all()
        return [_card(self.session, r, account) for r in rows]


def _record(row: EscalationRow) -> EscalationRecord:
    case = dict(row.case or {})
    return EscalationRecord(
        id=row.id, account_id=row.account_id, thread_id=row.thread_id, reason=row.reason,
        status=row.status, created_at=row.created_at,
        case={k: v for k, v in case.items() if k not in LANE_KEYS},
        lane={k: case[k] for k in LANE_KEYS if case.get(k)})


def _account_of(session: Session, row: EscalationRow) -> AccountRow:
    """The escalation's account: there is one (its foreign key deletes escalations with it)."""
    account = session.get(AccountRow, row.account_id)
    if account is None:
        raise LookupError(f"escalation {row.id} has no account {row.account_id}")
    return account


def _card(session: Session, row: EscalationRow, account: AccountRow) -> EscalationCard:
    case = dict(row.case or {})
    thread = session.get(ThreadRow, row.thread_id) if row.thread_id else None
    messages: tuple[str, ...] = ()
    if row.thread_id is not None:
        bodies = session.scalars(
            select(MessageRow.body).where(MessageRow.thread_id == row.thread_id,
                                          MessageRow.direction == "in")
            .order_by(MessageRow.at.desc(), MessageRow.id.desc()).limit(LAST_MESSAGES)).all()
        messages = tuple(reversed(bodies))
    open_here = session.scalar(select(func.count()).select_from(EscalationRow).where(
        EscalationRow.account_id == account.id, EscalationRow.status.in_((OPEN, CLAIMED))))
    return EscalationCard(
        id=row.id, status=row.status, reason=row.reason, created_at=row.created_at,
        case={k: v for k, v in case.items() if k not in LANE_KEYS},
        claimed_by=case.get("claimed_by"), call_requested=case.get("call_requested"),
        resolved_by=case.get("resolved_by"), slack=case.get("slack"),
        account=account.external_id, account_name=account.name, plan=account.plan,
        vertical=account.vertical, csat=account.csat, sentiment=account.sentiment,
        reported_escalations=account.open_escalations or 0, open_here=open_here or 0,
        thread_id=row.thread_id, thread_state=thread.state if thread else None,
        last_messages=messages)
