"""SQLAlchemy 2 tables. Alembic migrations under storage/migrations create them; tests check the
migrations and these models agree."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (JSON, BigInteger, Date, DateTime, Dialect, ForeignKey, Index, Integer,
                        MetaData, Numeric, String, Table, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite has no BIGINT autoincrement; INTEGER PRIMARY KEY is its 64-bit rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (naive text) and PostgreSQL (timestamptz) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # Every model here maps a Table (DeclarativeBase says FromClause, which any mapping may be);
    # the Core statements take `X.__table__` as one (SQLAlchemy's advice, sqlalchemy#9130).
    __table__: ClassVar[Table]


# Indexes only the migrations make, on PostgreSQL only (expression indexes of one dialect:
# trigram indexes for the account list's search, migration 0015). Autogenerate and the test
# that compares the migrations with these models leave them out (`in_models`).
MIGRATION_ONLY_INDEXES = frozenset({"ix_accounts_external_id_trgm", "ix_accounts_name_trgm"})


def in_models(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's include_name: whether a schema object is described by these models."""
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)


class AccountRow(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        # The account list filtered by plan or vertical, in external id order (migration 0015;
        # on PostgreSQL also trigram indexes for its search, which only the migration makes).
        Index("ix_accounts_plan_external_id", "plan", "external_id"),
        Index("ix_accounts_vertical_external_id", "vertical", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(50))
    vertical: Mapped[str] = mapped_column(String(50))
    timezone: Mapped[str] = mapped_column(String(64))
    billing_day: Mapped[int] = mapped_column(Integer)
    plan_since: Mapped[datetime] = mapped_column(UTCDateTime)
    csat: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))  # core.accounts.HEALTH_PLACES
    sentiment: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))
    open_escalations: Mapped[int] = mapped_column(Integer, default=0)
    health_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    contacts: Mapped[list[ContactRow]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="ContactRow.position")


class ContactRow(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    whatsapp: Mapped[str | None] = mapped_column(String(20), index=True)
    web_user_id: Mapped[str | None] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: may be prompted
    web_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last seen in the product
    # WhatsApp: the operator giving the number is the contact's opt-in (a consent event, source
    # operator); the 24-hour customer-service window runs from the contact's last WhatsApp message.
    whatsapp_opt_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    whatsapp_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Erased (core.erasure): the personal fields are NULL, external_id is a pseudonym, and the
    # row stays so the contact's threads, messages and consent events keep counting.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[AccountRow] = relationship(back_populates="contacts")


class UsageEventRow(Base):
    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_account_at", "account_id", "at"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageDailyRow(Base):
    """Per account, metric and UTC day: the sum and the highest value, and the day's last reading.

    Kept in step with usage_events by the same transaction. The dry run reads them, and a usage
    row (usage_totals) that days have left the window of subtracts those days' rows.
    """

    __tablename__ = "usage_daily"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
    max_quantity: Mapped[int] = mapped_column(BigInteger)
    last_quantity: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageTotalRow(Base):
    """Per account, its usage summed so far, kept in step with usage_events by the same
    transaction (storage/usage_totals.py), so that a usage matrix reads one row per account plus
    the raw events of the window's first, partial day.

    The counters (`messages`, `features`: a JSON object of feature name to hits) hold the days
    after `base_day`; a reader whose window starts later subtracts the days in between from
    usage_daily (few: a writer moves `base_day` up to its window's first day). `peak` is the
    highest integrations reading on those days and `peak_day` the latest day it was read on;
    `carried` the latest integrations reading before `base_day`; `seats` and `integrations` the
    latest readings by event time (each with its `_at`)."""

    __tablename__ = "usage_totals"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            primary_key=True)
    base_day: Mapped[date] = mapped_column(Date)
    messages: Mapped[int] = mapped_column(BigInteger)
    features: Mapped[str | None] = mapped_column(Text)
    seats: Mapped[int | None] = mapped_column(BigInteger)
    seats_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    integrations: Mapped[int | None] = mapped_column(BigInteger)
    integrations_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    peak: Mapped[int | None] = mapped_column(BigInteger)
    peak_day: Mapped[date | None] = mapped_column(Date)
    carried: Mapped[int | None] = mapped_column(BigInteger)
    carried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ThresholdStateRow(Base):
    """A threshold an account is at-or-above now (a row per key): what makes them edge-triggered."""

    __tablename__ = "threshold_states"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignalRow(Base):
    """A threshold crossing: metric, value, threshold, when it happened and when we saw it."""

    __tablename__ = "signals"
    __table_args__ = (Index("ix_signals_account_detected", "account_id", "detected_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str] = mapped_column(String(4))
    from_plan: Mapped[str] = mapped_column(String(50))
    to_plan: Mapped[str] = mapped_column(String(50))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[Decimal] = mapped_column(Numeric(20, 2))  # a 30-day sum of up to 10**12 each
    threshold: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    crossed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[str | None] = mapped_column(String(200))
    # The guardrails' decision on this crossing (§5): prompted, deferred or suppressed, and why.
    outcome: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(30))
    defer_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id", ondelete="SET NULL"))


# Thread states that are still open to a business-initiated offer; at most one such thread per
# account and target plan (a partial unique index, the same on SQLite and PostgreSQL).
LIVE_STATES = ("open", "offered", "awaiting_confirmation")
_LIVE = "state IN ('open', 'offered', 'awaiting_confirmation')"


class ThreadRow(Base):
    """A conversation about one tier change, addressed to one contact, on any of their channels."""

    __tablename__ = "threads"
    __table_args__ = (
        Index("uq_threads_live_account_target", "account_id", "target_plan", unique=True,
              sqlite_where=text(_LIVE), postgresql_where=text(_LIVE)),
        Index("ix_threads_contact_opened", "contact_id", "opened_at"),
        # The account list filtered by the live thread's state starts from these.
        Index("ix_threads_live_state", "state", "account_id",
              sqlite_where=text(_LIVE), postgresql_where=text(_LIVE)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    current_plan: Mapped[str] = mapped_column(String(50))
    target_plan: Mapped[str] = mapped_column(String(50))
    direction: Mapped[str] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(30))
    decline_reason: Mapped[str | None] = mapped_column(String(20))
    last_channel: Mapped[str | None] = mapped_column(String(20))
    # The figures the confirmation step showed: a confirmation charges exactly these, or is asked
    # again when they no longer hold (a new billing period, a changed plan).
    confirm_period_start: Mapped[date | None] = mapped_column(Date)
    confirm_charge: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "business": opened by a crossing; "buyer": the buyer wrote in first (e.g. control cohort)
    initiated_by: Mapped[str] = mapped_column(String(10), default="business",
                                              server_default="business")


# A message kept from a sender who is no contact (storage.conversations.add_unmatched_inbound).
# Its own kind, not "no contact": a contact removed by a PUT leaves its messages with no contact
# too, and those must not be taken for a stranger's (two such with one id made every later PUT
# of the account a 409).
UNMATCHED_KIND = "unmatched"
_UNMATCHED = "kind = 'unmatched' AND provider_id IS NOT NULL"
_UNREDACTED = "redacted_at IS NULL"


class MessageRow(Base):
    """Every inbound and outbound message. An outbound row is the record of the message: `status`
    queued until it goes out (not before `not_before`): an SMS or WhatsApp message by its outbox
    job (kind "message", core.delivery), a web chat message when the widget's poll shows it."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_thread_at", "thread_id", "at"),
        # A provider's message id identifies a delivery of one sender on one channel: a repeat is
        # answered once, and one sender's id can never reach another's conversation.
        UniqueConstraint("contact_id", "channel", "provider_id",
                         name="uq_messages_contact_channel_provider_id"),
        # The same for senders who are no contact (NULLs never collide in the constraint above):
        # two concurrent deliveries of one message are stored, and answered, once.
        Index("uq_messages_unmatched_provider_id", "channel", "provider_id", unique=True,
              sqlite_where=text(_UNMATCHED), postgresql_where=text(_UNMATCHED)),
        # Status callbacks find the message by the provider's id.
        Index("ix_messages_provider_id", "provider_id"),
        # The retention purge reads the oldest bodies still there (core.retention): the index
        # holds only those, so a pass never walks the rows purged before.
        Index("ix_messages_unredacted_at", "at",
              sqlite_where=text(_UNREDACTED), postgresql_where=text(_UNREDACTED)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"),
                                                   index=True)
    channel: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    # opening | reply | inbound | unrouted (core.routing) | unmatched (UNMATCHED_KIND)
    kind: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    in_reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    # received | queued | sent | delivered | failed | cancelled (an opening the buyer got in a reply)
    status: Mapped[str] = mapped_column(String(20))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Outbound delivery, as its outbox job records it (the job keeps the lease and the next
    # try): sends started, the last error, when it went out, the provider's last word.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivery_status: Mapped[str | None] = mapped_column(String(20))  # the provider's last word
    # When the body was removed: the contact's erasure, or the retention purge (core.erasure,
    # core.retention); the body is then a fixed marker saying which.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsentEventRow(Base):
    """Every consent change, with its source: who may be sent business-initiated messages."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(10))  # revoke | grant
    channel: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(30))  # buyer | operator | carrier | csm
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanHistoryRow(Base):
    """Every plan an account has been on, from when, and how it got there: the record the
    experiment reads conversions from (an operator's PUT, a confirmed change in a conversation,
    a down-tier applied at its period), kept when `accounts.plan` moves on."""

    __tablename__ = "plan_history"
    __table_args__ = (Index("ix_plan_history_account_at", "account_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    from_plan: Mapped[str | None] = mapped_column(String(50))  # None: the account's first plan
    to_plan: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(20))  # operator | conversation | backfill
    plan_change_id: Mapped[int | None] = mapped_column(
        ForeignKey("plan_changes.id", ondelete="SET NULL"))


class PlanChangeRow(Base):
    """A plan change: at most one pending-or-done per account and billing period (the unique key
    is what makes an upgrade run once, whatever channels and retries do)."""

    __tablename__ = "plan_changes"
    __table_args__ = (UniqueConstraint("account_id", "period_start"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    from_plan: Mapped[str] = mapped_column(String(50))
    to_plan: Mapped[str] = mapped_column(String(50))
    direction: Mapped[str] = mapped_column(String(4))
    period_start: Mapped[date] = mapped_column(Date)
    effective: Mapped[date] = mapped_column(Date)
    charge_today: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(10))  # pending | done
    channel: Mapped[str | None] = mapped_column(String(20))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EscalationRow(Base):
    """A hand-over to a CSM, with its reason code and the case as it stood."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(20))  # health | leaving | human | discount | callback
    case: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))  # open | claimed | resolved
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallRow(Base):
    """A phone call the buyer asked for (core.calls): scheduled, then placed through the outbox
    (its job "call:<id>"), then followed by Twilio's status callbacks. No number is kept here:
    the call goes to the contact's phone as it stands when it is placed."""

    __tablename__ = "calls"
    __table_args__ = (Index("ix_calls_contact_status", "contact_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id", ondelete="SET NULL"),
                                                  index=True)
    # scheduled | ringing | in_progress | completed | no_answer | busy | machine | failed | cancelled
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(20))  # callback | retry
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the time the buyer named
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    provider_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    note: Mapped[str | None] = mapped_column(String(200))  # why it ended so (no personal data)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """Work to do after a commit, at least once, retried with backoff: webhooks, CSM notices,
    SMS and WhatsApp messages (storage.outbox). `key` makes a job unique, so a retried request
    can never enqueue it twice."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))  # pending | sent | failed | cancelled
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEventRow(Base):
    """The audit trail (core/audit.py): append-only (the migration adds triggers that refuse
    UPDATE and DELETE), chained by hash, numbered without gaps by `seq`."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(300))
    outcome: Mapped[str] = mapped_column(String(10))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))



class OperatorRow(Base):
    """A person who signs in to the operator console (core.operators): an admin, or a csm who
    may only read. The password is kept as a salted hash (web.passwords), never as written."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # kept lower-case
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(10))  # admin | csm
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(default=False, server_default=text("false"))


class SignInThrottleRow(Base):
    """Failed sign-ins per key (an email's digest, a peer address), counted in a window: past a
    few, sign-ins for that key are refused until `locked_until` (core.operators)."""

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsageSourceCursorRow(Base):
    """Pull mode (cli/pull.py): per usage source, the cursor value of the last row ingested (as
    text), when it was last pulled and what stopped that pull, if anything."""

    __tablename__ = "usage_source_cursors"

    source: Mapped[str] = mapped_column(String(60), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
