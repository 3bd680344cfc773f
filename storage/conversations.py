"""SQL repositories for conversations, one per aggregate: contacts (reach, consent, where a number
belongs), threads, messages and plan changes."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from collections.abc import Sequence
from typing import Any, NamedTuple
from typing import cast as typing_cast

from sqlalchemy import (CursorResult, Executable, Row, Select, String, and_, bindparam, func,
                        insert, or_, select, update)
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.dml import ReturningInsert

from core.ports import (UNSEEN_STATUSES, ContactView, Delivered, ErasedMessages, ExpiredBody,
                        SentMessage, MessageView, PlanChangeView, RoutingFacts, ThreadView)
from core.routing import UNROUTED, Candidate, LastWrite
from storage.models import (LIVE_STATES, UNMATCHED_KIND, AccountRow, ConsentEventRow, ContactRow,
                            MessageRow, PlanChangeRow, ThreadRow)

ROLE_ORDER = {"billing": 0, "admin": 1, "member": 2}


# The row readers below take an ORM row, or a Core row of the same table (the statements built
# once, further down, read the tables themselves).
def _contact(row: ContactRow | Row[Any]) -> ContactView:
    return ContactView(id=row.id, account_id=row.account_id, external_id=row.external_id,
                       role=row.role, phone=row.phone, whatsapp=row.whatsapp,
                       web_user_id=row.web_user_id, web_active_at=row.web_active_at,
                       opted_out_at=row.opted_out_at, whatsapp_opt_in_at=row.whatsapp_opt_in_at,
                       whatsapp_inbound_at=row.whatsapp_inbound_at, erased_at=row.erased_at,
                       name=getattr(row, "name", None))


def _thread(row: ThreadRow | Row[Any]) -> ThreadView:
    return ThreadView(id=row.id, account_id=row.account_id, contact_id=row.contact_id,
                      current_plan=row.current_plan, target_plan=row.target_plan,
                      direction=row.direction, state=row.state, decline_reason=row.decline_reason,
                      last_channel=row.last_channel, confirm_period_start=row.confirm_period_start,
                      confirm_charge=row.confirm_charge, opened_at=row.opened_at,
                      updated_at=row.updated_at, closed_at=row.closed_at,
                      initiated_by=row.initiated_by)


# The statements of an inbound message's path, built once with named parameters: building and
# hashing a new statement tree per call cost SQLAlchemy more than the database's work.
_CONTACTS, _THREADS, _MESSAGES = ContactRow.__table__, ThreadRow.__table__, MessageRow.__table__
_CONTACT_BY = {
    name: select(_CONTACTS).where(column == bindparam("value")).order_by(_CONTACTS.c.id).limit(1)
    for name, column in (("external_id", _CONTACTS.c.external_id), ("id", _CONTACTS.c.id))}
# An erased contact by its pseudonym: as given, or with the suffix a second erasure of the same
# id gets (core.erasure.pseudonym), the latest first. Pseudonyms are "erased:" and hex digits:
# nothing in them is a LIKE wildcard.
_ERASED_AS = (select(_CONTACTS).where(
    _CONTACTS.c.erased_at.is_not(None),
    or_(_CONTACTS.c.external_id == bindparam("pseudonym"),
        _CONTACTS.c.external_id.startswith(bindparam("suffixed"))))
    .order_by(_CONTACTS.c.erased_at.desc(), _CONTACTS.c.id.desc()).limit(1))
_CONTACTS_BY = {
    name: select(_CONTACTS).where(column == bindparam("value")).order_by(_CONTACTS.c.id)
    for name, column in (("phone", _CONTACTS.c.phone), ("whatsapp", _CONTACTS.c.whatsapp))}
# The contact fields a channel may declare as its activity (core.channels.Capabilities.activity).
_ACTIVITY_FIELDS = frozenset({"web_active_at", "whatsapp_inbound_at"})
_OPT_IN_FIELDS = frozenset({"whatsapp_opt_in_at"})
_THREAD_ORDER = (_THREADS.c.state.in_(LIVE_STATES).desc(), _THREADS.c.opened_at.desc(),
                 _THREADS.c.id.desc())
_THREAD_OF_CONTACT = (select(_THREADS).where(_THREADS.c.contact_id == bindparam("contact_id"))
                      .order_by(*_THREAD_ORDER).limit(1))
_LIVE_THREAD_OF_ACCOUNT = (select(_THREADS).where(_THREADS.c.account_id == bindparam("account_id"),
                                                  _THREADS.c.state.in_(LIVE_STATES))
                           .order_by(*_THREAD_ORDER).limit(1))
_THREAD_FOR_CONTACT = {False: (_THREAD_OF_CONTACT, _LIVE_THREAD_OF_ACCOUNT),
                       True: (_THREAD_OF_CONTACT.with_for_update(),
                              _LIVE_THREAD_OF_ACCOUNT.with_for_update())}
_ADD_MESSAGE: ReturningInsert[tuple[int]] = insert(_MESSAGES).returning(_MESSAGES.c.id)
# The sender as stored now and an earlier delivery of their message, in one statement (an
# inbound message reads both right after its account's lock).
_SEEN = _MESSAGES.alias("seen")
_CONTACT_AND_DELIVERY = (
    select(_CONTACTS, _SEEN.c.id.label("seen_id"), _SEEN.c.thread_id.label("seen_thread_id"))
    .select_from(_CONTACTS.outerjoin(_SEEN, and_(
        _SEEN.c.contact_id == _CONTACTS.c.id, _SEEN.c.channel == bindparam("channel"),
        _SEEN.c.provider_id == bindparam("provider_id"), _SEEN.c.direction == "in")))
    .where(_CONTACTS.c.id == bindparam("contact_id")).order_by(_SEEN.c.id).limit(1))
# The retention purge's read and write (core.retention): by the partial index of the messages
# whose body is still there (storage.models: ix_messages_unredacted_at).
_PURGEABLE = (_MESSAGES.c.redacted_at.is_(None), _MESSAGES.c.at < bindparam("before"),
              _MESSAGES.c.status != "queued")
_EXPIRED = (select(_MESSAGES.c.id,
                   func.coalesce(_THREADS.c.account_id, _CONTACTS.c.account_id).label("account_id"))
            .select_from(_MESSAGES.outerjoin(_THREADS, _THREADS.c.id == _MESSAGES.c.thread_id)
                         .outerjoin(_CONTACTS, _CONTACTS.c.id == _MESSAGES.c.contact_id))
            .where(*_PURGEABLE)
            .order_by(_MESSAGES.c.at, _MESSAGES.c.id).limit(bindparam("limit")))
_REDACT = (update(_MESSAGES)
           .where(_MESSAGES.c.id.in_(bindparam("ids", expanding=True)), *_PURGEABLE)
           .values(body=bindparam("marker"), redacted_at=bindparam("now")))
_SAVE_THREAD = update(_THREADS).where(_THREADS.c.id == bindparam("thread_id"))
# A delivery report: the first message we sent under the provider's id, its status moved
# only forward (core.handlers.replaced_by says from which statuses), in one statement.
_SENT_UNDER = (select(_MESSAGES.c.id).where(_MESSAGES.c.provider_id == bindparam("sent_under"),
                                            _MESSAGES.c.direction == "out")
               .order_by(_MESSAGES.c.id).limit(1))
# The statuses it may replace as a fixed row of parameters, unused ones NULL (which matches
# nothing): an expanding IN list is rendered again at every execution.
_REPLACES = 12  # more than there are statuses (core.handlers.PROGRESS and FINAL_FAILURES)
_REPLACEABLE = _MESSAGES.c.delivery_status.in_([bindparam(f"replaces_{i}", type_=String)
                                                 for i in range(_REPLACES)])
_ADVANCE = {
    replaces_none: update(_MESSAGES)
    .where(_MESSAGES.c.id == _SENT_UNDER.scalar_subquery(),
           or_(_MESSAGES.c.delivery_status.is_(None), _REPLACEABLE) if replaces_none
           else _REPLACEABLE)
    .values(delivery_status=bindparam("new_status"),
            last_error=func.coalesce(bindparam("error_code"), _MESSAGES.c.last_error))
    for replaces_none in (False, True)}


class _RoutingStatements(NamedTuple):
    candidates: Select[Any]
    last_write: Select[Any]


def _routing_statements() -> _RoutingStatements:
    """The two reads of a message from a shared number (storage.conversations.routing_facts).

    Candidates: each contact with its account's name, the thread a message from it lands in
    (`thread_for_contact`'s rule: their own live thread, else their own latest, else the
    account's live one) and an earlier delivery of this message to it. Each thread lookup is an
    index probe (threads by contact and by account), the delivery one the unique key.

    Last write: our latest message on the medium to any of them that reached the buyer (not
    queued, cancelled, failed or reported undelivered; not an unrouted one), by when it went out.
    A contact's messages are found by `ix_messages_contact_id`: tens of rows, sorted in memory.
    """
    own, account_live, seen = (_THREADS.alias("own"), _THREADS.alias("acct"),
                               _MESSAGES.alias("seen"))
    c, a = _CONTACTS, AccountRow.__table__
    own_first = (select(own.c.id).where(own.c.contact_id == c.c.id)
                 .order_by(own.c.state.in_(LIVE_STATES).desc(), own.c.opened_at.desc(),
                           own.c.id.desc())
                 .limit(1).scalar_subquery())
    account_first = (select(account_live.c.id)
                     .where(account_live.c.account_id == c.c.account_id,
                            account_live.c.state.in_(LIVE_STATES))
                     .order_by(account_live.c.opened_at.desc(), account_live.c.id.desc())
                     .limit(1).scalar_subquery())
    seen_first = (select(func.min(seen.c.id))
                  .where(seen.c.contact_id == c.c.id, seen.c.channel == bindparam("channel"),
                         seen.c.provider_id == bindparam("provider_id"),
                         seen.c.direction == "in")
                  .scalar_subquery())
    thread = _THREADS.alias("thread")
    candidates = (
        select(c.c.id.label("contact_id"), c.c.account_id, a.c.name.label("account_name"),
               thread.c.id.label("own_id"), thread.c.state.label("own_state"),
               account_first.label("account_live_id"), seen_first.label("seen_id"))
        .join(a, a.c.id == c.c.account_id)
        .outerjoin(thread, thread.c.id == own_first)
        .where(c.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(c.c.id))
    m = _MESSAGES
    last_write = (
        select(m.c.contact_id, m.c.thread_id, m.c.kind)
        .where(m.c.contact_id.in_(bindparam("ids", expanding=True)),
               m.c.channel == bindparam("channel"), m.c.direction == "out",
               m.c.status.not_in(UNSEEN_STATUSES), m.c.kind != UNROUTED,
               or_(m.c.delivery_status.is_(None),
                   m.c.delivery_status.not_in(UNDELIVERED_STATUSES)))
        .order_by(func.coalesce(m.c.sent_at, m.c.at).desc(), m.c.id.desc())
        .limit(1))
    return _RoutingStatements(candidates, last_write)


# The provider's final word that a message never reached the buyer (channels.twilio_messaging).
UNDELIVERED_STATUSES = ("undelivered", "failed", "canceled")
_ROUTING = _routing_statements()


class _Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _first(self, statement: Executable, **params: object) -> Row[Any] | None:
        return self.session.connection().execute(statement, params).first()


class SqlContactRepository(_Repository):
    """Contacts: reach, consent and where a number or identity belongs (core.ports, `uow.contacts`)."""

    def contact(self, external_id: str) -> ContactView | None:
        row = self._first(_CONTACT_BY["external_id"], value=external_id)
        return _contact(row) if row else None

    def contacts_by_address(self, fields: Sequence[str], address: str) -> list[ContactView]:
        """Every contact an E.164 number belongs to, by id, in the first of the contact `fields`
        (a channel's declared address: WhatsApp's own number, else the phone) where any contact
        has it. Contacts of several accounts may share a number: core.routing decides which one
        a message is about."""
        conn = self.session.connection()
        for field in fields:
            rows = conn.execute(_CONTACTS_BY[field], {"value": address}).all()
            if rows:
                return [_contact(r) for r in rows]
        return []

    def routing_facts(self, channel: str, contact_ids: list[int],
                      provider_id: str | None) -> RoutingFacts:
        """What core.routing needs about these contacts (those with the sender's number on
        `channel`), in two statements; call it after locking their accounts."""
        conn = self.session.connection()
        params = {"ids": list(contact_ids), "channel": channel, "provider_id": provider_id}
        candidates, seen = [], []
        for r in conn.execute(_ROUTING.candidates, params):
            thread_id = r.own_id if r.own_id is not None else r.account_live_id
            live = (r.own_state in LIVE_STATES) if r.own_id is not None \
                else r.account_live_id is not None
            candidates.append(Candidate(contact_id=r.contact_id, account_id=r.account_id,
                                        account_name=r.account_name, thread_id=thread_id,
                                        live=live))
            if r.seen_id is not None:
                seen.append(r.seen_id)
        last = conn.execute(_ROUTING.last_write, params).first()
        return RoutingFacts(
            candidates=tuple(candidates),
            last_write=LastWrite(last.contact_id, last.thread_id, last.kind) if last else None,
            seen_inbound_id=min(seen) if seen else None)

    def set_opt_in(self, contact_id: int, field: str, at: datetime | None) -> None:
        """Record (or, with None, withdraw) the contact's opt-in `field` (a channel's declared
        opt-in, core.channels.Capabilities.opt_in: `whatsapp_opt_in_at`)."""
        if field not in _OPT_IN_FIELDS:
            raise ValueError(f"no contact opt-in field {field!r}")
        self.session.execute(update(ContactRow).where(ContactRow.id == contact_id)
                             .values({field: at}))

    def touch(self, contact_id: int, activity: str, now: datetime) -> None:
        """The contact was active on a channel now: `activity` is the field the channel declares
        (the widget's presence, `web_active_at`: openings may go there; WhatsApp's
        `whatsapp_inbound_at`: its 24-hour window restarts)."""
        if activity not in _ACTIVITY_FIELDS:
            raise ValueError(f"no contact activity field {activity!r}")
        self.session.execute(update(ContactRow).where(ContactRow.id == contact_id)
                             .values({activity: now}))

    def contact_and_delivery(self, contact_id: int, channel: str, provider_id: str | None
                             ) -> tuple[ContactView | None, Delivered | None]:
        """The contact as stored now (`contact_by_id`), and an earlier delivery of the message
        with `provider_id` from them on `channel`, in one round trip."""
        row = self._first(_CONTACT_AND_DELIVERY, contact_id=contact_id, channel=channel,
                          provider_id=provider_id)
        if row is None:
            return None, None
        seen = Delivered(row.seen_id, row.seen_thread_id) if row.seen_id is not None else None
        return _contact(row), seen

    def contact_by_id(self, contact_id: int) -> ContactView | None:
        """The contact as stored now (read from the database, never from the session's memory:
        a use case reads it again after taking its account's lock)."""
        row = self._first(_CONTACT_BY["id"], value=contact_id)
        return _contact(row) if row else None

    def addressee(self, account_id: int) -> ContactView | None:
        """The billing contact, else an admin, else the first contact; never an erased one."""
        rows = self.session.scalars(select(ContactRow).where(ContactRow.account_id == account_id,
                                                             ContactRow.erased_at.is_(None))
                                    .order_by(ContactRow.position))
        ranked = sorted(rows, key=lambda r: (ROLE_ORDER.get(r.role, 3), r.position))
        return _contact(ranked[0]) if ranked else None

    def record_consent(self, contact_id: int, action: str, channel: str, source: str,
                       now: datetime) -> None:
        """A revocation stops business-initiated messages on every phone channel at once."""
        self.session.add(ConsentEventRow(contact_id=contact_id, action=action, channel=channel,
                                         source=source, at=now))
        self.session.execute(update(ContactRow).where(ContactRow.id == contact_id).values(
            opted_out_at=now if action == "revoke" else None))

    def consent_changed_after(self, contact_id: int, at: datetime) -> bool:
        return self.session.scalar(select(ConsentEventRow.id).where(
            ConsentEventRow.contact_id == contact_id, ConsentEventRow.at > at).limit(1)) is not None

    def erased_contact(self, pseudonym: str) -> ContactView | None:
        """The erased contact that goes by `pseudonym` (or by it with a suffix: the same id
        erased again after it was given to a new contact), the latest erased first."""
        row = self._first(_ERASED_AS, pseudonym=pseudonym, suffixed=f"{pseudonym}-")
        return _contact(row) if row else None

    def erase(self, contact_id: int, pseudonym: str, now: datetime) -> int:
        """Empty the contact's personal fields (name, phone, WhatsApp number, web user id,
        email, and what they did when: the widget's and WhatsApp's activity, the WhatsApp
        opt-in), give it `pseudonym` for an external id and mark it erased; the row stays. How
        many of its addresses (phone, WhatsApp, web user id, email) held one."""
        row = self._first(_CONTACT_BY["id"], value=contact_id)
        if row is None:
            return 0
        held = sum(1 for value in (row.phone, row.whatsapp, row.web_user_id, row.email) if value)
        conn = self.session.connection()
        last = conn.scalar(select(func.max(_CONTACTS.c.position))
                           .where(_CONTACTS.c.account_id == row.account_id))
        conn.execute(update(_CONTACTS).where(_CONTACTS.c.id == contact_id).values(
            external_id=pseudonym, name=None, phone=None, whatsapp=None, web_user_id=None,
            email=None, web_active_at=None, whatsapp_opt_in_at=None, whatsapp_inbound_at=None,
            erased_at=now, position=(last or 0) + 1))  # listed after the account's others
        loaded = self.session.identity_map.get(identity_key(ContactRow, contact_id))
        if loaded is not None:  # a Core update: an ORM copy of the row must be read again
            self.session.expire(loaded)
        return held

    def web_contact(self, account_external_id: str, web_user_id: str) -> ContactView | None:
        """The contact of the account whose user id in the host product's web app is this."""
        row = self.session.scalars(
            select(ContactRow).join(AccountRow, AccountRow.id == ContactRow.account_id)
            .where(AccountRow.external_id == account_external_id,
                   ContactRow.web_user_id == web_user_id)
            .order_by(ContactRow.id).limit(1)).first()
        return _contact(row) if row else None


class SqlThreadRepository(_Repository):
    """Threads: one conversation about one plan change, addressed to one contact (core.ports, `uow.threads`)."""

    def live_thread(self, account_id: int, target_plan: str) -> ThreadView | None:
        row = self.session.scalars(select(ThreadRow).where(
            ThreadRow.account_id == account_id, ThreadRow.target_plan == target_plan,
            ThreadRow.state.in_(LIVE_STATES))).first()
        return _thread(row) if row else None

    def thread_for_contact(self, contact: ContactView, *, lock: bool = True) -> ThreadView | None:
        """The contact's thread, locked unless `lock=False` (a reader): a live one addressed to
        them, else their latest; else the account's live thread (a colleague answering for the
        addressee)."""
        own, account_live = _THREAD_FOR_CONTACT[lock]
        row = (self._first(own, contact_id=contact.id)
               or self._first(account_live, account_id=contact.account_id))
        return _thread(row) if row else None

    def thread(self, thread_id: int) -> ThreadView | None:
        row = self.session.get(ThreadRow, thread_id)
        return _thread(row) if row else None

    def live_threads_for_contact(self, contact_id: int) -> list[ThreadView]:
        """The live threads addressed to the contact, locked."""
        rows = self.session.scalars(select(ThreadRow).where(
            ThreadRow.contact_id == contact_id, ThreadRow.state.in_(LIVE_STATES))
            .order_by(ThreadRow.id).with_for_update())
        return [_thread(r) for r in rows]

    def lock_threads_of_contact(self, contact_id: int) -> list[ThreadView]:
        """Every thread addressed to the contact, whatever its state, locked, in id order (take
        the account's lock first)."""
        rows = self.session.connection().execute(
            select(_THREADS).where(_THREADS.c.contact_id == contact_id)
            .order_by(_THREADS.c.id).with_for_update())
        return [_thread(r) for r in rows]

    def latest_thread(self, account_id: int) -> ThreadView | None:
        row = self.session.scalars(
            select(ThreadRow).where(ThreadRow.account_id == account_id)
            .order_by(ThreadRow.state.in_(LIVE_STATES).desc(), ThreadRow.opened_at.desc(),
                      ThreadRow.id.desc()).limit(1)).first()
        return _thread(row) if row else None

    def create_thread(self, account_id: int, contact_id: int, current_plan: str, target_plan: str,
                      direction: str, state: str, channel: str, now: datetime, *,
                      initiated_by: str = "business") -> ThreadView:
        row = ThreadRow(account_id=account_id, contact_id=contact_id, current_plan=current_plan,
                        target_plan=target_plan, direction=direction, state=state,
                        last_channel=channel, opened_at=now, updated_at=now,
                        initiated_by=initiated_by)
        self.session.add(row)
        self.session.flush()
        return _thread(row)

    def save_thread(self, thread: ThreadView, now: datetime) -> None:
        live = thread.state in LIVE_STATES
        self.session.connection().execute(_SAVE_THREAD, {
            "thread_id": thread.id, "state": thread.state, "decline_reason": thread.decline_reason,
            "last_channel": thread.last_channel,
            "confirm_period_start": thread.confirm_period_start,
            "confirm_charge": thread.confirm_charge, "updated_at": now,
            "closed_at": None if live else (thread.closed_at or now)})
        # A Core update bypasses the session: a ThreadRow this unit of work loaded through the
        # ORM (live_thread, stale_threads, ...) must be read again, not served stale.
        loaded = self.session.identity_map.get(identity_key(ThreadRow, thread.id))
        if loaded is not None:
            self.session.expire(loaded)

    def stale_threads(self, before: datetime, *, lock: bool = True) -> list[ThreadView]:
        """Live threads nobody has answered since `before` (locked with `lock`: take their
        accounts' locks first): offers without a reply, and openings that never went out
        (deferred, or waiting for a web visit that never came)."""
        query = select(ThreadRow).where(ThreadRow.state.in_(LIVE_STATES),
                                        ThreadRow.updated_at <= before).order_by(ThreadRow.id)
        rows = self.session.scalars(query.with_for_update() if lock else query)
        return [_thread(r) for r in rows]

    def last_decline_at(self, account_id: int) -> datetime | None:
        return self.session.scalar(select(func.max(ThreadRow.closed_at)).where(
            ThreadRow.account_id == account_id, ThreadRow.decline_reason.is_not(None)))


class SqlMessageRepository(_Repository):
    """Messages: inbound and outbound, in a thread or outside one (core.ports, `uow.messages`)."""

    def prompts_since(self, contact_id: int, since: datetime) -> int:
        """Upgrade prompts (openings) to the contact that go out at or after `since` (a deferred
        one counts when it is due); cancelled ones never went out and do not count."""
        return self.session.scalar(select(func.count()).select_from(MessageRow).where(
            MessageRow.contact_id == contact_id, MessageRow.kind == "opening",
            MessageRow.status != "cancelled",
            func.coalesce(MessageRow.not_before, MessageRow.at) >= since)) or 0

    def due_polled_messages(self, contact_id: int, thread_id: int | None,
                            channels: Sequence[str], now: datetime) -> list[MessageView]:
        """The queued messages on polled `channels` (the widget) that are due for the contact:
        the thread's (openings, and notices such as a CSM's follow-up or replies the API was
        asked to deliver) and their own outside any thread, oldest first. The buyer's poll
        delivers them."""
        mine = and_(MessageRow.thread_id.is_(None), MessageRow.contact_id == contact_id)
        where = or_(MessageRow.thread_id == thread_id, mine) if thread_id is not None else mine
        rows = self.session.scalars(select(MessageRow).where(
            where, MessageRow.channel.in_(list(channels)),
            MessageRow.direction == "out", MessageRow.status == "queued",
            or_(MessageRow.not_before.is_(None), MessageRow.not_before <= now))
            .order_by(MessageRow.id))
        return [_message(r) for r in rows]

    def mark_polled_sent(self, message_ids: list[int], now: datetime) -> None:
        """The widget shows these now. Only rows still queued change (a concurrent cancel wins)."""
        if message_ids:
            self.session.execute(update(MessageRow).where(
                MessageRow.id.in_(message_ids), MessageRow.status == "queued").values(
                status="sent", sent_at=now, attempts=MessageRow.attempts + 1))

    def visible_messages(self, contact_id: int, thread_id: int | None, after: int,
                         limit: int) -> list[MessageView]:
        """What the buyer has seen on any channel, newer than message id `after`: the thread's
        messages and their own messages outside any thread (oldest first, at most `limit`)."""
        mine = and_(MessageRow.thread_id.is_(None), MessageRow.contact_id == contact_id)
        where = or_(MessageRow.thread_id == thread_id, mine) if thread_id is not None else mine
        unseen = and_(MessageRow.direction == "out", MessageRow.status.in_(UNSEEN_STATUSES))
        # Unrouted messages (a shared number's "which business?") belong to no one account.
        rows = self.session.scalars(select(MessageRow).where(where, ~unseen, MessageRow.id > after,
                                                             MessageRow.kind != UNROUTED)
                                    .order_by(MessageRow.id).limit(limit))
        return [_message(r) for r in rows]

    def add_message(self, *, thread_id: int | None, contact_id: int | None, channel: str,
                    direction: str, kind: str, body: str, status: str, now: datetime,
                    provider_id: str | None = None, in_reply_to: int | None = None,
                    not_before: datetime | None = None) -> int:
        return self.session.connection().execute(_ADD_MESSAGE, {
            "thread_id": thread_id, "contact_id": contact_id, "channel": channel,
            "direction": direction, "kind": kind, "body": body, "provider_id": provider_id,
            "in_reply_to": in_reply_to, "status": status, "not_before": not_before, "at": now,
            "attempts": 0}).scalar_one()

    def cancel_queued_openings(self, thread_id: int) -> int:
        """The buyer saw the case in a reply: the queued opening must never go out as well."""
        result = self.session.execute(update(MessageRow).where(
            MessageRow.thread_id == thread_id, MessageRow.kind == "opening",
            MessageRow.status == "queued").values(status="cancelled"))
        # An UPDATE's result is a CursorResult; Session.execute types every result as Result.
        return typing_cast(CursorResult[Any], result).rowcount

    def replies_to(self, message_id: int) -> list[MessageView]:
        rows = self.session.scalars(select(MessageRow).where(MessageRow.in_reply_to == message_id)
                                    .order_by(MessageRow.id))
        return [_message(r) for r in rows]

    def messages(self, thread_id: int) -> list[MessageView]:
        rows = self.session.scalars(select(MessageRow).where(MessageRow.thread_id == thread_id)
                                    .order_by(MessageRow.at, MessageRow.id))
        return [_message(r) for r in rows]

    def add_unmatched_inbound(self, channel: str, body: str, provider_id: str | None,
                              now: datetime) -> int | None:
        """Keep a message from an address that belongs to no contact, for the operator (no
        contact, no thread); None when this provider message id was kept already (a retry)."""
        if provider_id:
            seen = self.session.scalar(select(MessageRow.id).where(
                MessageRow.kind == UNMATCHED_KIND, MessageRow.channel == channel,
                MessageRow.provider_id == provider_id).limit(1))
            if seen is not None:
                return None
        return self.add_message(thread_id=None, contact_id=None, channel=channel, direction="in",
                                kind=UNMATCHED_KIND, body=body, status="received", now=now,
                                provider_id=provider_id)

    def outbound_by_provider_id(self, provider_id: str, *,
                                lock: bool = False) -> SentMessage | None:
        """The message we sent under the provider's id (locked with `lock`: its delivery reports
        may race): id, contact_id, the contact's account_id, channel and delivery_status."""
        query = (select(MessageRow.id, MessageRow.contact_id, ContactRow.account_id,
                        MessageRow.channel, MessageRow.delivery_status)
                 .outerjoin(ContactRow, ContactRow.id == MessageRow.contact_id)
                 .where(MessageRow.provider_id == provider_id, MessageRow.direction == "out")
                 .order_by(MessageRow.id).limit(1))
        if lock:
            query = query.with_for_update(of=MessageRow)
        row = self.session.execute(query).first()
        return None if row is None else SentMessage(*row)

    def set_delivery_status(self, message_id: int, delivery_status: str,
                            error: str | None) -> None:
        """The provider's latest word on a message we sent (and its error code, if any)."""
        values: dict[str, Any] = {"delivery_status": delivery_status}
        if error:
            values["last_error"] = error
        self.session.execute(update(MessageRow).where(MessageRow.id == message_id).values(**values))

    def advance_delivery_status(self, provider_id: str, delivery_status: str,
                                error: str | None, replaces: frozenset[str],
                                replaces_none: bool) -> bool | None:
        """The provider's word on the message we sent under `provider_id`, kept when its
        current status is one of `replaces` (or none yet, with `replaces_none`): True when it
        moved, False when it stayed (a late or repeated report), None for no such message."""
        conn = self.session.connection()
        if replaces or replaces_none:
            if len(replaces) > _REPLACES:
                raise ValueError(f"at most {_REPLACES} statuses to replace")
            listed = sorted(replaces) + [None] * (_REPLACES - len(replaces))
            moved = conn.execute(_ADVANCE[replaces_none], {
                "sent_under": provider_id, "new_status": delivery_status,
                "error_code": error or None, **{f"replaces_{i}": s for i, s in enumerate(listed)}})
            if moved.rowcount:
                return True
        return False if conn.execute(_SENT_UNDER, {"sent_under": provider_id}).first() \
            else None

    def erase_messages(self, contact_id: int, thread_ids: Sequence[int], marker: str,
                       now: datetime) -> ErasedMessages:
        """The contact's messages (theirs in any thread or none, and every message of
        `thread_ids`, the threads addressed to them, whoever wrote): the queued ones cancelled
        (their outbox jobs settle cancelled when claimed: the message is no longer queued), and
        every body still there replaced by `marker`; the rows, their kinds, directions, channels,
        statuses and times stay."""
        m = _MESSAGES
        scope = or_(m.c.contact_id == contact_id, m.c.thread_id.in_(list(thread_ids))) \
            if thread_ids else m.c.contact_id == contact_id
        conn = self.session.connection()
        touched = frozenset(conn.execute(select(m.c.thread_id).distinct().where(
            scope, m.c.thread_id.is_not(None))).scalars())
        cancelled = conn.execute(update(m).where(
            scope, m.c.direction == "out", m.c.status == "queued").values(status="cancelled"))
        blanked = conn.execute(update(m).where(scope, m.c.redacted_at.is_(None)).values(
            body=marker, redacted_at=now))
        return ErasedMessages(blanked.rowcount, cancelled.rowcount, touched)

    def expired_bodies(self, before: datetime, limit: int) -> list[ExpiredBody]:
        """Up to `limit` messages stored before `before` whose body is still there, oldest
        first, each with its account (the thread's, else the contact's); not the queued ones,
        which must still go out as written."""
        rows = self.session.connection().execute(_EXPIRED, {"before": before, "limit": limit})
        return [ExpiredBody(r.id, r.account_id) for r in rows]

    def redact(self, message_ids: Sequence[int], marker: str, before: datetime,
               now: datetime) -> int:
        """Replace the bodies of these messages by `marker`, those still stored before `before`,
        present and not queued (checked again in the statement); how many."""
        if not message_ids:
            return 0
        result = self.session.connection().execute(_REDACT, {
            "ids": list(message_ids), "before": before, "marker": marker, "now": now})
        return result.rowcount


class SqlPlanChangeRepository(_Repository):
    """Plan changes confirmed in a conversation: one per account and billing period (core.ports, `uow.plan_changes`)."""

    def plan_change_in_period(self, account_id: int, period_start: date) -> PlanChangeView | None:
        row = self.session.scalars(select(PlanChangeRow).where(
            PlanChangeRow.account_id == account_id, PlanChangeRow.period_start == period_start)).first()
        return _plan_change(row) if row else None

    def plan_change_for_thread(self, thread_id: int) -> PlanChangeView | None:
        row = self.session.scalars(select(PlanChangeRow).where(PlanChangeRow.thread_id == thread_id)
                                   .order_by(PlanChangeRow.id.desc())).first()
        return _plan_change(row) if row else None

    def add_plan_change(self, *, account_id: int, thread_id: int | None, key: str, from_plan: str,
                        to_plan: str, direction: str, period_start: date, effective: date,
                        charge_today: Decimal, status: str, channel: str | None,
                        now: datetime) -> PlanChangeView:
        row = PlanChangeRow(account_id=account_id, thread_id=thread_id, idempotency_key=key,
                            from_plan=from_plan, to_plan=to_plan, direction=direction,
                            period_start=period_start, effective=effective,
                            charge_today=charge_today, status=status, channel=channel,
                            requested_at=now, applied_at=now if status == "done" else None)
        self.session.add(row)
        self.session.flush()  # the unique keys speak here, inside the transaction
        return _plan_change(row)

    def due_plan_changes(self, today: date, *, lock: bool = True) -> list[PlanChangeView]:
        """Pending changes effective by `today` (locked with `lock`: take their accounts' locks
        first)."""
        query = select(PlanChangeRow).where(PlanChangeRow.status == "pending",
                                            PlanChangeRow.effective <= today)
        rows = self.session.scalars(query.with_for_update() if lock else query)
        return [_plan_change(r) for r in rows]

    def mark_plan_change_done(self, change_id: int, now: datetime) -> None:
        self.session.execute(update(PlanChangeRow).where(PlanChangeRow.id == change_id)
                             .values(status="done", applied_at=now))


def _message(row: MessageRow | Row[Any]) -> MessageView:
    return MessageView(id=row.id, thread_id=row.thread_id, contact_id=row.contact_id,
                       channel=row.channel, direction=row.direction, kind=row.kind, body=row.body,
                       provider_id=row.provider_id, status=row.status, not_before=row.not_before,
                       at=row.at, redacted_at=row.redacted_at)


def _plan_change(row: PlanChangeRow) -> PlanChangeView:
    return PlanChangeView(id=row.id, account_id=row.account_id, thread_id=row.thread_id,
                          key=row.idempotency_key, from_plan=row.from_plan, to_plan=row.to_plan,
                          direction=row.direction, period_start=row.period_start,
                          effective=row.effective, charge_today=row.charge_today,
                          status=row.status, channel=row.channel, requested_at=row.requested_at)
