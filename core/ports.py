"""Ports: what the core needs from storage, as Protocols. Storage implements them in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from collections.abc import Collection, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Protocol

from core.audit import AuditEvent, StoredAuditEvent
from core.accounts import Account, Health, StoredAccount
from core.routing import Candidate, LastWrite
from core.thresholds import Crossing
from core.usage import UsageEvent, UsageMatrix


class Conflict(Exception):
    """A write lost a race with another writer (a unique key taken meanwhile); safe to retry."""


class StorageUnavailable(Exception):
    """The database cannot be reached or used right now (down, restarting, connection lost, no
    connection free); what arrived should be kept and tried again later."""


class ConnectionLost(StorageUnavailable):
    """The connection broke under the unit of work (the server restarted, or dropped an idle
    connection), and the next one gets a new connection. Connections are not checked before
    each use (a round trip per transaction): a broken one is found on its first statement, and
    `core.retry.retrying` runs the work again. Only raised before COMMIT was sent: broken
    during COMMIT, the work may have been kept, and running it again could repeat what has no
    key (an API message and its replies) or answer a landed Twilio message with nothing; that
    is a plain StorageUnavailable, not retried."""


@dataclass(frozen=True)
class Delivered:
    """An earlier delivery of an inbound message (same sender, channel and provider id)."""

    id: int
    thread_id: int | None


class StorageBusy(StorageUnavailable):
    """The database stayed locked by another writer for longer than we wait; try again later."""


class UsageTerms(NamedTuple):
    """What ingesting usage needs to know of an account."""

    id: int
    plan: str
    plan_since: datetime


@dataclass(frozen=True)
class ContactView:
    id: int
    account_id: int
    external_id: str
    role: str
    phone: str | None
    whatsapp: str | None
    web_user_id: str | None
    web_active_at: datetime | None
    opted_out_at: datetime | None
    whatsapp_opt_in_at: datetime | None = None
    whatsapp_inbound_at: datetime | None = None
    erased_at: datetime | None = None  # erased (core.erasure): no address, a pseudonym for an id
    name: str | None = None  # as the operator gave it (for the CSM: who to call)


@dataclass(frozen=True)
class ThreadView:
    id: int
    account_id: int
    contact_id: int | None
    current_plan: str
    target_plan: str
    direction: str
    state: str
    decline_reason: str | None
    last_channel: str | None
    confirm_period_start: date | None
    confirm_charge: Decimal | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    initiated_by: str = "business"  # or "buyer": the buyer wrote in with no thread open


@dataclass(frozen=True)
class MessageView:
    id: int
    thread_id: int | None
    contact_id: int | None
    channel: str
    direction: str
    kind: str
    body: str
    provider_id: str | None
    status: str
    not_before: datetime | None
    at: datetime
    redacted_at: datetime | None = None  # the body was removed (core.erasure, core.retention)


# Outbound messages no channel of ours showed the buyer: not out yet, withdrawn, never delivered,
# or relayed (returned to the caller of the conversation API, who delivers them: the widget does
# not show them, nor do they count as our last write to a number).
UNSEEN_STATUSES = ("queued", "cancelled", "failed", "relayed")


def seen_by_buyer(message: MessageView) -> bool:
    """Inbound messages, and outbound ones that actually went out."""
    return not (message.direction == "out" and message.status in UNSEEN_STATUSES)


@dataclass(frozen=True)
class PlanHistoryEntry:
    """A plan the account moved to: from which (None: its first), when, and how ("operator":
    the operator's API; "conversation": a change confirmed in a thread; "backfill": the plan an
    account had when the history began)."""

    from_plan: str | None
    to_plan: str
    at: datetime
    source: str


@dataclass(frozen=True)
class PlanChangeView:
    id: int
    account_id: int
    thread_id: int | None
    key: str
    from_plan: str
    to_plan: str
    direction: str
    period_start: date
    effective: date
    charge_today: Decimal
    status: str
    channel: str | None
    requested_at: datetime


# What the CSM lane adds to an escalation, kept beside its case figures: who claimed it, asked
# for a call or resolved it, and where it was posted (Slack's channel and ts).
LANE_KEYS = ("claimed_by", "call_requested", "resolved_by", "slack")


@dataclass(frozen=True)
class EscalationRecord:
    """An escalation as the use cases see it: `case` is the figures stored when it was opened
    (core.handlers.case_summary), `lane` the CSM lane's entries (LANE_KEYS) set so far."""

    id: int
    account_id: int
    thread_id: int | None
    reason: str
    status: str  # open | claimed | resolved
    created_at: datetime
    case: dict[str, Any]
    lane: dict[str, Any]


@dataclass(frozen=True)
class EscalationCard:
    """One escalation as a CSM sees it: with its account, health, thread and the buyer's last
    messages (a read model, storage.escalations)."""

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
class RoutingFacts:
    """What routing a message from a shared number needs (core.routing), read after the
    candidates' accounts are locked: the candidates, our last message on the medium to the
    number, and an earlier delivery of this very message (same provider id) to any of them."""

    candidates: tuple[Candidate, ...]
    last_write: LastWrite | None
    seen_inbound_id: int | None


class SignalDecision(NamedTuple):
    """The guardrails' verdict on a crossing, stored on its signal."""

    outcome: str
    reason: str | None = None
    defer_until: datetime | None = None
    thread_id: int | None = None


@dataclass(frozen=True)
class DailyUsage:
    """One metric's usage on one UTC day (the daily rollup): the sum of its quantities, the
    highest one and the last reading of the day."""

    metric: str
    day: date
    total: int
    max_quantity: int
    last_quantity: int


@dataclass(frozen=True)
class UsageHistory:
    """What replaying an account's thresholds needs (core.dryrun): its plan, the plans it has
    been on (oldest first), and its daily usage over a span of days; for the gauges (seats,
    integrations) also the last day before the span that had a reading, so the value in effect
    when the span opens is known."""

    account_id: int
    external_id: str
    vertical: str
    plan: str
    plan_since: datetime
    plans: tuple[PlanHistoryEntry, ...]
    days: tuple[DailyUsage, ...]  # by day, oldest first


# What removing accounts took away, table by table (core.services.remove_accounts).
Removed = dict[str, int]


class AccountRepository(Protocol):
    def get(self, external_id: str) -> StoredAccount | None: ...
    def get_by_id(self, account_id: int) -> StoredAccount: ...
    def lock(self, account_id: int) -> None: ...
    def lock_usage_terms(self, external_ids: Iterable[str]) -> dict[str, UsageTerms]: ...
    def usage_terms_after(self, after_id: int, limit: int) -> list[tuple[str, UsageTerms]]: ...
    def save(self, account: Account, now: datetime) -> StoredAccount: ...
    def contact_owner(self, contact_external_ids: Iterable[str]) -> dict[str, str]: ...
    def save_health(self, account_id: int, health: Health) -> None: ...
    def change_plan(self, account_id: int, plan: str, now: datetime, *, from_plan: str,
                    source: str, plan_change_id: int | None = None) -> None: ...
    def record_plan(self, account_id: int, from_plan: str | None, to_plan: str, at: datetime,
                    source: str, plan_change_id: int | None = None) -> None: ...
    def plan_history(self, account_id: int) -> list[PlanHistoryEntry]: ...
    def count(self) -> int: ...
    def remove(self, account_ids: Sequence[int]) -> Removed: ...


class UsageRepository(Protocol):
    def add_new(self, rows: list[tuple[int, UsageEvent]], received_at: datetime) -> set[str]: ...
    def matrices(self, account_ids: Iterable[int], now: datetime) -> dict[int, UsageMatrix]: ...
    def histories(self, after_id: int, limit: int, first_day: date,
                  last_day: date) -> list[UsageHistory]: ...


class ThresholdStateRepository(Protocol):
    def get_many(self, account_ids: Iterable[int]) -> dict[int, frozenset[str]]: ...
    def replace_many(self, states: dict[int, frozenset[str]], now: datetime) -> None: ...


class SignalRepository(Protocol):
    def add_many(self, crossings: list[tuple[int, Crossing, SignalDecision | None]],
                 detected_at: datetime) -> None: ...
    def for_account(self, account_id: int) -> list[tuple[Crossing, datetime, SignalDecision | None]]: ...


class ContactRepository(Protocol):
    """Contacts: their reach, consent, and which contacts a number or identity belongs to
    (storage.conversations.SqlContactRepository)."""

    def contact(self, external_id: str) -> ContactView | None: ...
    def contact_by_id(self, contact_id: int) -> ContactView | None: ...
    def contact_and_delivery(self, contact_id: int, channel: str, provider_id: str | None
                             ) -> tuple[ContactView | None, Delivered | None]: ...
    def contacts_by_address(self, fields: Sequence[str], address: str) -> list[ContactView]: ...
    def web_contact(self, account_external_id: str, web_user_id: str) -> ContactView | None: ...
    def addressee(self, account_id: int) -> ContactView | None: ...
    def routing_facts(self, channel: str, contact_ids: list[int],
                      provider_id: str | None) -> RoutingFacts: ...
    def touch(self, contact_id: int, activity: str, now: datetime) -> None: ...
    def set_opt_in(self, contact_id: int, field: str, at: datetime | None) -> None: ...
    def record_consent(self, contact_id: int, action: str, channel: str, source: str,
                       now: datetime) -> None: ...
    def consent_changed_after(self, contact_id: int, at: datetime) -> bool: ...
    def erased_contact(self, pseudonym: str) -> ContactView | None: ...
    def erase(self, contact_id: int, pseudonym: str, now: datetime) -> int: ...


class ThreadRepository(Protocol):
    """Threads: one conversation about one plan change, addressed to one contact
    (storage.conversations.SqlThreadRepository). `lock`: held until the transaction ends (take
    the account's lock first, core.locking)."""

    def thread(self, thread_id: int) -> ThreadView | None: ...
    def live_thread(self, account_id: int, target_plan: str) -> ThreadView | None: ...
    def thread_for_contact(self, contact: ContactView, *,
                           lock: bool = True) -> ThreadView | None: ...
    def live_threads_for_contact(self, contact_id: int) -> list[ThreadView]: ...
    def lock_threads_of_contact(self, contact_id: int) -> list[ThreadView]: ...
    def latest_thread(self, account_id: int) -> ThreadView | None: ...
    def create_thread(self, account_id: int, contact_id: int, current_plan: str,
                      target_plan: str, direction: str, state: str, channel: str,
                      now: datetime, *, initiated_by: str = "business") -> ThreadView: ...
    def save_thread(self, thread: ThreadView, now: datetime) -> None: ...
    def stale_threads(self, before: datetime, *, lock: bool = True) -> list[ThreadView]: ...
    def last_decline_at(self, account_id: int) -> datetime | None: ...


class SentMessage(NamedTuple):
    """A message we sent, found by the provider's id (for its delivery reports)."""

    id: int
    contact_id: int | None
    account_id: int | None
    channel: str
    delivery_status: str | None


class ErasedMessages(NamedTuple):
    """What erasing a contact's messages did: bodies replaced by the marker, queued messages
    withdrawn (cancelled: none of them goes out), and the threads that held any of them."""

    blanked: int
    cancelled: int
    thread_ids: frozenset[int]


class ExpiredBody(NamedTuple):
    """A message whose body the retention purge removes, with the account it belongs to (its
    thread's, else its contact's; None for a message of no contact), to be locked first."""

    id: int
    account_id: int | None


class MessageRepository(Protocol):
    """Messages, inbound and outbound, in a thread or outside one
    (storage.conversations.SqlMessageRepository)."""

    def add_message(self, *, thread_id: int | None, contact_id: int | None, channel: str,
                    direction: str, kind: str, body: str, status: str, now: datetime,
                    provider_id: str | None = None, in_reply_to: int | None = None,
                    not_before: datetime | None = None) -> int: ...
    def add_unmatched_inbound(self, channel: str, body: str, provider_id: str | None,
                              now: datetime) -> int | None: ...
    def replies_to(self, message_id: int) -> list[MessageView]: ...
    def messages(self, thread_id: int) -> list[MessageView]: ...
    def visible_messages(self, contact_id: int, thread_id: int | None, after: int,
                         limit: int) -> list[MessageView]: ...
    def due_polled_messages(self, contact_id: int, thread_id: int | None,
                            channels: Sequence[str], now: datetime) -> list[MessageView]: ...
    def mark_polled_sent(self, message_ids: list[int], now: datetime) -> None: ...
    def cancel_queued_openings(self, thread_id: int) -> int: ...
    def prompts_since(self, contact_id: int, since: datetime) -> int: ...
    def outbound_by_provider_id(self, provider_id: str, *,
                                lock: bool = False) -> SentMessage | None: ...
    def set_delivery_status(self, message_id: int, delivery_status: str,
                            error: str | None) -> None: ...
    def advance_delivery_status(self, provider_id: str, delivery_status: str,
                                error: str | None, replaces: frozenset[str],
                                replaces_none: bool) -> bool | None: ...
    def erase_messages(self, contact_id: int, thread_ids: Sequence[int], marker: str,
                       now: datetime) -> ErasedMessages: ...
    def expired_bodies(self, before: datetime, limit: int) -> list[ExpiredBody]: ...
    def redact(self, message_ids: Sequence[int], marker: str, before: datetime,
               now: datetime) -> int: ...


class PlanChangeRepository(Protocol):
    """Plan changes confirmed in a conversation, one per account and billing period
    (storage.conversations.SqlPlanChangeRepository)."""

    def plan_change_in_period(self, account_id: int,
                              period_start: date) -> PlanChangeView | None: ...
    def plan_change_for_thread(self, thread_id: int) -> PlanChangeView | None: ...
    def add_plan_change(self, *, account_id: int, thread_id: int | None, key: str,
                        from_plan: str, to_plan: str, direction: str, period_start: date,
                        effective: date, charge_today: Decimal, status: str,
                        channel: str | None, now: datetime) -> PlanChangeView: ...
    def due_plan_changes(self, today: date, *, lock: bool = True) -> list[PlanChangeView]: ...
    def mark_plan_change_done(self, change_id: int, now: datetime) -> None: ...


class EscalationRepository(Protocol):
    """Escalations to the CSM lane (storage.escalations.SqlEscalationRepository)."""

    def add(self, account_id: int, thread_id: int | None, reason: str, case: dict[str, Any],
            now: datetime) -> int: ...
    def has_open(self, account_id: int, *, thread_id: int | None = None,
                 reason: str | None = None) -> bool: ...
    def of_account(self, account_id: int) -> list[EscalationRecord]: ...
    def account_of(self, escalation_id: int) -> int | None: ...
    def get(self, escalation_id: int, *, lock: bool = False) -> EscalationRecord | None: ...
    def update(self, escalation_id: int, *, status: str | None = None,
               **lane: dict[str, Any]) -> None: ...
    def card(self, escalation_id: int) -> EscalationCard | None: ...
    def recent_cards(self, limit: int = 50) -> list[EscalationCard]: ...
    def account_cards(self, account_id: int, limit: int = 5) -> list[EscalationCard]: ...


class JobQueue(Protocol):
    """Work to run after the commit, at least once (storage.outbox); due at `due` (default:
    now)."""

    def enqueue(self, kind: str, key: str, payload: dict[str, Any], now: datetime, *,
                due: datetime | None = None) -> bool: ...


@dataclass(frozen=True)
class MessageFacts:
    """What storage read of an outbound message when its outbox job was claimed: the message,
    its contact's reach and consent as they stand now, and its thread's state
    (core.delivery.verdict decides from them)."""

    id: int
    status: str  # the message's own: queued, or settled meanwhile (a reply cancelled it)
    channel: str
    kind: str
    body: str
    thread_id: int | None
    thread_state: str | None
    account_id: int | None  # the thread's account, else the contact's
    contact_id: int | None  # None: the message has no contact (any more)
    # The contact's fields as in ContactView, read by the channel's declared names
    # (core.channels.Capabilities: address, opt_in, activity).
    opted_out: bool
    whatsapp_opt_in_at: datetime | None
    phone: str | None
    whatsapp: str | None
    whatsapp_inbound_at: datetime | None  # the contact's last WhatsApp message (24-hour window)
    timezone: str | None = None  # the account's: quiet hours where the number names no zone


class OutboxRepository(Protocol):
    """The outbound messages the outbox's "message" jobs deliver (storage.delivery): their facts
    at claim time and their outcomes. `attempts` mirrors the job's count of sends started."""

    def message_facts(self, message_ids: Iterable[int]) -> dict[int, MessageFacts]: ...
    def contact_account(self, contact_id: int) -> int | None: ...
    def lock_thread(self, thread_id: int) -> ThreadView | None: ...
    def mark_sent(self, message_id: int, provider_id: str, attempts: int, now: datetime, *,
                  if_status: Iterable[str]) -> bool: ...
    def settle(self, message_id: int, status: str, error: str, attempts: int) -> bool: ...
    def note_attempt(self, message_id: int, error: str, attempts: int) -> bool: ...


@dataclass(frozen=True)
class CallView:
    """A call the buyer asked for (core.calls), as stored. No number: it goes to the contact's."""

    id: int
    account_id: int
    contact_id: int | None
    thread_id: int | None
    status: str
    reason: str  # callback | retry
    attempt: int
    requested_at: datetime | None  # the time the buyer named, if they named one
    scheduled_for: datetime
    provider_id: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CallFacts:
    """What the check at claim time, and a provider's report, read about a call."""

    call: CallView
    contact: ContactView | None
    thread_state: str | None
    timezone: str  # the account's: the zone when the number names none
    vertical: str  # the account's (a HIPAA vertical: no account details on a machine)
    plan_changed: bool = False  # the account's plan is no longer the thread's (changed elsewhere)


class CallRepository(Protocol):
    """Calls (storage.calls): stored, read, and updated whole."""

    def add(self, *, account_id: int, contact_id: int, thread_id: int | None, reason: str,
            attempt: int, requested_at: datetime | None, scheduled_for: datetime,
            now: datetime) -> int: ...
    def get(self, call_id: int, *, lock: bool = False) -> CallView | None: ...
    def facts(self, call_id: int) -> CallFacts | None: ...
    def by_provider_id(self, provider_id: str) -> CallView | None: ...
    def pending_for_contact(self, contact_id: int) -> CallView | None: ...
    def waiting(self, *, contact_id: int | None = None,
                thread_id: int | None = None) -> list[CallView]: ...
    def cancel_waiting(self, *, contact_id: int | None = None, thread_id: int | None = None,
                       why: str, now: datetime) -> int: ...
    def of_thread(self, thread_id: int) -> list[CallView]: ...
    def save(self, call: CallView, now: datetime) -> None: ...


@dataclass(frozen=True)
class PlanMove:
    """One entry of an account's plan history."""

    at: datetime
    from_plan: str | None
    to_plan: str


@dataclass(frozen=True)
class OpportunityFacts:
    """An account's first up-tier crossing in the window, as stored, with what followed: its
    thread (if the crossing opened one), the thread's opening (when and on what channel it was
    first sent) and the account's plan history from the crossing on."""

    account: str
    vertical: str
    metric: str
    from_plan: str
    to_plan: str
    crossed_at: datetime
    detected_at: datetime
    outcome: str | None
    reason: str | None
    thread_state: str | None = None
    decline_reason: str | None = None
    opening_channel: str | None = None
    opening_sent_at: datetime | None = None
    plan_moves: tuple[PlanMove, ...] = ()


class MetricsRepository(Protocol):
    """What the program's figures are computed from (storage.metrics; core.metrics)."""

    def opportunity_facts(self, start: datetime, end: datetime) -> list[OpportunityFacts]: ...


class AuditTrail(Protocol):
    """The audit trail (core/audit.py; storage.audit.SqlAuditTrail): `append` writes one event
    in a transaction of its own, numbered and chained; `events` reads them in order."""

    def append(self, event: AuditEvent) -> StoredAuditEvent: ...
    def events(self, start: datetime | None = None, end: datetime | None = None, *,
               after_seq: int = 0) -> Iterator[StoredAuditEvent]: ...


class InboundSpool(Protocol):
    """The inbound messages kept on disk while the database was unreachable (web.spool): an
    erasure removes those its contact sent, waiting or set aside."""

    def forget(self, addresses: Collection[str]) -> int: ...


@dataclass(frozen=True)
class OperatorView:
    """A console operator as stored (core.operators); `password_hash` never leaves the core."""

    id: int
    email: str
    name: str
    role: str  # admin | csm
    password_hash: str
    created_at: datetime
    last_sign_in_at: datetime | None
    disabled: bool


class Throttle(NamedTuple):
    """Failed sign-ins of one key since `window_start`, and until when the key is refused."""

    failures: int
    window_start: datetime
    locked_until: datetime | None


class OperatorRepository(Protocol):
    """Operators and the sign-in throttle (storage.operators)."""

    def by_email(self, email: str) -> OperatorView | None: ...
    def get(self, operator_id: int) -> OperatorView | None: ...
    def all(self) -> list[OperatorView]: ...
    def count(self) -> int: ...
    def add(self, *, email: str, name: str, password_hash: str, role: str,
            now: datetime) -> OperatorView: ...
    def set_password(self, operator_id: int, password_hash: str) -> None: ...
    def set_disabled(self, operator_id: int, disabled: bool) -> None: ...
    def signed_in(self, operator_id: int, now: datetime) -> None: ...
    def throttle(self, key: str) -> Throttle | None: ...
    def save_throttle(self, key: str, throttle: Throttle | None) -> None: ...


class PasswordHasher(Protocol):
    """Salted, slow password hashing (web.passwords: werkzeug's scrypt), handed to the core."""

    def hash(self, password: str) -> str: ...
    def verify(self, hashed: str, password: str) -> bool: ...


@dataclass(frozen=True)
class AccountFilter:
    """Which accounts a listing shows: each given field must match (`state`: the live thread's,
    or "none" for no live thread; `q`: a case-insensitive part of the external id or name)."""

    plan: str | None = None
    vertical: str | None = None
    state: str | None = None
    q: str | None = None


@dataclass(frozen=True)
class AccountSummary:
    """One account in a listing: its fields, health and live thread (None: no live thread)."""

    external_id: str
    name: str
    plan: str
    vertical: str
    timezone: str
    health: Health
    live_thread: ThreadView | None
    updated_at: datetime


@dataclass(frozen=True)
class ConsentEventView:
    contact_id: int
    action: str  # grant | revoke
    channel: str
    source: str
    at: datetime


class AccountReads(Protocol):
    """Read models over many accounts, and one account's whole history (storage.reads)."""

    def page(self, filters: AccountFilter, offset: int,
             limit: int) -> tuple[int, list[AccountSummary]]: ...
    def counts(self) -> tuple[dict[str, int], dict[str, int]]: ...
    def messages_of_account(self, account_id: int) -> list[MessageView]: ...
    def calls_of_account(self, account_id: int) -> list[CallView]: ...
    def consent_of_account(self, account_id: int) -> list[ConsentEventView]: ...


class UnitOfWork(Protocol):
    """One transaction: rolls back on leaving unless `commit()` was called."""

    accounts: AccountRepository
    usage: UsageRepository
    thresholds: ThresholdStateRepository
    signals: SignalRepository
    contacts: ContactRepository
    threads: ThreadRepository
    messages: MessageRepository
    plan_changes: PlanChangeRepository
    escalations: EscalationRepository
    jobs: JobQueue
    outbox: OutboxRepository
    calls: CallRepository
    metrics: MetricsRepository
    operators: OperatorRepository
    reads: AccountReads

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def commit(self) -> None: ...
