"""SQL repositories: the core's ports (core.ports) over one SQLAlchemy session."""

from __future__ import annotations

import json
from functools import partial
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from types import MappingProxyType
from typing import Any, NamedTuple, TypedDict, TypeVar
from typing import cast as typing_cast

from sqlalchemy import (JSON, ColumnElement, Connection, CursorResult, Executable, Row, Select,
                        Text, any_, bindparam, case, cast, column, delete, func, insert, or_, select)
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
                            UsageEventRow, UsageGaugeRow)

CONTACT_FIELDS = ("name", "role", "phone", "whatsapp", "web_user_id", "email")


def _account(row: AccountRow | Row[Any],
             contacts: Iterable[ContactRow | Row[Any]] | None = None) -> StoredAccount:
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
_ACCOUNT_BY = {name: select(AccountRow.__table__).where(column == bindparam("value"))
               for name, column in (("id", AccountRow.__table__.c.id),
                                    ("external_id", AccountRow.__table__.c.external_id))}
_CONTACTS_OF = (select(ContactRow.__table__)
                .where(ContactRow.__table__.c.account_id == bindparam("account_id"))
                .order_by(ContactRow.__table__.c.position))


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _query(self) -> Select[tuple[AccountRow]]:
        return select(AccountRow).options(selectinload(AccountRow.contacts))

    def _read(self, by: str, value: int | str) -> StoredAccount | None:
        conn = self.session.connection()
        row = conn.execute(_ACCOUNT_BY[by], {"value": value}).first()
        if row is None:
            return None
        return _account(row, conn.execute(_CONTACTS_OF, {"account_id": row.id}).all())

    def get(self, external_id: str) -> StoredAccount | None:
        return self._read("external_id", external_id)

    def lock(self, account_id: int) -> None:
        """Lock the account's row: every writer takes it first (ingestion in lock_usage_terms,
        a conversation before its thread), so the two can never wait on each other in a cycle."""
        self.session.execute(select(AccountRow.id).where(AccountRow.id == account_id).with_for_update())

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
        drop("usage rollups", UsageGaugeRow, UsageGaugeRow.account_id.in_(ids))
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


# An INSERT that takes ON CONFLICT clauses: the two dialects' own, which say them alike.
_BulkInsert = sqlite.Insert | postgresql.Insert


def _bulk_insert(pg: bool, model: type[Base], columns: list[str]) -> _BulkInsert:
    """An INSERT of many rows that takes ON CONFLICT clauses; run it with `_bulk_run`.

    On PostgreSQL the rows travel as one JSON parameter (INSERT ... SELECT FROM
    json_to_recordset): one short statement, planned once, instead of a VALUES list of
    columns x rows parameters that the driver parses and quotes anew for every batch
    (bench/ingest.py measured the difference). SQLite gets a plain executemany.
    """
    if not pg:
        return sqlite_insert(model)
    table = model.__table__
    records = (func.json_to_recordset(cast(bindparam("rows", type_=Text), JSON))
               .table_valued(*[column(c, table.c[c].type) for c in columns])
               .render_derived(name="r", with_types=True))
    return pg_insert(model).from_select(columns, select(*[records.c[c] for c in columns]))


def _json_value(value: object) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        # In UTC, as UTCDateTime stores every time: PostgreSQL reads no offset beyond ±15:59,
        # and Python's reach ±23:59 ("…T03:19:11-21:41" was a 500).
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _bulk_run(session: Session, stmt: Executable,
              rows: Sequence[Mapping[str, object]]) -> CursorResult[Any]:
    conn = session.connection()
    if _is_pg(session):
        return conn.execute(stmt, {"rows": json.dumps(rows, default=_json_value)})
    return conn.execute(stmt, rows)


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


def _upsert_gauges(pg: bool) -> _BulkInsert:
    stmt = _bulk_insert(pg, UsageGaugeRow, GAUGE_COLUMNS)
    return stmt.on_conflict_do_update(
        index_elements=["account_id", "metric"],
        set_={"quantity": stmt.excluded.quantity, "at": stmt.excluded.at},
        where=stmt.excluded.at >= UsageGaugeRow.at)


def _ids_param(pg: bool, col: InstrumentedAttribute[_Value]) -> ColumnElement[bool]:
    """`col IN :ids` for a statement built once (see `_statement`): on PostgreSQL `= ANY` of one
    array parameter, on SQLite an expanding parameter."""
    if pg:
        return col == any_(bindparam("ids", type_=ARRAY(col.type)))
    return col.in_(bindparam("ids", expanding=True))


class _MatrixStatements(NamedTuple):
    """The usage matrix's reads (`_matrix_statements`)."""

    daily: Select[tuple[int, str, int, int]]  # account, metric, sum, highest
    first_day: Select[tuple[int, str, int, int]]  # the same
    gauges: Select[tuple[int, str, int, datetime]]  # account, metric, reading, at
    carried_events: Select[tuple[int, int, datetime]]  # account, integrations reading, at
    carried_daily: Select[tuple[int, int, datetime]]  # the same


def _matrix_statements(pg: bool) -> _MatrixStatements:
    """The usage matrix's reads, with parameters `ids` (account ids) and the window's bounds."""
    among = partial(_ids_param, pg)
    e, d, g = UsageEventRow, UsageDailyRow, UsageGaugeRow
    ranked = (select(e.account_id, e.quantity, e.at,
                     func.row_number().over(partition_by=e.account_id,
                                            order_by=(e.at.desc(), e.seq.desc())).label("rn"))
              .where(among(e.account_id), e.metric == "integrations",
                     e.at >= bindparam("day_start"), e.at <= bindparam("since")).subquery())
    last_day = (select(d.account_id, func.max(d.day).label("day"))
                .where(among(d.account_id), d.metric == "integrations",
                       d.day < bindparam("first_day"))
                .group_by(d.account_id).subquery())
    return _MatrixStatements(
        daily=select(d.account_id, d.metric, func.sum(d.total), func.max(d.max_quantity))
        .where(among(d.account_id), d.day > bindparam("first_day"))
        .group_by(d.account_id, d.metric),
        first_day=select(e.account_id, e.metric, func.sum(e.quantity), func.max(e.quantity))
        .where(among(e.account_id), e.at > bindparam("since"), e.at < bindparam("first_day_end"))
        .group_by(e.account_id, e.metric),
        gauges=select(g.account_id, g.metric, g.quantity, g.at).where(among(g.account_id)),
        carried_events=select(ranked.c.account_id, ranked.c.quantity, ranked.c.at)
        .where(ranked.c.rn == 1),
        carried_daily=select(d.account_id, d.last_quantity, d.last_at)
        .join(last_day, (d.account_id == last_day.c.account_id) & (d.day == last_day.c.day))
        .where(d.metric == "integrations"),
    )


EVENT_COLUMNS = ["event_id", "account_id", "metric", "quantity", "at", "received_at"]
DAILY_COLUMNS = ["account_id", "metric", "day", "total", "max_quantity", "last_quantity", "last_at"]
GAUGE_COLUMNS = ["account_id", "metric", "quantity", "at"]


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
    rollups per metric (usage_daily) and the latest reading of each gauge (usage_gauges)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def _conn(self) -> Connection:
        # Core execution for these plain column reads: the ORM's per-statement work is not needed.
        return self.session.connection()

    def add_new(self, rows: list[tuple[int, UsageEvent]], received_at: datetime) -> set[str]:
        """Store the events whose ids are new; return those ids. Ids already stored are skipped
        by the unique key itself, so two writers can never store one event twice."""
        if not rows:
            return set()
        inserted = set(_bulk_run(self.session, _statement(self.session, "events", _insert_events), [
            {"event_id": e.id, "account_id": account_id, "metric": e.metric,
             "quantity": e.quantity, "at": e.at, "received_at": received_at}
            for account_id, e in rows]).scalars())
        stored = [(a, e) for a, e in rows if e.id in inserted]
        self._roll_up(stored)
        return inserted

    def _roll_up(self, rows: list[tuple[int, UsageEvent]]) -> None:
        daily: dict[tuple[int, str, date], _DailyRollup] = {}
        gauges: dict[tuple[int, str], dict[str, object]] = {}
        for account_id, e in sorted(rows, key=lambda r: r[1].at):
            day = e.at.astimezone(timezone.utc).date()
            d = daily.setdefault((account_id, e.metric, day), {
                "account_id": account_id, "metric": e.metric, "day": day, "total": 0,
                "max_quantity": e.quantity, "last_quantity": e.quantity, "last_at": e.at})
            d["total"] += e.quantity
            d["max_quantity"] = max(d["max_quantity"], e.quantity)
            d["last_quantity"], d["last_at"] = e.quantity, e.at
            if e.metric in GAUGES:
                gauges[(account_id, e.metric)] = {"account_id": account_id, "metric": e.metric,
                                                  "quantity": e.quantity, "at": e.at}
        if daily:
            _bulk_run(self.session, _statement(self.session, "daily", _upsert_daily),
                      list(daily.values()))
        if gauges:
            _bulk_run(self.session, _statement(self.session, "gauges", _upsert_gauges),
                      list(gauges.values()))

    def matrices(self, account_ids: Iterable[int], now: datetime) -> dict[int, UsageMatrix]:
        """Each account's matrix as of `now`, exactly (the same as core.usage applying every
        event), from the daily rollups plus the raw events of the window's first, partial day.

        The statements are built once per dialect (`_matrix_statements`) and take their values
        as parameters: building and hashing a new statement tree per call cost more than the
        database's work for one account (an inbound message reads one matrix)."""
        ids = list(set(account_ids))
        if not ids:
            return {}
        q = _statement(self.session, "matrix", _matrix_statements)
        since = (now - WINDOW).astimezone(timezone.utc)  # the rollups' days are UTC days
        first_day = since.date()
        first_day_end = _day_start(first_day + timedelta(days=1))
        sums: dict[tuple[int, str], int] = defaultdict(int)
        peaks: dict[int, int] = defaultdict(int)  # highest integrations reading in the window
        # Whole days after the window's first day, then the part of the first day inside it.
        for account_id, metric, total, peak in [
                *self._conn.execute(q.daily, {"ids": ids, "first_day": first_day}),
                *self._conn.execute(q.first_day, {"ids": ids, "since": since,
                                                     "first_day_end": first_day_end})]:
            sums[(account_id, metric)] += int(total)
            if metric == "integrations":
                peaks[account_id] = max(peaks[account_id], int(peak))
        latest = {(a, m): (int(qty), at)
                  for a, m, qty, at in self._conn.execute(q.gauges, {"ids": ids})}
        carried = self._integrations_at(q, ids, since, first_day)
        features: dict[int, dict[str, int]] = defaultdict(dict)
        for (account_id, metric), total in sorted(sums.items()):
            if metric.startswith("feature:"):
                features[account_id][metric[len("feature:"):]] = total
        out = {}
        for account_id in ids:
            seats = latest.get((account_id, "seats"))
            integrations = latest.get((account_id, "integrations"))
            out[account_id] = UsageMatrix(
                messages=sums.get((account_id, "messages"), 0),
                seats=seats[0] if seats else 0,
                seats_at=seats[1] if seats else None,
                integrations=integrations[0] if integrations else 0,
                integrations_at=integrations[1] if integrations else None,
                integrations_window_max=peaks.get(account_id, 0),
                integrations_carried=carried.get(account_id, (0, None))[0],
                integrations_carried_at=carried.get(account_id, (0, None))[1],
                features=MappingProxyType(features.get(account_id, {})),
            )
        return out

    def _integrations_at(self, q: _MatrixStatements, ids: list[int], since: datetime,
                         first_day: date) -> dict[int, tuple[int, datetime]]:
        """The integrations reading in effect at `since`: the latest one at or before it, from the
        raw events of its own day, else the last reading of the latest earlier day."""
        found = {a: (int(qty), at) for a, qty, at in self._conn.execute(
            q.carried_events, {"ids": ids, "day_start": _day_start(first_day), "since": since})}
        rest = [a for a in ids if a not in found]
        if rest:
            found.update({a: (int(qty), at) for a, qty, at in self._conn.execute(
                q.carried_daily, {"ids": rest, "first_day": first_day})})
        return found


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
