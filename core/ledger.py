"""An account's ledger: why it was prompted, or not. Every crossing with the guardrails'
decision, every message in and out on every channel, escalations, calls, plan changes and
consent events, in time order (the API's `GET /accounts/<id>/ledger`, the console's account
page). Assembled from the repositories' reads; the core decides nothing new here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.accounts import StoredAccount
from core.errors import NotFound
from core.ports import UnitOfWork

# The order of entries stored at the same instant (a frozen clock, one request doing several
# things): the account's plan and its contacts' consent first (they decide a crossing), then the
# crossing, then what it caused.
TYPES = ("plan_change", "consent", "crossing", "message", "escalation", "call")


@dataclass(frozen=True)
class LedgerEntry:
    """One thing that happened: `at`, its `type` (one of TYPES) and its fields (plain values:
    text, numbers, Decimals, aware datetimes, None)."""

    at: datetime
    type: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ledger:
    account: StoredAccount
    entries: tuple[LedgerEntry, ...]


def account_ledger(uow: UnitOfWork, external_id: str) -> Ledger:
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        entries: list[LedgerEntry] = []
        for crossing, detected_at, decision in reversed(uow.signals.for_account(account.id)):
            entries.append(LedgerEntry(detected_at, "crossing", {
                "metric": crossing.metric, "direction": crossing.direction,
                "value": crossing.value, "threshold": crossing.threshold,
                "from_plan": crossing.from_plan, "to_plan": crossing.to_plan,
                "crossed_at": crossing.at, "detected_at": detected_at,
                "outcome": decision.outcome if decision else None,
                "reason": decision.reason if decision else None,
                "defer_until": decision.defer_until if decision else None,
                "thread_id": decision.thread_id if decision else None}))
        for m in uow.reads.messages_of_account(account.id):
            entries.append(LedgerEntry(m.at, "message", {
                "id": m.id, "thread_id": m.thread_id, "channel": m.channel,
                "direction": m.direction, "kind": m.kind, "status": m.status,
                "body": None if m.redacted_at is not None else m.body,
                "redacted": m.redacted_at is not None}))
        for e in uow.escalations.of_account(account.id):
            entries.append(LedgerEntry(e.created_at, "escalation", {
                "id": e.id, "thread_id": e.thread_id, "reason": e.reason, "status": e.status}))
        for c in uow.reads.calls_of_account(account.id):
            entries.append(LedgerEntry(c.created_at, "call", {
                "id": c.id, "thread_id": c.thread_id, "status": c.status, "reason": c.reason,
                "attempt": c.attempt, "scheduled_for": c.scheduled_for}))
        for p in uow.accounts.plan_history(account.id):
            entries.append(LedgerEntry(p.at, "plan_change", {
                "from_plan": p.from_plan, "to_plan": p.to_plan, "source": p.source}))
        for k in uow.reads.consent_of_account(account.id):
            entries.append(LedgerEntry(k.at, "consent", {
                "action": k.action, "channel": k.channel, "source": k.source}))
    # Stable: within a type the reads' own order (by time, then id) stays.
    entries.sort(key=lambda entry: (entry.at, TYPES.index(entry.type)))
    return Ledger(account, tuple(entries))
