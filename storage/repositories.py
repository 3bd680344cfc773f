"""SQL repositories: the core's ports (core.ports) over one SQLAlchemy session."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from types import MappingProxyType
from typing import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, selectinload

from core.accounts import Account, Contact, Health
from core.thresholds import Crossing
from core.usage import GAUGES, WINDOW, UsageEvent, UsageMatrix
from storage.models import AccountRow, ContactRow, SignalRow, ThresholdStateRow, UsageEventRow

CONTACT_FIELDS = ("name", "role", "phone", "whatsapp", "web_user_id", "email")


def _account(row: AccountRow) -> Account:
    return Account(
        id=row.id, external_id=row.external_id, name=row.name, plan=row.plan,
        vertical=row.vertical, timezone=row.timezone, billing_day=row.billing_day,
        plan_since=row.plan_since,
        contacts=tuple(Contact(external_id=c.external_id, **{f: getattr(c, f) for f in CONTACT_FIELDS})
                       for c in row.contacts),
        health=Health(csat=row.csat, sentiment=row.sentiment,
                      open_escalations=row.open_escalations, updated_at=row.health_updated_at),
    )


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _query(self):
        return select(AccountRow).options(selectinload(AccountRow.contacts))

    def get(self, external_id: str) -> Account | None:
        row = self.session.scalars(self._query().where(AccountRow.external_id == external_id)).first()
        return _account(row) if row else None

    def get_many(self, external_ids: Iterable[str], *, for_update: bool = False) -> dict[str, Account]:
        ids = sorted(set(external_ids))
        if not ids:
            return {}
        if for_update:
            # Lock in a fixed order so two batches touching the same accounts cannot deadlock.
            self.session.execute(select(AccountRow.id).where(AccountRow.external_id.in_(ids))
                                 .order_by(AccountRow.id).with_for_update())
        rows = self.session.scalars(self._query().where(AccountRow.external_id.in_(ids)))
        return {r.external_id: _account(r) for r in rows}

    def contact_owner(self, contact_external_ids: Iterable[str]) -> dict[str, str]:
        ids = list(contact_external_ids)
        if not ids:
            return {}
        rows = self.session.execute(
            select(ContactRow.external_id, AccountRow.external_id)
            .join(AccountRow, ContactRow.account_id == AccountRow.id)
            .where(ContactRow.external_id.in_(ids)))
        return {contact: account for contact, account in rows}

    def save(self, account: Account, now: datetime) -> Account:
        if account.id is None:
            row = AccountRow(external_id=account.external_id, created_at=now, open_escalations=0)
            self.session.add(row)
        else:
            row = self.session.scalars(self._query().where(AccountRow.id == account.id)).one()
        for f in ("name", "plan", "vertical", "timezone", "billing_day", "plan_since"):
            setattr(row, f, getattr(account, f))
        row.updated_at = now
        by_id = {c.external_id: c for c in row.contacts}
        wanted = []
        for position, contact in enumerate(account.contacts):
            crow = by_id.get(contact.external_id) or ContactRow(external_id=contact.external_id)
            crow.position = position
            for f in CONTACT_FIELDS:
                setattr(crow, f, getattr(contact, f))
            wanted.append(crow)
        row.contacts = wanted  # contacts no longer listed are deleted (delete-orphan)
        self.session.flush()
        return _account(row)

    def save_health(self, account_id: int, health: Health) -> None:
        row = self.session.get(AccountRow, account_id)
        row.csat, row.sentiment = health.csat, health.sentiment
        row.open_escalations, row.health_updated_at = health.open_escalations, health.updated_at


class SqlUsageRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def known_ids(self, event_ids: Iterable[str]) -> set[str]:
        ids = list(set(event_ids))
        known: set[str] = set()
        for start in range(0, len(ids), 500):  # stay under bound-parameter limits
            chunk = ids[start:start + 500]
            known.update(self.session.scalars(
                select(UsageEventRow.event_id).where(UsageEventRow.event_id.in_(chunk))))
        return known

    def add_many(self, rows: list[tuple[int, UsageEvent]], received_at: datetime) -> None:
        if rows:
            self.session.execute(insert(UsageEventRow), [
                {"event_id": e.id, "account_id": account_id, "metric": e.metric,
                 "quantity": e.quantity, "at": e.at, "received_at": received_at}
                for account_id, e in rows])

    def matrices(self, account_ids: Iterable[int], now: datetime) -> dict[int, UsageMatrix]:
        """Each account's matrix as of `now`, exactly, in four grouped queries for all of them."""
        ids = list(set(account_ids))
        if not ids:
            return {}
        since = now - WINDOW
        e = UsageEventRow
        counters: dict[int, dict[str, int]] = defaultdict(dict)
        for account_id, metric, total in self.session.execute(
                select(e.account_id, e.metric, func.sum(e.quantity))
                .where(e.account_id.in_(ids), e.metric.not_in(GAUGES), e.at > since, e.at <= now)
                .group_by(e.account_id, e.metric)):
            counters[account_id][metric] = int(total)
        latest = self._latest_gauges(ids, e.at <= now)
        carried = self._latest_gauges(ids, e.at <= since, metrics=("integrations",))
        peaks = dict(self.session.execute(
            select(e.account_id, func.max(e.quantity))
            .where(e.account_id.in_(ids), e.metric == "integrations", e.at > since, e.at <= now)
            .group_by(e.account_id)).all())
        out = {}
        for account_id in ids:
            c = counters.get(account_id, {})
            seats = latest.get((account_id, "seats"))
            integrations = latest.get((account_id, "integrations"))
            carried_in = carried.get((account_id, "integrations"))
            peak = max(int(peaks.get(account_id) or 0), carried_in[0] if carried_in else 0)
            out[account_id] = UsageMatrix(
                messages=c.get("messages", 0),
                seats=seats[0] if seats else 0,
                seats_at=seats[1] if seats else None,
                integrations=integrations[0] if integrations else 0,
                integrations_at=integrations[1] if integrations else None,
                integrations_peak=peak,
                features=MappingProxyType({m[len("feature:"):]: v for m, v in c.items()
                                           if m.startswith("feature:")}),
            )
        return out

    def _latest_gauges(self, ids: list[int], when, metrics=GAUGES) -> dict[tuple[int, str], tuple[int, datetime]]:
        e = UsageEventRow
        ranked = (select(e.account_id, e.metric, e.quantity, e.at,
                         func.row_number().over(partition_by=(e.account_id, e.metric),
                                                order_by=(e.at.desc(), e.seq.desc())).label("rn"))
                  .where(e.account_id.in_(ids), e.metric.in_(metrics), when).subquery())
        rows = self.session.execute(
            select(ranked.c.account_id, ranked.c.metric, ranked.c.quantity, ranked.c.at)
            .where(ranked.c.rn == 1))
        return {(a, m): (int(q), at) for a, m, q, at in rows}


class SqlThresholdStateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get_many(self, account_ids: Iterable[int]) -> dict[int, frozenset[str]]:
        ids = list(set(account_ids))
        keys: dict[int, set[str]] = defaultdict(set)
        if ids:
            for account_id, key in self.session.execute(
                    select(ThresholdStateRow.account_id, ThresholdStateRow.key)
                    .where(ThresholdStateRow.account_id.in_(ids))):
                keys[account_id].add(key)
        return {a: frozenset(keys.get(a, ())) for a in ids}

    def replace(self, account_id: int, keys: frozenset[str], now: datetime) -> None:
        self.session.execute(delete(ThresholdStateRow).where(ThresholdStateRow.account_id == account_id))
        if keys:
            self.session.execute(insert(ThresholdStateRow), [
                {"account_id": account_id, "key": k, "changed_at": now} for k in sorted(keys)])


class SqlSignalRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, account_id: int, crossings: list[Crossing], detected_at: datetime) -> None:
        self.session.execute(insert(SignalRow), [
            {"account_id": account_id, "key": c.key, "direction": c.direction,
             "from_plan": c.from_plan, "to_plan": c.to_plan, "metric": c.metric,
             "value": c.value, "threshold": c.threshold, "crossed_at": c.at,
             "detected_at": detected_at, "event_id": c.event_id} for c in crossings])

    def for_account(self, account_id: int) -> list[tuple[Crossing, datetime]]:
        rows = self.session.scalars(select(SignalRow).where(SignalRow.account_id == account_id)
                                    .order_by(SignalRow.crossed_at.desc(), SignalRow.id.desc()))
        return [(Crossing(key=r.key, direction=r.direction, from_plan=r.from_plan,
                          to_plan=r.to_plan, metric=r.metric, value=r.value,
                          threshold=r.threshold, at=r.crossed_at, event_id=r.event_id),
                 r.detected_at) for r in rows]
