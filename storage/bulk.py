"""Bulk statements both dialects share: many rows in one INSERT, and `IN :ids` for a statement
built once (see docs/architecture.md, Storage, "PostgreSQL bulk statements")."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any, TypeVar
from typing import cast as typing_cast

from sqlalchemy import (JSON, ClauseElement, ColumnElement, Connection, Date, DateTime, Result,
                        Text, any_, bindparam, cast, column, func, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Base, UTCDateTime

# An INSERT that takes ON CONFLICT clauses: the two dialects' own, which say them alike.
BulkInsert = sqlite.Insert | postgresql.Insert
_Value = TypeVar("_Value")
log = logging.getLogger(__name__)


def bulk_insert(pg: bool, model: type[Base], columns: list[str]) -> BulkInsert:
    """An INSERT of many rows that takes ON CONFLICT clauses; run it with `run_bulk`.

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


def json_value(value: object) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        # In UTC, as UTCDateTime stores every time: PostgreSQL reads no offset beyond ±15:59,
        # and Python's reach ±23:59 ("…T03:19:11-21:41" was a 500).
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


class _Compiled:
    """A bulk statement compiled once for one dialect. SQLAlchemy caches no compiled form of an
    INSERT with an ON CONFLICT clause (its cache key is None), so executing the statement
    compiled it anew every batch; the rows' values are converted here, as the columns' types
    would (UTCDateTime: naive UTC text on SQLite)."""

    def __init__(self, stmt: ClauseElement, conn: Connection, columns: Sequence[str]) -> None:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        self.sql = compiled.string
        self.names = tuple(getattr(compiled, "positiontup", None) or ())
        self.returning = bool(getattr(compiled, "returning", None))
        self.stmt = stmt  # keeps the id this is cached under in use
        table = getattr(stmt, "table", None)
        types = [table.c[n].type if table is not None and n in table.c else None
                 for n in self.names]
        # Positions of the values SQLite needs as text (times and days), as the types bind them.
        self.times = tuple(i for i, t in enumerate(types) if isinstance(t, (DateTime, UTCDateTime)))
        self.days = tuple(i for i, t in enumerate(types) if isinstance(t, Date))
        if conn.dialect.name != "postgresql" and self.returning:
            # executemany returns no rows: one INSERT of many VALUES rows instead.
            one = "(" + ", ".join("?" * len(self.names)) + ")"
            self.head, self.tail = self.sql.split("VALUES " + one)
            self.one = one


_COMPILED: dict[tuple[str, int], _Compiled] = {}
_SQLITE_ROWS = 2000  # rows per multi-row INSERT on SQLite (its limit is 32,766 parameters)


def _sqlite_time(value: datetime | None) -> str | None:
    """UTCDateTime's form on SQLite: SQLAlchemy's DATETIME text of the naive UTC time, always
    with microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_rows(compiled: _Compiled,
                 rows: Sequence[Mapping[str, object]]) -> list[tuple[object, ...]]:
    names, times, days = compiled.names, compiled.times, compiled.days
    out = []
    for row in rows:
        values = [row[n] for n in names]
        for i in times:
            values[i] = _sqlite_time(typing_cast(datetime | None, values[i]))
        for i in days:
            day = values[i]
            values[i] = day.isoformat() if isinstance(day, date) else day
        out.append(tuple(values))
    return out


def run_bulk(conn: Connection, stmt: ClauseElement,
             rows: Sequence[Mapping[str, object]]) -> Result[Any]:
    """Run a `bulk_insert` statement for these rows (all with the same keys, at least one)."""
    key = (conn.dialect.name, id(stmt))
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _Compiled(stmt, conn, list(rows[0]))
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql(compiled.sql, {"rows": json.dumps(rows, default=json_value)})
    values = _sqlite_rows(compiled, rows)
    if not compiled.returning:
        return conn.exec_driver_sql(compiled.sql, values)
    result: Result[Any] | None = None
    for start in range(0, len(values), _SQLITE_ROWS):
        part = values[start:start + _SQLITE_ROWS]
        sql = compiled.head + "VALUES " + ", ".join([compiled.one] * len(part)) + compiled.tail
        flat = tuple(v for row in part for v in row)
        chunk = conn.exec_driver_sql(sql, flat)
        if result is None:
            result = chunk
        else:
            result = result.merge(chunk)
    assert result is not None
    return result


def ids_param(pg: bool, col: InstrumentedAttribute[_Value]) -> ColumnElement[bool]:
    """`col IN :ids` for a statement built once: on PostgreSQL `= ANY` of one array parameter,
    on SQLite an expanding parameter."""
    if pg:
        return col == any_(bindparam("ids", type_=ARRAY(col.type)))
    return col.in_(bindparam("ids", expanding=True))


# PostgreSQL: usage events are copied (binary COPY) into this per-connection temporary table
# and moved on with INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING, so the unique key
# still says which ids are new when two writers race. Measured against the JSON insert
# (docs/architecture.md, Performance): a batch of 500 in 30 ms instead of 40 (2-core VM, load 10).
EVENTS_IN = "usage_events_in"
_EVENTS_IN_DDL = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {EVENTS_IN} ("
                  "event_id varchar(200), account_id bigint, metric varchar(100), "
                  "quantity bigint, at timestamptz, received_at timestamptz) "
                  "ON COMMIT DELETE ROWS")
_EVENT_TYPES = ["varchar", "int8", "varchar", "int8", "timestamptz", "timestamptz"]
_EVENT_NAMES = "event_id, account_id, metric, quantity, at, received_at"


def create_copy_tables(dbapi_conn: Any) -> bool:
    """Create this PostgreSQL connection's temporary tables for COPY (the engine's connect
    hook, storage/db.py), committed, so that no rollback can drop them; whether they could be.
    A connection that cannot (a read-only standby, a role without the TEMPORARY privilege,
    which PUBLIC has by default) still serves everything else, and ingestion stores its events
    with the JSON insert instead of COPY (storage.repositories, `add_new`)."""
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute(_EVENTS_IN_DDL)
        dbapi_conn.commit()
        return True
    except Exception as exc:  # the driver's error, whatever it is: the connection stays usable
        dbapi_conn.rollback()
        log.warning("no temporary table for COPY on this connection: %s", type(exc).__name__)
        return False


def copy_events(conn: Connection,
                rows: Sequence[tuple[str, int, str, int, datetime, datetime]]) -> set[str]:
    """Store usage events (event_id, account_id, metric, quantity, at, received_at) on
    PostgreSQL through binary COPY into the connection's EVENTS_IN table (made when the
    connection opened: `create_copy_tables`); return the ids that were new."""
    record = conn.connection
    with record.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
        with cur.copy(f"COPY {EVENTS_IN} ({_EVENT_NAMES}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_EVENT_TYPES)
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO usage_events ({_EVENT_NAMES}) SELECT {_EVENT_NAMES} "
                    f"FROM {EVENTS_IN} ON CONFLICT (event_id) DO NOTHING RETURNING event_id")
        return {event_id for (event_id,) in cur.fetchall()}
