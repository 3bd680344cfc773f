"""Outbound phone messages (SMS, WhatsApp): claiming queued rows of `messages`, recording results.

The queued outbound rows of `messages` are the channel's durable outbox: the unit of work that
decided to write to the buyer stores the row, and a dispatcher (channels.twilio_outbound) sends it
after the commit. This module is that dispatcher's storage half, in the pattern of
storage/outbox.py:

- claim (`claim_outbound`): one short transaction takes due rows (queued, `not_before` reached,
  `next_attempt_at` empty or reached), oldest first, `FOR UPDATE SKIP LOCKED` on PostgreSQL (on
  SQLite the writer lock, BEGIN IMMEDIATE, serializes claims). Each claimed row gets a lease:
  `next_attempt_at` = now + lease, `attempts` + 1. A dispatcher that dies mid-send loses its lease
  and the row comes back when it ends.
- consent, again, at claim time: a contact who opted out after the row was queued (a STOP racing
  a queued prompt) has the row cancelled, never sent; so has a WhatsApp row for a contact without
  a WhatsApp opt-in, and an opening whose thread closed meanwhile (declined, escalated, expired).
- record (`mark_sent`, `mark_retry`, `mark_failed`): a new transaction per outcome. A retry or a
  failure is written only while the claim is still current (queued, and `next_attempt_at` still
  equal to our lease): if the lease ran out and another dispatcher took the row, its outcome
  wins. A success is always written while the row is queued, because the message did go out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select, update

from core.conversation import ThreadEvent, ThreadState, transition
from storage.models import LIVE_STATES, AccountRow, ContactRow, MessageRow, ThreadRow

log = logging.getLogger(__name__)

QUEUED, SENT, FAILED, CANCELLED = "queued", "sent", "failed", "cancelled"
WHATSAPP_WINDOW = timedelta(hours=24)
# A free-form WhatsApp message sent after the window closed fails for good (Twilio 63016), a
# template inside the window is fine: so the window counts as closed a little early, to cover the
# time between the claim and the send.
WINDOW_MARGIN = timedelta(minutes=10)
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class OutboundMessage:
    """One claimed message as a sender sees it.

    `to` is the E.164 number (the phone for SMS; the WhatsApp number, else the phone, for
    WhatsApp). `in_window` is true when the contact wrote on WhatsApp within the last 24 hours,
    so free text may go out; always false on channels without a session window. `attempts`
    counts sends started, this one included; `lease_until` identifies this claim when the
    outcome is recorded.
    """

    id: int
    thread_id: int | None
    contact_id: int
    channel: str
    kind: str
    body: str
    to: str
    attempts: int
    in_window: bool
    lease_until: datetime


class ClaimedBatch(list):
    """The messages claimed for sending (a list of OutboundMessage), and how many due rows the
    claim settled by itself: `cancelled` (consent, closed thread) and `failed` (no address, or
    out of attempts)."""

    def __init__(self, messages=(), *, cancelled: int = 0, failed: int = 0) -> None:
        super().__init__(messages)
        self.cancelled = cancelled
        self.failed = failed


def claim_outbound(engine: Engine, channels: set[str], now: datetime, limit: int = 50,
                   lease: timedelta = timedelta(minutes=5), *,
                   max_attempts: int | None = None) -> ClaimedBatch:
    """Claim up to `limit` due outbound messages on `channels`, checking consent as of `now`.

    Rows that must never go out are settled here instead of returned: cancelled when the contact
    opted out ("opted out"), a WhatsApp row has no opt-in ("no whatsapp opt-in") or an opening's
    thread is closed ("thread closed"); failed when there is no contact or number, or when
    `max_attempts` sends were started already without an outcome (their dispatcher died each
    time: a poison row must not be sent forever).
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    lease_until = now + lease
    claimed: list[OutboundMessage] = []
    settled: dict[int, tuple[str, str]] = {}  # message id -> (status, last_error)
    with engine.begin() as conn:
        rows = conn.execute(
            select(MessageRow.id, MessageRow.thread_id, MessageRow.contact_id, MessageRow.channel,
                   MessageRow.kind, MessageRow.body, MessageRow.attempts,
                   ContactRow.id.label("contact_row"), ContactRow.phone, ContactRow.whatsapp,
                   ContactRow.opted_out_at, ContactRow.whatsapp_opt_in_at,
                   ContactRow.whatsapp_inbound_at, ThreadRow.state.label("thread_state"))
            .outerjoin(ContactRow, ContactRow.id == MessageRow.contact_id)
            .outerjoin(ThreadRow, ThreadRow.id == MessageRow.thread_id)
            .where(MessageRow.direction == "out", MessageRow.status == QUEUED,
                   MessageRow.channel.in_(sorted(channels)),
                   func.coalesce(MessageRow.not_before, MessageRow.at) <= now,
                   or_(MessageRow.next_attempt_at.is_(None), MessageRow.next_attempt_at <= now))
            .order_by(MessageRow.id)
            .limit(limit)
            # Only the message rows are locked (PostgreSQL refuses to lock the nullable side of
            # an outer join); omitted on SQLite, where the writer lock serializes claims.
            .with_for_update(skip_locked=True, of=MessageRow)
        ).all()
        for r in rows:
            verdict = _verdict(r, max_attempts)
            if verdict is not None:
                settled[r.id] = verdict
                continue
            to = r.phone if r.channel != "whatsapp" else (r.whatsapp or r.phone)
            in_window = (r.channel == "whatsapp" and r.whatsapp_inbound_at is not None
                         and now - r.whatsapp_inbound_at < WHATSAPP_WINDOW - WINDOW_MARGIN)
            claimed.append(OutboundMessage(
                id=r.id, thread_id=r.thread_id, contact_id=r.contact_id, channel=r.channel,
                kind=r.kind, body=r.body, to=to, attempts=r.attempts + 1, in_window=in_window,
                lease_until=lease_until))
        for (status, error), ids in _group(settled).items():
            conn.execute(update(MessageRow).where(MessageRow.id.in_(ids))
                         .values(status=status, last_error=error))
        if claimed:
            conn.execute(update(MessageRow).where(MessageRow.id.in_([m.id for m in claimed]))
                         .values(attempts=MessageRow.attempts + 1, next_attempt_at=lease_until))
    for message_id, (status, error) in settled.items():
        level = logging.INFO if status == CANCELLED else logging.ERROR
        log.log(level, "message %s %s at claim: %s", message_id, status, error)
    return ClaimedBatch(claimed,
                        cancelled=sum(1 for s, _ in settled.values() if s == CANCELLED),
                        failed=sum(1 for s, _ in settled.values() if s == FAILED))


def _verdict(r, max_attempts: int | None) -> tuple[str, str] | None:
    """Why a due row must not be sent (status, reason), or None to send it."""
    if r.contact_row is None:
        return FAILED, "no contact to send to"
    if r.opted_out_at is not None:
        return CANCELLED, "opted out"
    if r.channel == "whatsapp" and r.whatsapp_opt_in_at is None:
        return CANCELLED, "no whatsapp opt-in"
    if r.kind == "opening" and r.thread_state is not None and r.thread_state not in LIVE_STATES:
        return CANCELLED, "thread closed"
    if not (r.phone if r.channel != "whatsapp" else (r.whatsapp or r.phone)):
        return FAILED, f"the contact has no number for {r.channel}"
    if max_attempts is not None and r.attempts >= max_attempts:
        return FAILED, (f"gave up after {r.attempts} attempts; no outcome recorded for the last "
                        "(its dispatcher stopped mid-send)")
    return None


def _group(settled: dict[int, tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for message_id, verdict in settled.items():
        groups.setdefault(verdict, []).append(message_id)
    return groups


def mark_sent(engine: Engine, message_id: int, provider_id: str, now: datetime, *,
              lease_until: datetime | None = None) -> bool:
    """The provider accepted the message: sent, with its id (`delivery_status` "queued", the
    provider's first word; status callbacks move it on). An opening whose thread is still open
    moves the thread to offered. False when there was nothing to record (already settled).

    Written whenever the row is still queued, whoever holds the lease now: the message went out.
    With `lease_until`, also when it was cancelled during this claim's send (a reply cancelled
    the queued opening while it was in flight): it went out all the same, and counts as a prompt.
    """
    with engine.begin() as conn:
        row = conn.execute(select(MessageRow.kind, MessageRow.thread_id, ThreadRow.account_id)
                           .outerjoin(ThreadRow, ThreadRow.id == MessageRow.thread_id)
                           .where(MessageRow.id == message_id)).first()
        if row is None:
            return False
        state = None
        if row.kind == "opening" and row.account_id is not None:
            # Account, then thread, then messages: the lock order every writer keeps.
            conn.execute(select(AccountRow.id).where(AccountRow.id == row.account_id)
                         .with_for_update())
            state = conn.execute(select(ThreadRow.state).where(ThreadRow.id == row.thread_id)
                                 .with_for_update()).scalar()
        ours = MessageRow.status == QUEUED
        if lease_until is not None:
            ours = or_(ours, and_(MessageRow.status == CANCELLED,
                                  MessageRow.next_attempt_at == lease_until))
        recorded = conn.execute(
            update(MessageRow).where(MessageRow.id == message_id, ours)
            .values(status=SENT, provider_id=provider_id, sent_at=now, delivery_status="queued",
                    last_error=None)).rowcount
        if recorded and state == ThreadState.OPEN:
            conn.execute(update(ThreadRow).where(ThreadRow.id == row.thread_id).values(
                state=str(transition(ThreadState.OPEN, ThreadEvent.OFFER_SENT)), updated_at=now))
    return bool(recorded)


def mark_retry(engine: Engine, message_id: int, error: str, next_attempt_at: datetime, *,
               lease_until: datetime) -> bool:
    """Try again at `next_attempt_at`; only while the claim `lease_until` is current."""
    return _settle(engine, message_id, lease_until,
                   next_attempt_at=next_attempt_at, last_error=error[:MAX_ERROR_CHARS])


def hold(engine: Engine, message_ids: list[int], error: str, next_attempt_at: datetime, *,
         lease_until: datetime) -> int:
    """Give claimed messages back untried: due again at `next_attempt_at`, and the claim's
    attempt not counted (the provider refused our account, not these messages). Only rows whose
    claim `lease_until` is still current; how many."""
    if not message_ids:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            update(MessageRow)
            .where(MessageRow.id.in_(message_ids), MessageRow.status == QUEUED,
                   MessageRow.next_attempt_at == lease_until)
            .values(next_attempt_at=next_attempt_at, attempts=MessageRow.attempts - 1,
                    last_error=error[:MAX_ERROR_CHARS])).rowcount


def mark_failed(engine: Engine, message_id: int, error: str, now: datetime, *,
                lease_until: datetime) -> bool:
    """Failed for good; only while the claim `lease_until` is current. (`now` is the moment of
    the failure, for the log: the row keeps no failure time of its own.)"""
    recorded = _settle(engine, message_id, lease_until, status=FAILED,
                       last_error=error[:MAX_ERROR_CHARS])
    if recorded:
        log.debug("message %s failed at %s", message_id, now.isoformat())
    return recorded


def _settle(engine: Engine, message_id: int, lease_until: datetime, **values) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id, MessageRow.status == QUEUED,
                   MessageRow.next_attempt_at == lease_until)
            .values(**values)).rowcount)


def record_opt_out(engine: Engine, contact_id: int, channel: str, now: datetime, *,
                   source: str = "carrier") -> bool:
    """The contact revoked consent as far as `source` knows (Twilio error 21610: the carrier has
    them unsubscribed, e.g. a STOP we never saw), through core.engine.revoke_consent. False (and
    nothing written) when they were opted out already."""
    from core.engine import revoke_consent
    from storage.uow import SqlUnitOfWork

    with SqlUnitOfWork(engine) as uow:
        contact = uow.conversations.contact_by_id(contact_id)
        if contact is None:
            return False
        uow.accounts.lock(contact.account_id)  # account first: the order every writer keeps
        contact = uow.conversations.contact_by_id(contact_id)  # re-read under the lock
        if contact.opted_out_at is not None:
            return False
        revoke_consent(uow, contact, channel, source, now)
        uow.commit()
    return True
