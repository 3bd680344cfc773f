"""Reads for the sandbox phone page: each contact's phone conversations, per medium, and the
calls ringing on their phones."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.models import AccountRow, CallRow, ContactRow, MessageRow


@dataclass(frozen=True)
class PhoneMessage:
    direction: str
    kind: str
    body: str
    status: str
    at: datetime
    not_before: datetime | None


@dataclass(frozen=True)
class Phone:
    """One buyer's phone for one medium: who, which number, and the messages on it."""

    account: str
    account_name: str
    contact: str
    contact_name: str | None
    medium: str  # the channel: sms, whatsapp
    number: str
    messages: tuple[PhoneMessage, ...]


def phones(session: Session, media: Sequence[tuple[str, str]]) -> list[Phone]:
    """Every contact with a number on one of `media` ((channel, the contact field holding its
    number), e.g. ("sms", "phone")), with that medium's messages, oldest first. Queued openings
    show too (marked), so the operator sees what waits in the outbox. Read in the session of a
    read-only unit of work."""
    fields = {field for _, field in media}
    columns = {field: getattr(ContactRow, field) for field in fields}
    conn = session.connection()
    contacts = conn.execute(
        select(ContactRow.id, ContactRow.external_id, ContactRow.name,
               AccountRow.external_id, AccountRow.name, *columns.values())
        .join(AccountRow, ContactRow.account_id == AccountRow.id)
        .where(or_(*(column.is_not(None) for column in columns.values())))
        .order_by(AccountRow.external_id, ContactRow.position)).all()
    rows = conn.execute(
        select(MessageRow.contact_id, MessageRow.channel, MessageRow.direction, MessageRow.kind,
               MessageRow.body, MessageRow.status, MessageRow.at, MessageRow.not_before)
        .where(MessageRow.channel.in_([channel for channel, _ in media]))
        .order_by(MessageRow.at, MessageRow.id)).all()
    by_key: dict[tuple[int, str], list[PhoneMessage]] = {}
    for contact_id, channel, direction, kind, body, status, at, not_before in rows:
        by_key.setdefault((contact_id, channel), []).append(
            PhoneMessage(direction, kind, body, status, at, not_before))
    out = []
    for row in contacts:
        cid, ext, name, account, account_name = row[:5]
        numbers = dict(zip(columns, row[5:]))
        for medium, field in media:
            number = numbers[field]
            if number:
                out.append(Phone(account, account_name, ext, name, medium, number,
                                 tuple(by_key.get((cid, medium), ()))))
    return out


@dataclass(frozen=True)
class RingingCall:
    """A call the service placed that is ringing on a contact's phone: the page answers it with
    the call's id (its webhooks' `?call=`) and the provider's call id (the CallSid)."""

    id: int
    contact: str  # the contact's external id, as `Phone.contact`
    call_sid: str


def ringing_calls(session: Session) -> dict[str, RingingCall]:
    """The calls now ringing (placed, not yet answered or ended), by contact external id; the
    oldest one when a contact has several. Read in the session of a read-only unit of work."""
    rows = session.connection().execute(
        select(CallRow.id, ContactRow.external_id, CallRow.provider_id)
        .join(ContactRow, CallRow.contact_id == ContactRow.id)
        .where(CallRow.status == "ringing", CallRow.provider_id.is_not(None))
        .order_by(CallRow.id)).all()
    out: dict[str, RingingCall] = {}
    for call_id, contact, sid in rows:
        out.setdefault(contact, RingingCall(call_id, contact, sid))
    return out
