"""bench/scale.py as a smoke test: a tiny population (400 accounts, 20,000 events) made with COPY
and derived in SQL, the re-evaluation after the catalog change run twice as a child process,
the reads, and a pull of 400 rows. It checks that the run goes end to end and that the
re-evaluation is right (every account's state is what the changed catalog says, a signal for
every threshold it found met, nothing changed the second time), not how fast anything is: the
published figures come from the full-size run (README, "Benchmarks")."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

pytest.importorskip("numpy", reason="bench/scale.py builds its COPY rows with numpy")


def rows(output: str) -> dict[str, list[str]]:
    """The result table's rows by their first cell."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("figure "))
    out = {}
    for line in lines[start + 2:]:
        cells = re.split(r"\s{2,}", line.strip())
        out[cells[0]] = cells[1:]
    return out


@pytest.mark.postgres
def test_the_scale_bench_runs_and_its_re_evaluation_is_right():
    from bench.scale import main

    result = CliRunner().invoke(main, ["--accounts", "400", "--events", "20000", "--pull-rows",
                                       "400", "--runs", "1", "--verify"])
    output = result.output
    assert result.exit_code == 0, output + repr(result.exception)
    table = rows(result.stdout)
    assert table["re-evaluation: accounts whose state is not what the catalog says"][:2] == \
        ["0", "0 of 400", "yes"][:2], table
    assert table["re-evaluation: a signal for every threshold now met"][-1] == "yes", table
    assert table["re-evaluation run again changes nothing"][-1] == "yes", table
    assert "400 accounts re-evaluated" in table["what it did"][0], table
    assert "GET /api/v1/accounts, first page, no filter" in table
    assert "GET /api/v1/metrics (last 90 days)" in table
    assert any(k.startswith("pull mode catching up 400 rows") for k in table)
    assert "PostgreSQL" in result.stdout and "load average" in result.stdout
