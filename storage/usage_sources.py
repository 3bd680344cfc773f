"""Pull mode's storage: reading a usage source (any SQLAlchemy URL, the operator's read-only
credentials) a page at a time from a cursor, and keeping each source's cursor in our database
(usage_source_cursors). The pull itself, through the ingestion use case, is cli/pull.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from core.usage_sources import UsageSource
from storage.models import UsageSourceCursorRow


class SourceUnavailable(Exception):
    """A source that cannot be read at all (a SQLite file that is not there)."""


@dataclass(frozen=True)
class CursorState:
    cursor: str | None
    updated_at: datetime
    last_error: str | None


class SqlSourceCursors:
    """Each source's cursor, in our own database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> CursorState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(UsageSourceCursorRow.cursor, UsageSourceCursorRow.updated_at,
                                      UsageSourceCursorRow.last_error)
                               .where(UsageSourceCursorRow.source == name)).first()
        return None if row is None else CursorState(row.cursor, row.updated_at, row.last_error)

    def all(self) -> dict[str, CursorState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(
                UsageSourceCursorRow.source, UsageSourceCursorRow.cursor,
                UsageSourceCursorRow.updated_at, UsageSourceCursorRow.last_error)).all()
        return {r.source: CursorState(r.cursor, r.updated_at, r.last_error) for r in rows}

    def save(self, name: str, cursor: str | None, now: datetime,
             error: str | None = None) -> None:
        """Keep `cursor` (None: leave the kept one) and the pull's time and error."""
        with self.engine.begin() as conn:
            exists = conn.execute(select(UsageSourceCursorRow.source)
                                  .where(UsageSourceCursorRow.source == name)).first()
            table = UsageSourceCursorRow.__table__
            if exists is None:
                conn.execute(table.insert().values(source=name, cursor=cursor, updated_at=now,
                                                   last_error=error))
                return
            values: dict[str, Any] = {"updated_at": now, "last_error": error}
            if cursor is not None:
                values["cursor"] = cursor
            conn.execute(table.update().where(table.c.source == name).values(**values))


class SourceReader:
    """One source's database, opened for one pull (`close` after)."""

    def __init__(self, source: UsageSource) -> None:
        self.source = source
        url = make_url(source.url)
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:" and not Path(url.database).exists():
                raise SourceUnavailable(f"no SQLite file at {url.database}")
            self.engine = create_engine(url, hide_parameters=True)
        else:
            self.engine = create_engine(url, hide_parameters=True, pool_pre_ping=True,
                                        connect_args={"connect_timeout": 5})

    def count(self, cursor: str) -> int:
        """How many rows are past `cursor` now (for the progress bar)."""
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM ({self.source.query}) AS s"),
                                    {"cursor": cursor}).scalar_one())

    def page(self, cursor: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` rows past `cursor`, in the order of the cursor column."""
        column = '"' + self.source.cursor + '"'
        sql = text(f"SELECT * FROM ({self.source.query}) AS usage_source_page "
                   f"ORDER BY {column} LIMIT :usage_source_limit")
        with self.engine.connect() as conn:
            result = conn.execute(sql, {"cursor": cursor, "usage_source_limit": limit})
            return [dict(row._mapping) for row in result]

    def close(self) -> None:
        self.engine.dispose()
