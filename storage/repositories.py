"""SQL repositories: the core's ports (core.ports) over one SQLAlchemy session."""

from __future__ import annotations

from functools import partial
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from types import MappingProxyType
from typing import Any, NamedTuple, TypedDict, TypeVar
from typing import cast as typing_cast

from sqlalchemy import (ClauseElement, ColumnElement, Connection, Result, Row, Select, bindparam,
                        case, delete, func, insert, or_, select)
from sqlalchemy import update as sa_update
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload
from sqlalchemy.sql.dml import ReturningInsert

from core.accounts import Account, Contact, Health, StoredAccount
from core.ports import (DailyUsage, PlanHistoryEntry, Removed, SignalDecision, UsageHistory,
                        UsageTerms)
from core.thresholds import Crossing
from core.usage import GAUGES, WINDOW, UsageEvent, UsageMatrix
from storage.models import (AccountRow, Base, CallRow, ConsentEventRow, ContactRow,
                            EscalationRow, MessageRow, OutboxRow, PlanChangeRow, PlanHistoryRow,
                            SignalRow, ThreadRow, ThresholdStateRow, UsageDailyRow,
                            UsageEventRow, UsageTotalRow)
from storage.bulk import (EVENTS_IN, BulkInsert, bulk_insert, copy_events, ids_param,
                          run_bulk)
from storage.usage_totals import Totals, first_day_of, read_totals, write_totals

CONTACT_FIELDS = ("name", "role", "phone", "whatsapp", "web_user_id", "email")


def _account(row: AccountRow | Row[Any],
             contacts: Iterable[ContactRow | Row[Any] | _ContactColumns] | None = None
             ) -> StoredAccount:
    """An account from its row and its contacts (the ORM row's own, unless given). The rows are
    the ORM's, or Core rows of the same tables (`_read`)."""
    return StoredAccount(
        id=row.id, external_id=row.external_id, name=row.name, plan=row.plan,
        vertical=row.vertical, timezone=row.timezone, billing_day=row.billing_day,
        plan_since=row.plan_since,
        contacts=tuple(Contact(external_id=c.external_id, erased_at=c.erased_at,
                               **{f: getattr(c, f) for f in CONTACT_FIELDS})
                       for c in (row.contacts if contacts is None else contacts)),
        health=Health(csat=row.csat, sentiment=row.sentiment,
                      open_escalations=row.open_escalations, updated_at=row.health_updated_at),
    )


# Reads of one account, built once (see `_statement`): every inbound message reads its account.
# The account and its contacts in one statement (one round trip): a row per contact, the
# account's columns on each; an account without contacts is one row whose contact is NULL.
_A, _C = AccountRow.__table__, ContactRow.__table__
_CONTACT_COLUMNS = ("external_id", "erased_at", *CONTACT_FIELDS)
_ACCOUNT_BY = {
    name: (select(_A, *(_C.c[f].label(f"contact_{f}") for f in _CONTACT_COLUMNS))
           .select_from(_A.outerjoin(_C, _C.c.account_id == _A.c.id))
           .where(column == bindparam("value")).order_by(_C.c.position))
    for name, column in (("id", _A.c.id), ("external_id", _A.c.external_id))}


_LOCK_ACCOUNT = select(_A.c.id).where(_A.c.id == bindparam("account_id")).with_for_update()


class _ContactColumns(NamedTuple):
    """A contact's fields as `_account` reads them (`_CONTACT_COLUMNS`' order)."""

    external_id: str
    erased_at: datetime | None
    name: str | None
    role: str
    phone: str | None
    whatsapp: str | None
    web_user_id: str | None
    email: str | None

    @classmethod
    def of(cls, row: Row[Any]) -> _ContactColumns:
        return cls(*(getattr(row, f"contact_{f}") for f in _CONTACT_COLUMNS))


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _query(self) -> Select[tuple[AccountRow]]:
        return select(AccountRow).options(selectinload(AccountRow.contacts))

    def _read(self, by: str, value: int | str) -> StoredAccount | None:
        conn = self.session.connection()
        rows = conn.execute(_ACCOUNT_BY[by], {"value": value}).all()
        if not rows:
            return None
        return _account(rows[0], [_ContactColumns.of(r) for r in rows
                                  if r.contact_external_id is not None])

    def get(self, external_id: str) -> StoredAccount | None:
        return self._read("external_id", external_id)

    def lock(self, account_id: int) -> None:
        """Lock the account's row: every writer takes it first (ingestion in lock_usage_terms,
        a conversation before its thread), so the two can never wait on each other in a cycle."""
        self.session.connection().execute(_LOCK_ACCOUNT, {"account_id": account_id})

    def get_by_id(self, account_id: int) -> StoredAccount:
        """The account with this id (one a stored thread, contact or escalation refers to)."""
        account = self._read("id", account_id)
        if account is None:
            raise LookupError(f"no account with id {account_id}")
        return account

    def lock_usage_terms(self, external_ids: Iterable[str]) -> dict[str, UsageTerms]:
        """What ingestion needs of each account (id, plan, plan_since), its row locked until the
        transaction ends (in a fixed order, so two batches cannot deadlock; SQLite's writer lock
        does the same there)."""
        ids = sorted(set(external_ids))
        if not ids:
            return {}
        rows = self.session.connection().execute(
            _statement(self.session, "lock_usage_terms", lambda pg: (
                select(AccountRow.external_id, AccountRow.id, AccountRow.plan,
                       AccountRow.plan_since)
                .where(_ids_param(pg, AccountRow.external_id)).order_by(AccountRow.id)
                .with_for_update())), {"ids": ids})
        return {x: UsageTerms(id=i, plan=p, plan_since=s) for x, i, p, s in rows}

    def usage_terms_after(self, after_id: int, limit: int) -> list[tuple[str, UsageTerms]]:
        """Up to `limit` accounts with ids above `after_id`, in id order, with what evaluating
        their thresholds needs (external id, id, plan, plan_since): a walk over every account
        a page at a time, by key (the primary key's index), without locking them."""
        rows = self.session.connection().execute(
            _statement(self.session, "usage_terms_after", lambda pg: (
                select(AccountRow.external_id, AccountRow.id, AccountRow.plan,
                       AccountRow.plan_since)
                .where(AccountRow.id > bindparam("after")).order_by(AccountRow.id)
                .limit(bindparam("limit")))), {"after": after_id, "limit": limit})
        return [(x, UsageTerms(id=i, plan=p, plan_since=s)) for x, i, p, s in rows]

    def contact_owner(self, contact_external_ids: Iterable[str]) -> dict[str, str]:
        ids = list(contact_external_ids)
        if not ids:
            return {}
        rows = self.session.execute(
            select(ContactRow.external_id, AccountRow.external_id)
            .join(AccountRow, ContactRow.account_id == AccountRow.id)
            .where(ContactRow.external_id.in_(ids)))
        return {contact: account for contact, account in rows}

    def save(self, account: Account, now: datetime) -> StoredAccount:
        if account.id is None:
            row = AccountRow(external_id=account.external_id, created_at=now, open_escalations=0)
            self.session.add(row)
        else:
            row = self.session.scalars(self._query().where(AccountRow.id == account.id)).one()
        for f in ("name", "plan", "vertical", "timezone", "billing_day", "plan_since"):
            setattr(row, f, getattr(account, f))
        row.updated_at = now
        by_id = {c.external_id: c for c in row.contacts if c.erased_at is None}
        wanted = []
        for position, contact in enumerate(account.contacts):
            crow = by_id.get(contact.external_id) or ContactRow(external_id=contact.external_id)
            crow.position = position
            for f in CONTACT_FIELDS:
                setattr(crow, f, getattr(contact, f))
            wanted.append(crow)
        # Erased contacts stay, after the listed ones: their threads, messages and consent
        # events keep counting (core.erasure). No list names them: their ids are pseudonyms.
        erased = sorted((c for c in row.contacts if c.erased_at is not None),
                        key=lambda c: (c.position, c.id))
        for position, crow in enumerate(erased, start=len(wanted)):
            crow.position = position
        row.contacts = wanted + erased  # contacts no longer listed are deleted (delete-orphan)
        self.session.flush()
        return _account(row)

    def change_plan(self, account_id: int, plan: str, now: datetime, *, from_plan: str,
                    source: str, plan_change_id: int | None = None) -> None:
        """Move the account to `plan` now, and keep it in the plan history; its thresholds
        start over (threshold_states)."""
        self.session.execute(sa_update(AccountRow).where(AccountRow.id == account_id)
                             .values(plan=plan, plan_since=now, updated_at=now))
        self.session.execute(delete(ThresholdStateRow).where(ThresholdStateRow.account_id == account_id))
        self.record_plan(account_id, from_plan, plan, now, source, plan_change_id)

    def record_plan(self, account_id: int, from_plan: str | None, to_plan: str, at: datetime,
                    source: str, plan_change_id: int | None = None) -> None:
        """A line of the plan history (an account created, or its plan changed)."""
        self.session.execute(insert(PlanHistoryRow).values(
            account_id=account_id, from_plan=from_plan, to_plan=to_plan, at=at, source=source,
            plan_change_id=plan_change_id))

    def plan_history(self, account_id: int) -> list[PlanHistoryEntry]:
        """The account's plans, oldest first."""
        rows = self.session.execute(
            select(PlanHistoryRow).where(PlanHistoryRow.account_id == account_id)
            .order_by(PlanHistoryRow.at, PlanHistoryRow.id)).scalars()
        return [PlanHistoryEntry(r.from_plan, r.to_plan, r.at, r.source) for r in rows]

    def count(self) -> int:
        return self.session.execute(select(func.count()).select_from(AccountRow)).scalar_one()

    def remove(self, account_ids: Sequence[int]) -> Removed:
        """Delete these accounts and everything of theirs, table by table (children first, so
        the counts are what each table lost, whatever the foreign keys cascade): their usage,
        thresholds, signals, contacts and consent, threads and messages (a contact's too when
        no thread holds it), plan changes and history, escalations, calls, and the outbox jobs
        that name one of those (by the ids their payloads carry). The audit trail is left
        alone: it is append-only."""
        ids = list(account_ids)
        if not ids:
            return {}
        s = self.session

        def of(key: InstrumentedAttribute[int], where: ColumnElement[bool]) -> list[int]:
            return list(s.scalars(select(key).where(where)))

        contacts = of(ContactRow.id, ContactRow.account_id.in_(ids))
        threads = of(ThreadRow.id, ThreadRow.account_id.in_(ids))
        messages = of(MessageRow.id, or_(MessageRow.thread_id.in_(threads),
                                         MessageRow.contact_id.in_(contacts)))
        calls = of(CallRow.id, CallRow.account_id.in_(ids))
        escalations = of(EscalationRow.id, EscalationRow.account_id.in_(ids))
        externals = list(s.scalars(select(AccountRow.external_id).where(AccountRow.id.in_(ids))))
        payload = OutboxRow.payload
        theirs = [payload["account"].as_string().in_(externals)]
        for key, values in (("message_id", messages), ("call_id", calls),
                            ("escalation_id", escalations)):
            if values:
                theirs.append(payload[key].as_integer().in_(values))
        removed: Removed = {}

        def drop(name: str, model: type[Base], where: ColumnElement[bool]) -> None:
            result = s.connection().execute(delete(model).where(where))
            removed[name] = removed.get(name, 0) + result.rowcount

        drop("outbox jobs", OutboxRow, or_(*theirs))
        drop("messages", MessageRow, MessageRow.id.in_(messages))
        drop("calls", CallRow, CallRow.id.in_(calls))
        drop("escalations", EscalationRow, EscalationRow.id.in_(escalations))
        drop("signals", SignalRow, SignalRow.account_id.in_(ids))
        drop("plan history", PlanHistoryRow, PlanHistoryRow.account_id.in_(ids))
        drop("plan changes", PlanChangeRow, PlanChangeRow.account_id.in_(ids))
        drop("threads", ThreadRow, ThreadRow.id.in_(threads))
        drop("consent events", ConsentEventRow, ConsentEventRow.contact_id.in_(contacts))
        drop("contacts", ContactRow, ContactRow.id.in_(contacts))
        drop("threshold states", ThresholdStateRow, ThresholdStateRow.account_id.in_(ids))
        drop("usage events", UsageEventRow, UsageEventRow.account_id.in_(ids))
        drop("usage rollups", UsageDailyRow, UsageDailyRow.account_id.in_(ids))
        drop("usage rollups", UsageTotalRow, UsageTotalRow.account_id.in_(ids))
        drop("accounts", AccountRow, AccountRow.id.in_(ids))
        return removed

    def save_health(self, account_id: int, health: Health) -> None:
        row = self.session.get(AccountRow, account_id)
        if row is None:
            raise LookupError(f"no account with id {account_id}")
        row.csat, row.sentiment = health.csat, health.sentiment
        row.open_escalations, row.health_updated_at = health.open_escalations, health.updated_at


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_BulkInsert = BulkInsert
_bulk_insert = bulk_insert


def _bulk_run(session: Session, stmt: ClauseElement,
              rows: Sequence[Mapping[str, object]]) -> Result[Any]:
    return run_bulk(session.connection(), stmt, rows)


_STATEMENTS: dict[tuple[str, str], object] = {}
_Built = TypeVar("_Built")
_Value = TypeVar("_Value")


def _statement(session: Session, name: str, build: Callable[[bool], _Built]) -> _Built:
    """Build a statement once per dialect, so its compiled form is reused batch after batch."""
    key = (session.get_bind().dialect.name, name)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = build(_is_pg(session))
    # A name is always built by the same `build`, so what is cached under it is its type.
    return typing_cast(_Built, _STATEMENTS[key])


def _insert_events(pg: bool) -> ReturningInsert[tuple[str]]:
    stmt = _bulk_insert(pg, UsageEventRow, EVENT_COLUMNS)
    return stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(UsageEventRow.event_id)


def _upsert_daily(pg: bool) -> _BulkInsert:
    stmt = _bulk_insert(pg, UsageDailyRow, DAILY_COLUMNS)
    new, old = stmt.excluded, UsageDailyRow
    later = new.last_at >= old.last_at
    greatest = func.greatest if pg else func.max
    return stmt.on_conflict_do_update(
        index_elements=["account_id", "metric", "day"],
        set_={"total": old.total + new.total,
              "max_quantity": greatest(old.max_quantity, new.max_quantity),
              "last_quantity": case((later, new.last_quantity), else_=old.last_quantity),
              "last_at": case((later, new.last_at), else_=old.last_at)})


def _ids_param(pg: bool, col: InstrumentedAttribute[_Value]) -> ColumnElement[bool]:
    return ids_param(pg, col)


class _MatrixStatements(NamedTuple):
    """The usage matrix's reads of raw events (`_matrix_statements`); the rest is the accounts'
    usage rows (storage/usage_totals.py)."""

    first_day: Select[tuple[int, str, int, int]]  # account, metric, sum, highest
    carried_events: Select[tuple[int, int, datetime]]  # account, integrations reading, at


def _matrix_statements(pg: bool) -> _MatrixStatements:
    """The raw events of the window's first, partial day, with parameters `ids` (account ids),
    the window's start `since` and the day's bounds."""
    among = partial(_ids_param, pg)
    e = UsageEventRow
    ranked = (select(e.account_id, e.quantity, e.at,
                     func.row_number().over(partition_by=e.account_id,
                                            order_by=(e.at.desc(), e.seq.desc())).label("rn"))
              .where(among(e.account_id), e.metric == "integrations",
                     e.at >= bindparam("day_start"), e.at <= bindparam("since")).subquery())
    return _MatrixStatements(
        first_day=select(e.account_id, e.metric, func.sum(e.quantity), func.max(e.quantity))
        .where(among(e.account_id), e.at > bindparam("since"), e.at < bindparam("first_day_end"))
        .group_by(e.account_id, e.metric),
        carried_events=select(ranked.c.account_id, ranked.c.quantity, ranked.c.at)
        .where(ranked.c.rn == 1),
    )


EVENT_COLUMNS = ["event_id", "account_id", "metric", "quantity", "at", "received_at"]
DAILY_COLUMNS = ["account_id", "metric", "day", "total", "max_quantity", "last_quantity", "last_at"]


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, tzinfo=timezone.utc)


class _DailyRollup(TypedDict):
    """A row of usage_daily as `_roll_up` builds it."""

    account_id: int
    metric: str
    day: date
    total: int
    max_quantity: int
    last_quantity: int
    last_at: datetime


class SqlUsageRepository:
    """Usage events, plus two summaries kept in step with them in the same transaction: daily
    rollups per metric (usage_daily) and a usage row per account (usage_totals,
    storage/usage_totals.py)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        # The usage rows `matrices` read in this transaction, as of their window's first day,
        # for `add_new` to move on with the batch's events (the accounts are locked meanwhile).
        self._read: tuple[date, set[int], dict[int, Totals]] | None = None

    @property
    def _conn(self) -> Connection:
        # Core execution for these plain column reads: the ORM's per-statement work is not needed.
        return self.session.connection()

    def add_new(self, rows: list[tuple[int, UsageEvent]], received_at: datetime) -> set[str]:
        """Store the events whose ids are new; return those ids. Ids already stored are skipped
        by the unique key itself, so two writers can never store one event twice."""
        if not rows:
            return set()
        if _is_pg(self.session) and self._conn.connection.info.get(EVENTS_IN):
            inserted = copy_events(self._conn, [
                (e.id, account_id, e.metric, e.quantity, e.at, received_at)
                for account_id, e in rows])
        else:  # SQLite, or a PostgreSQL connection with no COPY table (no TEMPORARY privilege)
            inserted = set(_bulk_run(self.session, _statement(self.session, "events",
                                                              _insert_events), [
                {"event_id": e.id, "account_id": account_id, "metric": e.metric,
                 "quantity": e.quantity, "at": e.at, "received_at": received_at}
                for account_id, e in rows]).scalars())
        stored = sorted(((a, e) for a, e in rows if e.id in inserted), key=lambda r: r[1].at)
        self._roll_up(stored)
        self._total_up(stored, first_day_of(received_at))
        return inserted

    def _roll_up(self, rows: list[tuple[int, UsageEvent]]) -> None:
        daily: dict[tuple[int, str, date], _DailyRollup] = {}
        for account_id, e in rows:
            day = e.at.astimezone(timezone.utc).date()
            d = daily.setdefault((account_id, e.metric, day), {
                "account_id": account_id, "metric": e.metric, "day": day, "total": 0,
                "max_quantity": e.quantity, "last_quantity": e.quantity, "last_at": e.at})
            d["total"] += e.quantity
            d["max_quantity"] = max(d["max_quantity"], e.quantity)
            d["last_quantity"], d["last_at"] = e.quantity, e.at
        if daily:
            _bulk_run(self.session, _statement(self.session, "daily", _upsert_daily),
                      list(daily.values()))

    def _total_up(self, rows: list[tuple[int, UsageEvent]], first_day: date) -> None:
        """Move the accounts' usage rows on by these events (stored, in time order)."""
        ids = {a for a, _ in rows}
        if self._read is not None and self._read[0] == first_day and ids <= self._read[1]:
            totals = self._read[2]
        else:
            totals = read_totals(self._conn, sorted(ids), first_day)
        self._read = None  # the rows change now
        changed: dict[int, Totals] = {}
        for account_id, e in rows:
            t = changed.get(account_id)
            if t is None:
                t = changed[account_id] = totals.get(account_id) or Totals(first_day)
            t.add(e.metric, e.quantity, e.at)
        write_totals(self._conn, changed)

    def matrices(self, account_ids: Iterable[int], now: datetime) -> dict[int, UsageMatrix]:
        """Each account's matrix as of `now`, exactly (the same as core.usage applying every
        event), from its usage row (storage/usage_totals.py) plus the raw events of the
        window's first, partial day: three statements for any number of accounts.

        The statements are built once per dialect and take their values as parameters: building
        and hashing a new statement tree per call cost more than the database's work for one
        account (an inbound message reads one matrix)."""
        ids = list(set(account_ids))
        if not ids:
            return {}
        since = (now - WINDOW).astimezone(timezone.utc)  # the rollups' days are UTC days
        first_day = since.date()
        totals = read_totals(self._conn, ids, first_day)
        self._read = (first_day, set(ids), totals)
        used = list(totals)  # accounts with no usage row have no events
        messages: dict[int, int] = {}
        first_features: dict[int, dict[str, int]] = defaultdict(dict)
        peaks: dict[int, int] = {}
        carried: dict[int, tuple[int, datetime]] = {}
        if used:
            q = _statement(self.session, "matrix", _matrix_statements)
            for account_id, metric, total, peak in self._conn.execute(q.first_day, {
                    "ids": used, "since": since,
                    "first_day_end": _day_start(first_day + timedelta(days=1))}):
                if metric == "messages":
                    messages[account_id] = int(total)
                elif metric == "integrations":
                    peaks[account_id] = int(peak)
                elif metric.startswith("feature:"):
                    first_features[account_id][metric[len("feature:"):]] = int(total)
            carried = {a: (int(qty), at) for a, qty, at in self._conn.execute(
                q.carried_events, {"ids": used, "day_start": _day_start(first_day),
                                   "since": since})}
        out = {}
        empty = UsageMatrix()
        for account_id in ids:
            t = totals.get(account_id)
            if t is None:
                out[account_id] = empty
                continue
            features = t.feature_hits()
            for name, total in first_features.get(account_id, {}).items():
                features[name] = features.get(name, 0) + total
            carry = carried.get(account_id)
            if carry is None and t.carried_at is not None:
                carry = (t.carried or 0, t.carried_at)
            out[account_id] = UsageMatrix(
                messages=t.messages + messages.get(account_id, 0),
                seats=t.seats or 0, seats_at=t.seats_at,
                integrations=t.integrations or 0, integrations_at=t.integrations_at,
                integrations_window_max=max(t.peak or 0, peaks.get(account_id, 0)),
                integrations_carried=carry[0] if carry else 0,
                integrations_carried_at=carry[1] if carry else None,
                features=MappingProxyType(features),
            )
        return out

    def histories(self, after_id: int, limit: int, first_day: date,
                  last_day: date) -> list[UsageHistory]:
        """Up to `limit` accounts with ids above `after_id`, in id order, each with its plan
        history and its daily usage on first_day..last_day (usage_daily), plus, per gauge, the
        last day before first_day that had a reading. Read-only; one batch at a time, so a
        replay of every account holds one batch in memory."""
        s = self.session
        a, d, h = AccountRow, UsageDailyRow, PlanHistoryRow
        accounts = s.execute(select(a.id, a.external_id, a.vertical, a.plan, a.plan_since)
                             .where(a.id > after_id).order_by(a.id).limit(limit)).all()
        if not accounts:
            return []
        ids = [row.id for row in accounts]
        plans: dict[int, list[PlanHistoryEntry]] = defaultdict(list)
        for row in s.execute(select(h.account_id, h.from_plan, h.to_plan, h.at, h.source)
                             .where(h.account_id.in_(ids)).order_by(h.account_id, h.at, h.id)):
            plans[row.account_id].append(PlanHistoryEntry(row.from_plan, row.to_plan, row.at,
                                                          row.source))
        before = (select(d.account_id, d.metric, func.max(d.day).label("day"))
                  .where(d.account_id.in_(ids), d.metric.in_(GAUGES), d.day < first_day)
                  .group_by(d.account_id, d.metric).subquery())
        columns = (d.account_id, d.metric, d.day, d.total, d.max_quantity, d.last_quantity)
        rows = [*s.execute(select(*columns).join(before, (d.account_id == before.c.account_id)
                                                 & (d.metric == before.c.metric)
                                                 & (d.day == before.c.day))),
                *s.execute(select(*columns).where(d.account_id.in_(ids), d.day >= first_day,
                                                  d.day <= last_day))]
        days: dict[int, list[DailyUsage]] = defaultdict(list)
        for row in rows:
            days[row.account_id].append(DailyUsage(row.metric, row.day, int(row.total),
                                                   int(row.max_quantity), int(row.last_quantity)))
        return [UsageHistory(account_id=row.id, external_id=row.external_id,
                             vertical=row.vertical, plan=row.plan, plan_since=row.plan_since,
                             plans=tuple(plans[row.id]),
                             days=tuple(sorted(days[row.id], key=lambda u: (u.day, u.metric))))
                for row in accounts]


class SqlThresholdStateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def _conn(self) -> Connection:
        # Core execution for these plain column reads: the ORM's per-statement work is not needed.
        return self.session.connection()

    def get_many(self, account_ids: Iterable[int]) -> dict[int, frozenset[str]]:
        ids = list(set(account_ids))
        keys: dict[int, set[str]] = defaultdict(set)
        if ids:
            for account_id, key in self._conn.execute(
                    _statement(self.session, "threshold_states", lambda pg: select(
                        ThresholdStateRow.account_id, ThresholdStateRow.key)
                        .where(_ids_param(pg, ThresholdStateRow.account_id))), {"ids": ids}):
                keys[account_id].add(key)
        return {a: frozenset(keys.get(a, ())) for a in ids}

    def replace_many(self, states: dict[int, frozenset[str]], now: datetime) -> None:
        """Set each account's above-keys: one delete and one insert for all of them."""
        if not states:
            return
        self._conn.execute(_statement(self.session, "threshold_states_delete", lambda pg: delete(
            ThresholdStateRow).where(_ids_param(pg, ThresholdStateRow.account_id))),
            {"ids": list(states)})
        rows = [{"account_id": a, "key": k, "changed_at": now}
                for a, keys in states.items() for k in sorted(keys)]
        if rows:
            self._conn.execute(_statement(self.session, "threshold_states_insert",
                                          lambda pg: insert(ThresholdStateRow)), rows)


class SqlSignalRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, crossings: list[tuple[int, Crossing, SignalDecision | None]],
                 detected_at: datetime) -> None:
        if not crossings:
            return
        self.session.connection().execute(_statement(self.session, "signals_insert",
                                                     lambda pg: insert(SignalRow)), [
            {"outcome": d.outcome if d else None, "reason": d.reason if d else None,
             "defer_until": d.defer_until if d else None, "thread_id": d.thread_id if d else None,
             "account_id": account_id, "key": c.key, "direction": c.direction,
             "from_plan": c.from_plan, "to_plan": c.to_plan, "metric": c.metric,
             "value": c.value, "threshold": c.threshold, "crossed_at": c.at,
             "detected_at": detected_at, "event_id": c.event_id} for account_id, c, d in crossings])

    def for_account(self, account_id: int) -> list[tuple[Crossing, datetime, SignalDecision | None]]:
        rows = self.session.scalars(select(SignalRow).where(SignalRow.account_id == account_id)
                                    .order_by(SignalRow.crossed_at.desc(), SignalRow.id.desc()))
        return [(Crossing(key=r.key, direction=r.direction, from_plan=r.from_plan,
                          to_plan=r.to_plan, metric=r.metric, value=r.value,
                          threshold=r.threshold, at=r.crossed_at, event_id=r.event_id),
                 r.detected_at,
                 SignalDecision(r.outcome, r.reason, r.defer_until, r.thread_id) if r.outcome else None)
                for r in rows]
