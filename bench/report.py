"""What the benchmarks print besides their figures: a plain text table (first column left, the
rest right-aligned) and a line saying when and on what machine they were measured."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Sequence


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(postgresql: str | None = None) -> str:
    """One line: the date (UTC), the CPUs, their model, PostgreSQL's version, Python's."""
    parts = [datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             f"{os.cpu_count()} CPUs ({cpu_model()})"]
    if postgresql:
        parts.append(f"PostgreSQL {postgresql}")
    parts.append(f"Python {platform.python_version()}")
    return "; ".join(parts)
