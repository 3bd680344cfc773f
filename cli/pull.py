"""Pull mode: read usage from the operator's own databases (USAGE_SOURCES) through the same
ingestion use case as POST /api/v1/usage (core.services.record_usage): ids namespaced by source
(`<source>:<id>`), the same checks, thresholds and signals. `flask --app app usage pull` runs it
by hand; the scheduler's pass (`run_jobs`) pulls each source that is due per its `every`.

A source is read in pages from its saved cursor, in the order of its cursor column. After each
page is recorded (one transaction, all or nothing), the cursor moves past the rows recorded;
a crash between the two only means those rows are read again, and their ids dedupe them. A bad
row stops its source: the rows before it are recorded, the cursor stays before it, and the
reason is kept (usage_source_cursors.last_error) and reported; the other sources go on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core import services
from core.errors import DomainError
from core.usage_sources import UsageSource
from storage.usage_sources import CursorState, SourceReader, SourceUnavailable, SqlSourceCursors
from web.inputs import parse_events

PAGE = 1000  # rows a page reads, and a transaction records
COLUMNS = ("id", "account", "metric", "quantity", "at")
log = logging.getLogger(__name__)


@dataclass
class PullReport:
    source: str
    read: int = 0
    ingested: int = 0
    duplicates: int = 0
    crossings: int = 0
    cursor: str | None = None
    error: str | None = None

    def line(self) -> str:
        text = (f"{self.source}: {self.read} rows read, {self.ingested} ingested, "
                f"{self.duplicates} duplicates, {self.crossings} thresholds crossed; "
                f"cursor {self.cursor if self.cursor is not None else '(start)'}")
        if self.error:
            text += f"\n  FAILED: {self.error} (the cursor stays before it)"
        return text


def _reason(exc: BaseException) -> str:
    """A source's failure in a line: the driver's error and its first line."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


def _raw(source: UsageSource, row: dict[str, Any]) -> dict[str, Any]:
    """A source row as the API's event object (web.inputs.usage_event reads both)."""
    at, quantity = row["at"], row["quantity"]
    if isinstance(at, datetime):
        at = at.isoformat()
    if isinstance(quantity, Decimal) and quantity == quantity.to_integral_value():
        quantity = int(quantity)
    return {"id": source.event_id(row["id"]), "account": row["account"],
            "metric": row["metric"], "quantity": quantity, "at": at}


def pull_source(rt: Any, source: UsageSource, *, page_size: int = PAGE,
                on_total: Callable[[int], None] | None = None,
                progress: Callable[[int], None] | None = None) -> PullReport:
    """Pull one source from its saved cursor until nothing is new or a row stops it."""
    cursors = SqlSourceCursors(rt.engine)
    state = cursors.get(source.name)
    cursor = state.cursor if state is not None and state.cursor is not None else source.start
    report = PullReport(source.name, cursor=state.cursor if state is not None else None)
    try:
        reader = SourceReader(source)
    except (SourceUnavailable, ArgumentError, ImportError) as exc:
        report.error = f"cannot open the source: {_reason(exc)}"
        return _done(rt, cursors, report)
    try:
        if on_total is not None:
            on_total(reader.count(cursor))
        while report.error is None:
            rows = reader.page(cursor, page_size)
            if not rows:
                break
            missing = [c for c in dict.fromkeys((*COLUMNS, source.cursor)) if c not in rows[0]]
            if missing:
                report.error = (f"the query returns no column {', '.join(missing)} (it needs "
                                f"{', '.join(COLUMNS)} and the cursor column)")
                break
            report.read += len(rows)
            good = _record(rt, source, rows, report)
            if good:
                cursor = str(rows[good - 1][source.cursor])
                report.cursor = cursor
                cursors.save(source.name, cursor, rt.now())  # right after the rows committed
            if progress is not None:
                progress(len(rows))
            if len(rows) < page_size:
                break
    except SQLAlchemyError as exc:
        report.error = f"cannot read the source: {_reason(exc)}"
    finally:
        reader.close()
    return _done(rt, cursors, report)


def _record(rt: Any, source: UsageSource, rows: list[dict[str, Any]], report: PullReport) -> int:
    """Record a page; returns how many of its rows (from the first) were recorded. A bad row
    stops the page there: the rows before it are recorded, and the report says why."""
    items = parse_events([_raw(source, r) for r in rows], "rows")
    try:
        result = services.record_usage(rt.uow(), rt.catalog, items, rt.now(), rt.settings)
        good = len(rows)
    except DomainError as exc:
        good = exc.index if exc.index is not None else 0
        reason = re.sub(r"^(rows|events)\[\d+\]\.?", "", exc.message).lstrip(": ")
        report.error = f"row id {rows[good]['id']!r}: {reason}"
        if not good:
            return 0
        result = services.record_usage(rt.uow(), rt.catalog, items[:good], rt.now(), rt.settings)
    report.ingested += result.accepted
    report.duplicates += result.duplicates
    report.crossings += len(result.crossings)
    return good


def _done(rt: Any, cursors: SqlSourceCursors, report: PullReport) -> PullReport:
    cursors.save(report.source, None, rt.now(), report.error)
    if report.error:
        # The source's name only: a row's reason may quote its values, kept in the table.
        log.warning("usage pull: source %s stopped (see `flask --app app usage pull`)",
                    report.source)
    return report


def due(source: UsageSource, state: CursorState | None, now: datetime) -> bool:
    return state is None or state.updated_at + source.every <= now


def pull_due(rt: Any) -> str | None:
    """The scheduler's part: pull each source that is due; None when no source is configured."""
    sources: dict[str, UsageSource] = getattr(rt, "usage_sources", None) or {}
    if not sources:
        return None
    states = SqlSourceCursors(rt.engine).all()
    now = rt.now()
    reports = [pull_source(rt, s) for s in sources.values() if due(s, states.get(s.name), now)]
    failed = sum(1 for r in reports if r.error)
    return (f"usage pulled: {sum(r.ingested for r in reports)} events"
            + (f", {failed} sources failed" if failed else ""))
