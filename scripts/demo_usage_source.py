"""Make (or grow) the demo usage source that usage_sources.example.toml points at: a SQLite file,
instance/demo_usage_source.sqlite3, with a table usage_log as a SaaS product might keep it.

Usage, from the repository root (after scripts/serve or `flask --app app init --demo`):
    .venv/bin/python scripts/demo_usage_source.py [path]
    UPGRADE_CHAT_USAGE_SOURCES=usage_sources.example.toml .venv/bin/flask --app app usage pull

Each run adds three days of messages for the demo account quiet-studio (4,200 in all, dated the
last three days), with the next ids: the first pull takes it past Starter's 4,500-message
threshold; a second pull reads nothing new; run this again and the next pull reads the new rows.
"""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEFAULT = Path("instance") / "demo_usage_source.sqlite3"


def main(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS usage_log (id INTEGER PRIMARY KEY, account TEXT "
                     "NOT NULL, metric TEXT NOT NULL, quantity INTEGER NOT NULL, at TEXT NOT NULL)")
        last = conn.execute("SELECT coalesce(max(id), 0) FROM usage_log").fetchone()[0]
        rows = [(last + i + 1, "quiet-studio", "messages", 1400,
                 (now - timedelta(days=3 - i)).isoformat().replace("+00:00", "Z"))
                for i in range(3)]
        conn.executemany("INSERT INTO usage_log VALUES (?, ?, ?, ?, ?)", rows)
    print(f"{path}: usage_log has rows 1 to {rows[-1][0]} (added {rows[0][0]} to {rows[-1][0]})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
