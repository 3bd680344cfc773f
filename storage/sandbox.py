"""Reads for the sandbox phone page: each contact's phone conversations, per medium."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, or_, select

from storage.models import AccountRow, ContactRow, MessageRow


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
    medium: str  # sms | whatsapp
    number: str
    messages: tuple[PhoneMessage, ...]


def phones(engine: Engine) -> list[Phone]:
    """Every contact with a phone or WhatsApp number, with that medium's messages, oldest first.
    Queued openings show too (marked), so the operator sees what waits in the outbox."""
    with engine.connect() as conn:
        contacts = conn.execute(
            select(ContactRow.id, ContactRow.external_id, ContactRow.name, ContactRow.phone,
                   ContactRow.whatsapp, AccountRow.external_id, AccountRow.name)
            .join(AccountRow, ContactRow.account_id == AccountRow.id)
            .where(or_(ContactRow.phone.is_not(None), ContactRow.whatsapp.is_not(None)))
            .order_by(AccountRow.external_id, ContactRow.position)).all()
        rows = conn.execute(
            select(MessageRow.contact_id, MessageRow.channel, MessageRow.direction, MessageRow.kind,
                   MessageRow.body, MessageRow.status, MessageRow.at, MessageRow.not_before)
            .where(MessageRow.channel.in_(("sms", "whatsapp")))
            .order_by(MessageRow.at, MessageRow.id)).all()
    by_key: dict[tuple[int, str], list[PhoneMessage]] = {}
    for contact_id, channel, direction, kind, body, status, at, not_before in rows:
        by_key.setdefault((contact_id, channel), []).append(
            PhoneMessage(direction, kind, body, status, at, not_before))
    out = []
    for cid, ext, name, phone, whatsapp, account, account_name in contacts:
        for medium, number in (("sms", phone), ("whatsapp", whatsapp)):
            if number:
                out.append(Phone(account, account_name, ext, name, medium, number,
                                 tuple(by_key.get((cid, medium), ()))))
    return out
