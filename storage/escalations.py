"""The CSM lane's SQL: escalations with what a CSM needs to see, and claim / call / resolve.

Every change runs in one short transaction that locks the account row first (the order every
writer keeps: account, then thread and the rest) and then the escalation row, so two clicks on
the same button, a Slack retry and the sandbox page acting at once change an escalation once:
the second finds the state already moved and returns `changed=False`.

There is no column for the CSM who claimed an escalation, a requested call or the Slack post;
they are kept inside the escalation's `case` JSON under "claimed_by", "call_requested",
"resolved_by" and "slack" (the JSON is replaced whole, never mutated in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from core.delivery import queue_message
from storage.conversations import SqlConversationRepository
from storage.models import AccountRow, EscalationRow, MessageRow, ThreadRow
from storage.uow import SqlJobQueue

LAST_MESSAGES = 3
OPEN, CLAIMED, RESOLVED = "open", "claimed", "resolved"


@dataclass(frozen=True)
class EscalationCard:
    """One escalation with its account, health, thread and the buyer's last messages."""

    id: int
    status: str
    reason: str
    created_at: datetime
    case: dict[str, Any]  # the case figures, without the lane's own entries
    claimed_by: dict[str, Any] | None
    call_requested: dict[str, Any] | None
    resolved_by: dict[str, Any] | None
    slack: dict[str, Any] | None  # {"channel", "ts"} once posted
    account: str  # the account's external id
    account_name: str
    plan: str
    vertical: str
    csat: Decimal | None
    sentiment: Decimal | None
    reported_escalations: int  # the operator's figure
    open_here: int  # escalations open or claimed here
    thread_id: int | None
    thread_state: str | None
    last_messages: tuple[str, ...]  # the buyer's last messages, oldest first


@dataclass(frozen=True)
class Outcome:
    """What a CSM action did: `changed` is False when the escalation was already past it."""

    changed: bool
    card: EscalationCard | None


LANE_KEYS = ("claimed_by", "call_requested", "resolved_by", "slack")


def _session(engine: Engine, *, read_only: bool = False) -> Session:
    if read_only:  # a plain reader on SQLite, not the writer lock (see storage.db)
        engine = engine.execution_options(sqlite_begin="DEFERRED")
    return Session(engine, expire_on_commit=False)


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


def load(engine: Engine, escalation_id: int) -> EscalationCard | None:
    """The escalation as a CSM sees it, or None."""
    with _session(engine, read_only=True) as session:
        row = session.get(EscalationRow, escalation_id)
        if row is None:
            return None
        return _card(session, row, session.get(AccountRow, row.account_id))


def recent(engine: Engine, limit: int = 50) -> list[EscalationCard]:
    """The latest escalations, unresolved first, newest first."""
    with _session(engine, read_only=True) as session:
        rows = session.scalars(select(EscalationRow).order_by(
            (EscalationRow.status == RESOLVED).asc(), EscalationRow.created_at.desc(),
            EscalationRow.id.desc()).limit(limit)).all()
        return [_card(session, r, session.get(AccountRow, r.account_id)) for r in rows]


def for_account(engine: Engine, external_id: str) -> tuple[AccountRow | None, list[EscalationCard]]:
    """An account's row and its escalations, newest first (for the slash command)."""
    with _session(engine, read_only=True) as session:
        account = session.scalars(select(AccountRow).where(
            AccountRow.external_id == external_id)).first()
        if account is None:
            return None, []
        rows = session.scalars(select(EscalationRow).where(EscalationRow.account_id == account.id)
                               .order_by(EscalationRow.created_at.desc(), EscalationRow.id.desc())
                               .limit(5)).all()
        return account, [_card(session, r, account) for r in rows]


def latest_thread_state(engine: Engine, account_id: int) -> tuple[str | None, str | None]:
    """(state, target plan) of the account's latest thread."""
    with _session(engine, read_only=True) as session:
        row = session.execute(select(ThreadRow.state, ThreadRow.target_plan)
                              .where(ThreadRow.account_id == account_id)
                              .order_by(ThreadRow.opened_at.desc(), ThreadRow.id.desc())
                              .limit(1)).first()
        return (row.state, row.target_plan) if row else (None, None)


def _locked(session: Session, escalation_id: int) -> tuple[EscalationRow, AccountRow] | None:
    account_id = session.scalar(select(EscalationRow.account_id)
                                .where(EscalationRow.id == escalation_id))
    if account_id is None:
        return None
    account = session.scalars(select(AccountRow).where(AccountRow.id == account_id)
                              .with_for_update()).one()
    row = session.scalars(select(EscalationRow).where(EscalationRow.id == escalation_id)
                          .with_for_update()).one()
    return row, account


def _set_case(session: Session, row: EscalationRow, status: str | None = None,
              **entries: Any) -> None:
    case = {**(row.case or {}), **entries}
    values: dict[str, Any] = {"case": case}
    if status is not None:
        values["status"] = status
    session.execute(update(EscalationRow).where(EscalationRow.id == row.id).values(**values))
    session.expire(row)


def record_post(engine: Engine, escalation_id: int, channel: str, ts: str) -> None:
    """Remember where the escalation was posted, so a retried job never posts it twice."""
    with _session(engine) as session, session.begin():
        locked = _locked(session, escalation_id)
        if locked is not None:
            _set_case(session, locked[0], slack={"channel": channel, "ts": ts})


def _act(engine: Engine, escalation_id: int, already_done, change) -> Outcome:
    """One CSM action, once: under the account-then-escalation locks, `change(session, row)`
    unless `already_done(row)`; the card as it stands either way."""
    with _session(engine) as session, session.begin():
        locked = _locked(session, escalation_id)
        if locked is None:
            return Outcome(False, None)
        row, account = locked
        if already_done(row):
            return Outcome(False, _card(session, row, account))
        change(session, row)
        session.flush()
        return Outcome(True, _card(session, row, account))


def _by(csm_id: str, csm_name: str, now: datetime) -> dict:
    return {"id": csm_id, "name": csm_name, "at": now.isoformat()}


def claim(engine: Engine, escalation_id: int, csm_id: str, csm_name: str, business: str,
          now: datetime) -> Outcome:
    """An open escalation becomes the CSM's; the buyer is told a named person will follow up
    (a reply queued on the thread's last channel: sent by the outbox on SMS or WhatsApp, shown
    by the widget's next poll on web chat)."""
    def change(session, row) -> None:
        _set_case(session, row, status=CLAIMED, claimed_by=_by(csm_id, csm_name, now))
        thread = session.get(ThreadRow, row.thread_id) if row.thread_id else None
        if thread is not None and thread.last_channel and thread.contact_id is not None:
            # TODO(escalations in core): this module runs its own session, not a unit of work,
            # so the message is queued through the repositories of that session. Once the
            # escalation lifecycle is a core use case, call queue_message with its unit of work.
            repositories = SimpleNamespace(conversations=SqlConversationRepository(session),
                                           jobs=SqlJobQueue(session))
            queue_message(repositories, thread_id=thread.id, contact_id=thread.contact_id,
                          channel=thread.last_channel, kind="reply",
                          body=follow_up_message(csm_name, business), now=now)

    return _act(engine, escalation_id, lambda row: row.status != OPEN, change)


def request_call(engine: Engine, escalation_id: int, csm_id: str, csm_name: str,
                 now: datetime) -> Outcome:
    """Record that the CSM wants a call scheduled (once); a resolved escalation stays as it is."""
    return _act(engine, escalation_id,
                lambda row: row.status == RESOLVED or bool((row.case or {}).get("call_requested")),
                lambda session, row: _set_case(session, row,
                                               call_requested=_by(csm_id, csm_name, now)))


def resolve(engine: Engine, escalation_id: int, csm_id: str, csm_name: str,
            now: datetime) -> Outcome:
    """Close an open or claimed escalation (once)."""
    return _act(engine, escalation_id, lambda row: row.status == RESOLVED,
                lambda session, row: _set_case(session, row, status=RESOLVED,
                                               resolved_by=_by(csm_id, csm_name, now)))


def follow_up_message(csm_name: str, business: str) -> str:
    return f"{csm_name} from {business} will follow up with you personally."
