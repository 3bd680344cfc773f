"""Use cases: one unit of work each, driven by the edges (HTTP API, CLI, demo loader).

Handlers see storage only through the ports in `core.ports` and get `now` passed in, so they stay
as pure as the rest of the core; a handler commits once, at its end, or not at all.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Sequence

from core.accounts import (Account, Contact, Health, check_billing_day, check_health, check_text,
                           check_timezone, checked_contacts)
from core.case import Case, current_case
from core.catalog import Catalog
from core.errors import DomainError, NotFound
from core.locking import lock_account_named
from core.case import terms
from core.handlers import Settings, open_conversation
from core.ports import PlanHistoryEntry, Removed, SignalDecision, UnitOfWork
from core.retry import retrying
from core.thresholds import Crossing, ingest
from core.usage import FUTURE_SKEW, MAX_QUANTITY, UsageEvent, UsageMatrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountInput:
    external_id: str
    name: str
    plan: str
    vertical: str
    timezone: str
    billing_day: int
    contacts: tuple[Contact, ...]
    plan_since: datetime | None = None


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    crossings: tuple[tuple[Crossing, SignalDecision | None], ...]


def upsert_account(uow: UnitOfWork, catalog: Catalog, data: AccountInput, now: datetime,
                   phone_region: str = "US") -> tuple[Account, UsageMatrix, bool]:
    """Create or replace an account and its contacts; return it, its usage, and whether it was
    created. Phones are normalised to E.164 (`phone_region` reads numbers without "+").

    A plan change restarts `plan_since` unless the input gives it, and forgets which thresholds
    of the old plan were above: the new plan's thresholds start armed."""
    check_text(data.external_id, "external_id")
    check_text(data.name, "name")
    catalog.plan(data.plan)
    catalog.vertical(data.vertical)
    check_timezone(data.timezone)
    check_billing_day(data.billing_day)
    contacts = checked_contacts(data.contacts, phone_region)
    if data.plan_since is not None and data.plan_since > now:
        raise DomainError("plan_since is in the future", code="invalid_timestamp", field="plan_since")

    def attempt() -> tuple[Account, UsageMatrix, bool]:
        with uow:
            # Locked before it is read: a plan confirmed in a conversation meanwhile is seen,
            # and recorded in the plan history as the plan this change moves from.
            lock_account_named(uow, data.external_id)
            owners = uow.accounts.contact_owner(c.external_id for c in contacts)
            for i, c in enumerate(contacts):
                owner = owners.get(c.external_id)
                if owner is not None and owner != data.external_id:
                    raise DomainError(f"contact {c.external_id!r} belongs to another account",
                                      code="contact_conflict", field=f"contacts[{i}].external_id")
            existing = uow.accounts.get(data.external_id)
            if data.plan_since is not None:
                plan_since = data.plan_since
            elif existing is not None and existing.plan == data.plan:
                plan_since = existing.plan_since
            else:
                plan_since = now
            account = Account(
                id=existing.id if existing else None,
                external_id=data.external_id, name=data.name, plan=data.plan,
                vertical=data.vertical, timezone=data.timezone, billing_day=data.billing_day,
                plan_since=plan_since, contacts=contacts,
                health=existing.health if existing else Health(),
            )
            saved = uow.accounts.save(account, now)
            _whatsapp_consent(uow, existing, contacts, now)
            if existing is None or existing.plan != data.plan:  # kept for the experiment
                uow.accounts.record_plan(saved.id, existing.plan if existing else None,
                                         data.plan, plan_since, "operator")
            if existing is not None and existing.plan != data.plan:
                uow.thresholds.replace_many({saved.id: frozenset()}, now)
            matrix = uow.usage.matrices([saved.id], now)[saved.id]
            uow.commit()
            return saved, matrix, existing is None

    return retrying(attempt)


def _whatsapp_consent(uow: UnitOfWork, existing: Account | None, contacts: Sequence[Contact],
                      now: datetime) -> None:
    """The operator giving a contact a WhatsApp number (a new one, or another) is the contact's
    opt-in to WhatsApp, recorded with its source; taking the number away withdraws it. The same
    number again changes nothing."""
    before = {c.external_id: c.whatsapp for c in existing.contacts} if existing else {}
    for contact in contacts:
        if contact.whatsapp == before.get(contact.external_id):
            continue
        view = uow.contacts.contact(contact.external_id)
        if view is None:
            continue
        uow.contacts.set_opt_in(view.id, "whatsapp_opt_in_at", now if contact.whatsapp else None)
        if contact.whatsapp:
            uow.contacts.record_consent(view.id, "grant", "whatsapp", "operator", now)


def get_account(uow: UnitOfWork, external_id: str, now: datetime) -> tuple[Account, UsageMatrix]:
    """An account with its usage matrix as of `now`."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        return account, uow.usage.matrices([account.id], now)[account.id]


def check_events(catalog: Catalog, items: Sequence[UsageEvent | DomainError],
                 accounts: Mapping[str, object], now: datetime) -> list[UsageEvent]:
    """The events of a batch, or the error of its first bad item, whatever kind of error it is.

    `items` holds the parsed events; an edge that could not read an item puts the error there
    instead (and need not read further)."""
    events = []
    for i, e in enumerate(items):
        if isinstance(e, DomainError):
            raise e
        where = f"events[{i}]"
        check_text(e.id, f"{where}.id", index=i)
        try:
            catalog.check_metric(e.metric)
        except DomainError as exc:
            raise DomainError(f"{where}: {exc.message}", code=exc.code,
                              field=f"{where}.metric", index=i) from None
        if e.quantity < 0:
            raise DomainError(f"{where}: quantity must be >= 0, got {e.quantity}",
                              code="negative_quantity", field=f"{where}.quantity", index=i)
        if e.quantity > MAX_QUANTITY:
            raise DomainError(f"{where}: quantity must be <= {MAX_QUANTITY:,}, got {e.quantity}",
                              code="invalid_quantity", field=f"{where}.quantity", index=i)
        if e.at.tzinfo is None:
            raise DomainError(f"{where}: 'at' needs a time zone (e.g. 'Z' or '+00:00')",
                              code="invalid_timestamp", field=f"{where}.at", index=i)
        if e.at > now + FUTURE_SKEW:
            raise DomainError(f"{where}: 'at' {e.at.isoformat()} is in the future",
                              code="invalid_timestamp", field=f"{where}.at", index=i)
        if e.account not in accounts:
            raise DomainError(f"{where}: no account {e.account!r}", code="unknown_account",
                              field=f"{where}.account", index=i)
        events.append(e)
    return events


def record_usage(uow: UnitOfWork, catalog: Catalog, items: Sequence[UsageEvent | DomainError],
                 now: datetime, settings: Settings | None = None) -> IngestResult:
    """Store a batch of usage events once each (by id) and evaluate thresholds as they arrive.

    All or nothing: the first bad item (see `check_events`) rejects the whole batch. Events
    already stored, or repeated within the batch, count as duplicates and change nothing. With
    `settings`, each crossing goes through the guardrails in the same transaction and may open a
    conversation (core.handlers.open_conversation); its decision is stored on the signal.
    """

    def attempt() -> IngestResult:
        with uow:
            accounts = uow.accounts.lock_usage_terms(
                {e.account for e in items if isinstance(e, UsageEvent)})
            events = check_events(catalog, items, accounts, now)
            unique: dict[str, UsageEvent] = {}
            for e in events:
                unique.setdefault(e.id, e)  # an id repeated within the batch counts once
            ids = [accounts[a].id for a in {e.account for e in unique.values()}]
            matrices = uow.usage.matrices(ids, now)  # before this batch is stored
            stored = uow.usage.add_new([(accounts[e.account].id, e) for e in unique.values()], now)
            by_account: dict[str, list[UsageEvent]] = defaultdict(list)
            for e in unique.values():
                if e.id in stored:
                    by_account[e.account].append(e)
            states = uow.thresholds.get_many(accounts[a].id for a in by_account)
            crossings: list[tuple[int, Crossing, SignalDecision | None]] = []
            changed: dict[int, frozenset[str]] = {}
            for external_id, account_events in by_account.items():
                account = accounts[external_id]
                before = states.get(account.id, frozenset())
                matrix, after, fired = ingest(catalog, catalog.plan(account.plan),
                                              matrices[account.id], before, account_events,
                                              account.plan_since, now)
                if after != before:
                    changed[account.id] = after
                if fired and settings is not None:
                    full = uow.accounts.get_by_id(account.id)
                    crossings.extend((account.id, c, open_conversation(
                        uow, catalog, settings, full, matrix, c, now)) for c in fired)
                else:
                    crossings.extend((account.id, c, None) for c in fired)
            uow.thresholds.replace_many(changed, now)
            uow.signals.add_many(crossings, now)
            uow.commit()
            return IngestResult(len(stored), len(events) - len(stored),
                                tuple((c, d) for _, c, d in crossings))

    result = retrying(attempt)
    if result.crossings:
        log.info("usage batch: %d accepted, %d duplicates, %d thresholds crossed",
                 result.accepted, result.duplicates, len(result.crossings))
    return result


def record_health(uow: UnitOfWork, external_id: str, csat: Decimal | None,
                  sentiment: Decimal | None, open_escalations: int,
                  now: datetime) -> tuple[Account, UsageMatrix]:
    """Replace an account's reported health; return the account and its usage."""
    check_health(csat, sentiment, open_escalations)
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        health = Health(csat=csat, sentiment=sentiment, open_escalations=open_escalations,
                        updated_at=now)
        uow.accounts.save_health(account.id, health)
        matrix = uow.usage.matrices([account.id], now)[account.id]
        uow.commit()
        return replace(account, health=health), matrix


def get_case(uow: UnitOfWork, catalog: Catalog, external_id: str,
             now: datetime) -> tuple[Account, Case | None]:
    """The account and the case for the tier change that applies to it now (or None)."""
    account, matrix = get_account(uow, external_id, now)
    return account, current_case(catalog, terms(account), matrix, now)


def plan_history(uow: UnitOfWork, external_id: str) -> list[PlanHistoryEntry]:
    """The plans the account has been on, oldest first."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        return uow.accounts.plan_history(account.id)


def list_signals(uow: UnitOfWork,
                 external_id: str) -> list[tuple[Crossing, datetime, SignalDecision | None]]:
    """The account's threshold crossings, newest first, each with when it was detected."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        return uow.signals.for_account(account.id)


def remove_accounts(uow: UnitOfWork, external_ids: Sequence[str]) -> Removed:
    """Remove these accounts and everything of theirs (usage, signals, contacts, threads,
    messages, escalations, calls, plan history, their outbox jobs), in one transaction; ids
    with no account are skipped. What each table lost, by name. The audit trail stays: it is
    append-only. For the demo's reset (devtools.demo.reset): no API offers it."""

    def attempt() -> Removed:
        with uow:
            # Locked first, in id order (core/locking.py): nothing writes to them meanwhile.
            terms = uow.accounts.lock_usage_terms(external_ids)
            removed = uow.accounts.remove(sorted(t.id for t in terms.values()))
            uow.commit()
            return removed

    return retrying(attempt)
