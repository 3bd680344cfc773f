"""Usage sources for pull mode: the operator's TOML file (USAGE_SOURCES), one table per source.

    [sources.product]
    url = "postgresql+psycopg://reader@db/product"
    query = "SELECT id, account, metric, quantity, at FROM usage_log WHERE id > :cursor ORDER BY id"
    cursor = "id"
    every = "5m"
    start = 0          # optional: the cursor before the first row (default 0)

Parsing only (pure); reading the file is web/usage_sources_file.py, reading a source and keeping
its cursor is storage/usage_sources.py, the pull itself cli/pull.py.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

from core.errors import ConfigFileError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,60}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
EVERY = re.compile(r"^\s*([0-9]{1,6})\s*([smh])\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600}
KEYS = ("url", "query", "cursor", "every", "start")


class SourcesError(ConfigFileError):
    """A usage sources file that cannot be used: names the file, the key and what was expected."""


@dataclass(frozen=True)
class UsageSource:
    name: str
    url: str
    query: str
    cursor: str  # the column whose last ingested value is kept
    every: timedelta
    start: str = "0"  # the cursor before anything was read

    def event_id(self, row_id: object) -> str:
        """The id an event of this source is stored under: namespaced, so two sources (or the
        API) may use the same ids."""
        return f"{self.name}:{row_id}"


def parse_every(value: object) -> timedelta | None:
    """30s, 5m, 1h (a positive whole number and a unit); None when it is not that."""
    match = EVERY.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        return None
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def parse_sources(text: str, source: str) -> dict[str, UsageSource]:
    """The sources of a file's text, by name; a bad file raises SourcesError naming the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(source, "(file)", f"valid TOML ({exc})") from None
    unknown = sorted(set(raw) - {"sources"})
    if unknown:
        raise SourcesError(source, unknown[0], "only [sources.<name>] tables")
    tables = raw.get("sources", {})
    if not isinstance(tables, dict):
        raise SourcesError(source, "sources", "tables [sources.<name>]")
    return {name: _source(source, name, table) for name, table in tables.items()}


def _source(source: str, name: str, table: Any) -> UsageSource:
    where = f"sources.{name}"
    if not NAME.match(name):
        raise SourcesError(source, where, "a source name of letters, digits, - and _ "
                                          "(60 at most)", name)
    if not isinstance(table, dict):
        raise SourcesError(source, where, "a table with url, query, cursor and every")
    extra = sorted(set(table) - set(KEYS))
    if extra:
        raise SourcesError(source, f"{where}.{extra[0]}", f"one of {', '.join(KEYS)}")
    values: Mapping[str, Any] = table
    for key in ("url", "query", "cursor", "every"):
        if key not in values:
            raise SourcesError(source, f"{where}.{key}", "a value (required)")
    url, query, cursor = values["url"], values["query"], values["cursor"]
    if not isinstance(url, str) or not url.strip():
        raise SourcesError(source, f"{where}.url", "a database URL (a string, as SQLAlchemy "
                                                   "reads it)", url)
    if not isinstance(query, str) or not re.search(r":cursor\b", query):
        raise SourcesError(source, f"{where}.query", "a SELECT string containing :cursor "
                                                     "(the last ingested cursor value)", query)
    if not isinstance(cursor, str) or not COLUMN.match(cursor):
        raise SourcesError(source, f"{where}.cursor", "a column name of the query", cursor)
    every = parse_every(values["every"])
    if every is None:
        raise SourcesError(source, f"{where}.every", "a period like 30s, 5m or 1h",
                           values["every"])
    start = values.get("start", 0)
    if isinstance(start, bool) or not isinstance(start, (int, str)):
        raise SourcesError(source, f"{where}.start", "a number or a string", start)
    return UsageSource(name=name, url=url.strip(), query=query.strip().rstrip(";"),
                       cursor=cursor, every=every, start=str(start))
