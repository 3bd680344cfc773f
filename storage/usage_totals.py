"""The per-account usage row (usage_totals): what a usage matrix needs besides the raw events of
the window's first, partial day, kept in step with the events by the transaction that stores them.

A row holds its counters over the UTC days after its `base_day` (see storage.models.UsageTotalRow).
A reader whose window's first day F is the row's base day reads the row as it is. When F is
later (days have left the window since the row was written), the reader subtracts the days
between from usage_daily — a writer then stores the row moved up to F, so in steady ingestion
that is a day's rollups once a day per account. When F is earlier than the base day (a reader
whose clock is behind the writer's) or more than a window later, the row is derived anew from
usage_daily, as `rebuild_usage_totals` does for every account. Either way the matrix is exact:
the same as core.usage applying every event (tests/integration/test_storage.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple, TypeVar
from typing import cast as typing_cast

from sqlalchemy import ColumnElement, Connection, Select, bindparam, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute

from core.usage import GAUGES, WINDOW
from storage.bulk import bulk_insert, ids_param, run_bulk
from storage.models import UsageDailyRow, UsageTotalRow

TOTAL_COLUMNS = ["account_id", "base_day", "messages", "features", "seats", "seats_at",
                 "integrations", "integrations_at", "peak", "peak_day", "carried", "carried_at"]
# A row more than this behind the reader's first day is derived anew rather than moved up.
MAX_CATCH_UP = WINDOW + timedelta(days=1)
FEATURE = "feature:"


def first_day_of(now: datetime) -> date:
    """The UTC day the window ending at `now` starts on (it holds only part of that day)."""
    return (now - WINDOW).astimezone(timezone.utc).date()


@dataclass
class Totals:
    """An account's usage row as of `base_day`: counters and the integrations peak over the days
    after it, the integrations reading carried in from the days before it, the latest gauges."""

    base_day: date
    messages: int = 0
    # Per feature: its hits and the latest day one was counted on (an ordinal). A feature is in
    # the matrix while that day is in the window, even with 0 hits, as core.usage has it.
    features: dict[str, list[int]] = field(default_factory=dict)
    seats: int | None = None
    seats_at: datetime | None = None
    integrations: int | None = None
    integrations_at: datetime | None = None
    peak: int | None = None
    peak_day: date | None = None
    carried: int | None = None
    carried_at: datetime | None = None

    def add(self, metric: str, quantity: int, at: datetime) -> None:
        """Count one more stored event (events stored later win ties on `at`, as in usage_daily)."""
        day = at.astimezone(timezone.utc).date()
        if metric == "seats":
            if self.seats_at is None or at >= self.seats_at:
                self.seats, self.seats_at = quantity, at
        elif metric == "integrations":
            if self.integrations_at is None or at >= self.integrations_at:
                self.integrations, self.integrations_at = quantity, at
            if day > self.base_day:
                self._peak(quantity, day)
            elif day < self.base_day and (self.carried_at is None or at >= self.carried_at):
                self.carried, self.carried_at = quantity, at
        elif day > self.base_day:
            self._count(metric, quantity, day)

    def _count(self, metric: str, quantity: int, day: date) -> None:
        if metric == "messages":
            self.messages += quantity
        elif metric.startswith(FEATURE):
            hits = self.features.setdefault(metric[len(FEATURE):], [0, day.toordinal()])
            hits[0] += quantity
            hits[1] = max(hits[1], day.toordinal())

    def _uncount(self, metric: str, quantity: int) -> None:
        if metric == "messages":
            self.messages -= quantity
        elif metric.startswith(FEATURE):
            self.features[metric[len(FEATURE):]][0] -= quantity

    def feature_hits(self) -> dict[str, int]:
        """Hits per feature on the days after the base day."""
        return {name: hits for name, (hits, _) in self.features.items()}

    def _peak(self, quantity: int, day: date) -> None:
        if self.peak is None or quantity > self.peak:
            self.peak, self.peak_day = quantity, day
        elif quantity == self.peak and (self.peak_day is None or day > self.peak_day):
            self.peak_day = day

    def row(self, account_id: int) -> dict[str, object]:
        return {"account_id": account_id, "base_day": self.base_day, "messages": self.messages,
                "features": json.dumps(self.features, sort_keys=True) if self.features else None,
                "seats": self.seats, "seats_at": self.seats_at,
                "integrations": self.integrations, "integrations_at": self.integrations_at,
                "peak": self.peak, "peak_day": self.peak_day,
                "carried": self.carried, "carried_at": self.carried_at}


class _Statements(NamedTuple):
    between: Select[Any]  # rollups from each row's base day to `first_day`
    peaks: Select[Any]  # integrations rollups after `first_day`
    sums: Select[Any]  # counters' sums after `first_day`
    carried: Select[Any]  # the last integrations reading of the latest day before `first_day`
    gauges: Select[Any]  # each gauge's latest reading
    upsert: sqlite.Insert | postgresql.Insert


def _build(pg: bool) -> _Statements:
    d, t = UsageDailyRow, UsageTotalRow

    def among(col: InstrumentedAttribute[int]) -> ColumnElement[bool]:
        return ids_param(pg, col)

    first_day = bindparam("first_day", type_=d.day.type)
    last_carried = (select(d.account_id, func.max(d.day).label("day"))
                    .where(among(d.account_id), d.metric == "integrations", d.day < first_day)
                    .group_by(d.account_id).subquery())
    last_gauge = (select(d.account_id, d.metric, func.max(d.day).label("day"))
                  .where(among(d.account_id), d.metric.in_(GAUGES))
                  .group_by(d.account_id, d.metric).subquery())
    upsert = bulk_insert(pg, UsageTotalRow, TOTAL_COLUMNS)
    upsert = upsert.on_conflict_do_update(
        index_elements=["account_id"],
        set_={c: upsert.excluded[c] for c in TOTAL_COLUMNS if c != "account_id"})
    return _Statements(
        between=select(d.account_id, d.metric, d.day, d.total, d.last_quantity, d.last_at)
        .join(t, t.account_id == d.account_id)
        .where(among(d.account_id), d.day >= t.base_day, d.day <= first_day),
        peaks=select(d.account_id, d.day, d.max_quantity)
        .where(among(d.account_id), d.metric == "integrations", d.day > first_day),
        sums=select(d.account_id, d.metric, func.sum(d.total), func.max(d.day))
        .where(among(d.account_id), d.day > first_day, d.metric.not_in(GAUGES))
        .group_by(d.account_id, d.metric),
        carried=select(d.account_id, d.last_quantity, d.last_at)
        .join(last_carried, (d.account_id == last_carried.c.account_id)
              & (d.day == last_carried.c.day))
        .where(d.metric == "integrations"),
        gauges=select(d.account_id, d.metric, d.last_quantity, d.last_at)
        .join(last_gauge, (d.account_id == last_gauge.c.account_id)
              & (d.metric == last_gauge.c.metric) & (d.day == last_gauge.c.day)),
        upsert=upsert,
    )


_CACHE: dict[tuple[str, str], object] = {}
_Built = TypeVar("_Built")


def statement(conn: Connection, name: str, build: Callable[[bool], _Built]) -> _Built:
    """Build a statement once per dialect, so its compiled form is reused batch after batch."""
    key = (conn.dialect.name, name)
    if key not in _CACHE:
        _CACHE[key] = build(conn.dialect.name == "postgresql")
    return typing_cast(_Built, _CACHE[key])


def _q(conn: Connection) -> _Statements:
    return statement(conn, "usage_totals", _build)


_SELECT_ROWS = f"SELECT {', '.join(TOTAL_COLUMNS)} FROM usage_totals WHERE account_id "
_UTC = timezone.utc


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=_UTC)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _rows(conn: Connection, ids: list[int]) -> list[tuple[Any, ...]]:
    """The usage rows of `ids`, read straight from the driver: SQLAlchemy's SQLite result
    processors parse a time with a regular expression, which cost more than the rest of a
    matrix's Python work (6 times and days a row); `fromisoformat` reads UTCDateTime's text."""
    if conn.dialect.name == "postgresql":
        return [(a, b, m, f, s, s_at and s_at.astimezone(_UTC), i, i_at and i_at.astimezone(_UTC),
                 p, p_day, c, c_at and c_at.astimezone(_UTC))
                for a, b, m, f, s, s_at, i, i_at, p, p_day, c, c_at in conn.exec_driver_sql(
                    _SELECT_ROWS + "= ANY(%(ids)s)", {"ids": ids})]
    out = []
    for start in range(0, len(ids), 30_000):  # SQLite's limit is 32,766 parameters
        part = ids[start:start + 30_000]
        for a, b, m, f, s, s_at, i, i_at, p, p_day, c, c_at in conn.exec_driver_sql(
                _SELECT_ROWS + "IN (" + ", ".join("?" * len(part)) + ")", tuple(part)):
            out.append((a, date.fromisoformat(b), m, f, s, _time(s_at), i, _time(i_at), p,
                        _day(p_day), c, _time(c_at)))
    return out


def read_totals(conn: Connection, ids: list[int], first_day: date) -> dict[int, Totals]:
    """The usage rows of these accounts as of `first_day` (accounts with no usage have none):
    read as they are when their base day is `first_day`, else moved up to it or derived anew
    from the rollups. Nothing is written."""
    q = _q(conn)
    found: dict[int, Totals] = {}
    behind: list[int] = []
    anew: list[int] = []
    for (account_id, base_day, messages, features, seats, seats_at, integrations,
         integrations_at, peak, peak_day, carried, carried_at) in _rows(conn, ids):
        if base_day == first_day:
            pass
        elif first_day - MAX_CATCH_UP <= base_day < first_day:
            behind.append(account_id)
        else:
            anew.append(account_id)
            continue
        found[account_id] = Totals(
            base_day, int(messages), json.loads(features) if features else {},
            seats, seats_at, integrations, integrations_at, peak, peak_day, carried, carried_at)
    if behind:
        _catch_up(conn, q, found, behind, first_day)
    if anew:
        found.update(from_rollups(conn, anew, first_day))
    return found


def _catch_up(conn: Connection, q: _Statements, found: dict[int, Totals], ids: list[int],
              first_day: date) -> None:
    """Move rows up from their base day to `first_day`: the days between leave the counters,
    their last integrations reading may become the carried one, and a peak read on one of them
    is looked for again among the days after `first_day`."""
    for account_id, metric, day, total, last_quantity, last_at in conn.execute(
            q.between, {"ids": ids, "first_day": first_day}):
        t = found[account_id]
        if day > t.base_day:
            t._uncount(metric, int(total))
        if metric == "integrations" and day < first_day and (
                t.carried_at is None or last_at > t.carried_at):
            t.carried, t.carried_at = int(last_quantity), last_at
    lost_peak = []
    for account_id in ids:
        t = found[account_id]
        t.base_day = first_day
        edge = first_day.toordinal()
        t.features = {name: hits for name, hits in t.features.items() if hits[1] > edge}
        if t.peak_day is not None and t.peak_day <= first_day:
            t.peak, t.peak_day = None, None
            lost_peak.append(account_id)
    if lost_peak:
        for account_id, day, highest in conn.execute(q.peaks, {"ids": lost_peak,
                                                              "first_day": first_day}):
            found[account_id]._peak(int(highest), day)


def from_rollups(conn: Connection, ids: list[int], first_day: date) -> dict[int, Totals]:
    """These accounts' usage rows as of `first_day`, derived from usage_daily alone."""
    q = _q(conn)
    found = {a: Totals(first_day) for a in ids}
    params = {"ids": ids, "first_day": first_day}
    for account_id, metric, total, last_day in conn.execute(q.sums, params):
        found[account_id]._count(metric, int(total), last_day)
    for account_id, day, highest in conn.execute(q.peaks, params):
        found[account_id]._peak(int(highest), day)
    for account_id, quantity, at in conn.execute(q.carried, params):
        found[account_id].carried, found[account_id].carried_at = int(quantity), at
    for account_id, metric, quantity, at in conn.execute(q.gauges, {"ids": ids}):
        setattr(found[account_id], metric, int(quantity))
        setattr(found[account_id], f"{metric}_at", at)
    return found


def write_totals(conn: Connection, totals: dict[int, Totals]) -> None:
    """Store these usage rows (insert or replace); the caller holds the accounts' locks."""
    if totals:
        run_bulk(conn, _q(conn).upsert, [t.row(a) for a, t in sorted(totals.items())])


def rebuild_usage_totals(conn: Connection, now: datetime, *, chunk: int = 2000) -> int:
    """Derive every account's usage row anew from usage_daily, `chunk` accounts at a time, as of
    `now`; return how many rows were written. Migration 0014 calls it, and so can a bulk loader
    that wrote usage_events and usage_daily itself (see `rebuild_usage_daily`). Run it with
    ingestion stopped, in one transaction (the caller's)."""
    first_day = first_day_of(now)
    d = UsageDailyRow
    conn.execute(delete(UsageTotalRow))
    after, written = -1, 0
    while True:
        ids = list(conn.execute(select(d.account_id).where(d.account_id > after)
                                .group_by(d.account_id).order_by(d.account_id)
                                .limit(chunk)).scalars())
        if not ids:
            return written
        write_totals(conn, from_rollups(conn, ids, first_day))
        written += len(ids)
        after = ids[-1]


_DAILY_FROM_EVENTS = """
INSERT INTO usage_daily (account_id, metric, day, total, max_quantity, last_quantity, last_at)
SELECT account_id, metric, day, total, max_quantity, quantity, at FROM (
  SELECT account_id, metric, {day} AS day, quantity, at,
         SUM(quantity) OVER w AS total, MAX(quantity) OVER w AS max_quantity,
         ROW_NUMBER() OVER (PARTITION BY account_id, metric, {day}
                            ORDER BY at DESC, seq DESC) AS rn
  FROM usage_events
  WINDOW w AS (PARTITION BY account_id, metric, {day})
) AS e WHERE rn = 1
"""


def rebuild_usage_daily(conn: Connection) -> None:
    """Derive usage_daily anew from usage_events (a day's last reading: the latest `at`, then
    the latest stored), for a bulk loader that wrote raw events only; then call
    `rebuild_usage_totals`. Run it with ingestion stopped, in the caller's transaction."""
    day = ("(at AT TIME ZONE 'UTC')::date" if conn.dialect.name == "postgresql"
           else "date(at)")
    conn.execute(delete(UsageDailyRow))
    conn.execute(text(_DAILY_FROM_EVENTS.format(day=day)))


def rebuild_usage_summaries(conn: Connection, now: datetime) -> int:
    """usage_daily, then every usage row, derived anew from usage_events (for a bulk loader)."""
    rebuild_usage_daily(conn)
    return rebuild_usage_totals(conn, now)

