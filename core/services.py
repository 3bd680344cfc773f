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

from core.accounts import (Account, Contact, Health, check_billing_day, check_contacts,
                           check_health, check_timezone)
from core.case import AccountTerms, Case, current_case
from core.catalog import Catalog
from core.errors import DomainError, NotFound
from core.ports import Conflict, UnitOfWork
from core.thresholds import Crossing, ingest
from core.usage import FUTURE_SKEW, MAX_QUANTITY, UsageEvent, UsageMatrix

log = logging.getLogger(__name__)

RETRIES = 3  # attempts for a write that lost a race (Conflict) before giving up


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
    crossings: tuple[Crossing, ...]


def terms_of(account: Account) -> AccountTerms:
    return AccountTerms(plan=account.plan, vertical=account.vertical, timezone=account.timezone,
                        billing_day=account.billing_day, plan_since=account.plan_since)


def _retrying(fn):
    for attempt in range(1, RETRIES + 1):
        try:
            return fn()
        except Conflict:
            if attempt == RETRIES:
                raise
            log.info("write conflict, retrying (attempt %d of %d)", attempt + 1, RETRIES)


def upsert_account(uow: UnitOfWork, catalog: Catalog, data: AccountInput,
                   now: datetime) -> tuple[Account, bool]:
    """Create or replace an account and its contacts; True when it was created.

    A plan change restarts `plan_since` unless the input gives it."""
    catalog.plan(data.plan)
    catalog.vertical(data.vertical)
    check_timezone(data.timezone)
    check_billing_day(data.billing_day)
    check_contacts(list(data.contacts))
    if data.plan_since is not None and data.plan_since > now:
        raise DomainError("plan_since is in the future", code="invalid_timestamp", field="plan_since")

    def attempt() -> tuple[Account, bool]:
        with uow:
            owners = uow.accounts.contact_owner(c.external_id for c in data.contacts)
            for i, c in enumerate(data.contacts):
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
                plan_since=plan_since, contacts=data.contacts,
                health=existing.health if existing else Health(),
            )
            saved = uow.accounts.save(account, now)
            uow.commit()
            return saved, existing is None

    return _retrying(attempt)


def get_account(uow: UnitOfWork, external_id: str, now: datetime) -> tuple[Account, UsageMatrix]:
    """An account with its usage matrix as of `now`."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        return account, uow.usage.matrices([account.id], now)[account.id]


def check_events(catalog: Catalog, events: list[UsageEvent], now: datetime) -> None:
    """Reject a batch at its first bad event, naming the event's index."""
    for i, e in enumerate(events):
        try:
            catalog.check_metric(e.metric)
        except DomainError as exc:
            raise DomainError(f"events[{i}]: {exc.message}", code=exc.code,
                              field=f"events[{i}].metric", index=i) from None
        if e.quantity < 0:
            raise DomainError(f"events[{i}]: quantity must be >= 0, got {e.quantity}",
                              code="negative_quantity", field=f"events[{i}].quantity", index=i)
        if e.quantity > MAX_QUANTITY:
            raise DomainError(f"events[{i}]: quantity must be <= {MAX_QUANTITY:,}, got {e.quantity}",
                              code="invalid_quantity", field=f"events[{i}].quantity", index=i)
        if e.at.tzinfo is None:
            raise DomainError(f"events[{i}]: 'at' needs a time zone (e.g. 'Z' or '+00:00')",
                              code="invalid_timestamp", field=f"events[{i}].at", index=i)
        if e.at > now + FUTURE_SKEW:
            raise DomainError(f"events[{i}]: 'at' {e.at.isoformat()} is in the future",
                              code="invalid_timestamp", field=f"events[{i}].at", index=i)


def record_usage(uow: UnitOfWork, catalog: Catalog, events: list[UsageEvent],
                 now: datetime) -> IngestResult:
    """Store a batch of usage events once each (by id) and evaluate thresholds as they arrive.

    All or nothing: a bad event rejects the whole batch. Events already stored, or repeated within
    the batch, count as duplicates and change nothing.
    """
    check_events(catalog, events, now)

    def attempt() -> IngestResult:
        with uow:
            accounts = uow.accounts.lock_usage_terms({e.account for e in events})
            for i, e in enumerate(events):
                if e.account not in accounts:
                    raise DomainError(f"events[{i}]: no account {e.account!r}",
                                      code="unknown_account", field=f"events[{i}].account", index=i)
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
            crossings: list[tuple[int, Crossing]] = []
            changed: dict[int, frozenset[str]] = {}
            for external_id, account_events in by_account.items():
                account = accounts[external_id]
                before = states.get(account.id, frozenset())
                _, after, fired = ingest(catalog, catalog.plan(account.plan), matrices[account.id],
                                         before, account_events, account.plan_since, now)
                if after != before:
                    changed[account.id] = after
                crossings.extend((account.id, c) for c in fired)
            uow.thresholds.replace_many(changed, now)
            uow.signals.add_many(crossings, now)
            uow.commit()
            return IngestResult(len(stored), len(events) - len(stored),
                                tuple(c for _, c in crossings))

    result = _retrying(attempt)
    if result.crossings:
        log.info("usage batch: %d accepted, %d duplicates, %d thresholds crossed",
                 result.accepted, result.duplicates, len(result.crossings))
    return result


def record_health(uow: UnitOfWork, external_id: str, csat: Decimal | None,
                  sentiment: Decimal | None, open_escalations: int, now: datetime) -> Account:
    """Replace an account's reported health."""
    check_health(csat, sentiment, open_escalations)
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        health = Health(csat=csat, sentiment=sentiment, open_escalations=open_escalations,
                        updated_at=now)
        uow.accounts.save_health(account.id, health)
        uow.commit()
        return replace(account, health=health)


def get_case(uow: UnitOfWork, catalog: Catalog, external_id: str,
             now: datetime) -> tuple[Account, Case | None]:
    """The account and the case for the tier change that applies to it now (or None)."""
    account, matrix = get_account(uow, external_id, now)
    return account, current_case(catalog, terms_of(account), matrix, now)


def list_signals(uow: UnitOfWork, external_id: str) -> list[tuple[Crossing, datetime]]:
    """The account's threshold crossings, newest first, each with when it was detected."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        return uow.signals.for_account(account.id)
