"""bench/faults.py as a smoke test: its three runs (load with a PostgreSQL restart and a killed
worker, a Twilio outage, `jobs run` killed mid-send) with tiny durations (`all --quick`) on the
session's throwaway cluster, which the load run restarts. The published figures come from the
full-length runs (README, "Load and faults"); this checks the runs work and find nothing lost or
duplicated."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

pytest.importorskip("gunicorn", reason="bench/faults.py load serves through gunicorn")


def table(output: str, first_column: str) -> list[dict[str, str]]:
    """The rows of the table whose header starts with `first_column`, by column name."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_column + " "))
    head = re.split(r"\s{2,}", lines[start].strip())
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(dict(zip(head, re.split(r"\s{2,}", line.strip()))))
    return rows


@pytest.mark.postgres
def test_the_three_fault_runs_lose_and_duplicate_nothing(pg_server):
    from bench.faults import main

    if pg_server[1] is None:
        pytest.skip("the load run restarts PostgreSQL: needs the throwaway cluster")
    result = CliRunner().invoke(main, ["all", "--quick"], obj=pg_server)
    output = result.output
    assert result.exit_code == 0, output
    assert output.count("result: ok") == 3, output

    [load] = table(output, "sent")
    assert (load["lost"], load["duplicated"]) == ("0", "0"), output
    assert int(load["acknowledged"].replace(",", "")) > 0

    [outage] = table(output, "queued")
    assert (outage["lost"], outage["sent more than once"]) == ("0", "0"), output
    assert outage["before Retry-After"].startswith("0 "), output
    assert outage["sent once"] == outage["queued"]

    kill = table(output, "trials")
    assert [row["trials"] for row in kill] == [
        "calibration (not killed)", "killed mid-run", "finished before the kill"]
    for row in kill:
        assert (row["duplicate upgrades"], row["lost upgrades"], row["lost SMS"],
                row["beyond the bound"]) == ("0", "0", "0", "0"), output
