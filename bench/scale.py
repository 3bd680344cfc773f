"""A million accounts: how the operations that walk every account, and the console's reads, hold
up at full size.

Run from the repository root:

    .venv/bin/python bench/scale.py                  # 1,000,000 accounts, 30,000,000 events
    .venv/bin/python bench/scale.py --quick          # 20,000 accounts, 600,000 events
    .venv/bin/python bench/scale.py --data-dir /var/tmp/scale   # keep the cluster; a second
                                                     # run with the same sizes measures it again

A throwaway PostgreSQL cluster (fsync, synchronous_commit and full_page_writes off: a bench, not
a database to keep) gets the population of bench/scale_data.py: accounts with contacts, usage
events over 90 days written with COPY, and the tables the service derives from them, derived in
SQL. Then it times the real code paths, each against its aim:

- a full re-evaluation of every account's thresholds after a catalog change
  (`flask --app app thresholds reevaluate`, a child process: its time and peak RSS);
- the console's metrics for a 90-day window (GET /api/v1/metrics, Flask test client);
- the account list's first page (GET /api/v1/accounts), with and without a filter and a search;
- pull mode catching up on new rows of a source table in another database of the cluster
  (`flask --app app usage pull`, a child process).

Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from bench.report import format_table, machine  # noqa: E402
from bench.scale_data import Sizes, generate, pg_url  # noqa: E402
from tests.support import postgres  # noqa: E402

QUICK = Sizes(accounts=20_000, events=600_000)
FULL = Sizes(accounts=1_000_000, events=30_000_000)
API_KEY = "bench-scale-api-key-0123456789abcdef"
# A bench cluster: nothing here must survive a crash, and bulk loads want room.
SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c shared_buffers=1GB -c maintenance_work_mem=1GB -c max_wal_size=16GB "
            "-c checkpoint_timeout=30min -c max_connections=100 -c work_mem=64MB")


def say(message: str) -> None:
    click.echo(message, err=True)


# --- the cluster ------------------------------------------------------------------------------

class Cluster(postgres.Cluster):
    """tests/support/postgres.Cluster in a folder of our choosing (kept with --data-dir), with
    settings for bulk loads."""

    def __init__(self, folder: Path | None) -> None:  # noqa: D107 - no initdb when it exists
        self.bin = postgres.find_bin_dir()
        self.as_root = os.geteuid() == 0
        self.kept = folder is not None
        self.root = folder if folder is not None else Path(tempfile.mkdtemp(prefix="scale-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        port_file = self.root / "port"
        if port_file.exists():
            self.port = int(port_file.read_text())
        else:
            self.port = postgres._free_port()
            port_file.write_text(str(self.port))
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-sync", "--locale=C")

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} {SETTINGS}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "120", "start")

    def finish(self) -> None:
        if self.kept:
            self.stop()
        else:
            self.destroy()


@dataclass
class Population:
    url: str
    now: datetime
    sizes: Sizes


def population(cluster: Cluster, sizes: Sizes, seed: int) -> Population:
    """The database `scale` with the population, made unless the kept cluster has it already
    (same sizes and seed: the marker file says)."""
    from app import load_catalog
    from storage.db import make_engine
    from storage.migrate import upgrade

    marker = cluster.root / "population.json"
    url = postgres.create_database.__globals__["make_url"](cluster.admin_url).set(
        database="scale").render_as_string(hide_password=False)
    wanted = {"accounts": sizes.accounts, "events": sizes.events, "seed": seed}
    if marker.exists():
        saved = json.loads(marker.read_text())
        if {k: saved.get(k) for k in wanted} == wanted:
            say(f"population: kept from {saved['now']} ({sizes.accounts:,} accounts, "
                f"{sizes.events:,} events)")
            return Population(url, datetime.fromisoformat(saved["now"]), sizes)
    marker.unlink(missing_ok=True)
    postgres.create_database(cluster.admin_url, "scale")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    say(f"population: {sizes.accounts:,} accounts, {sizes.events:,} events over 90 days")
    started = time.monotonic()
    generate(url, load_catalog(None), sizes, now, seed=seed, say=say)
    took = time.monotonic() - started
    say(f"population: made in {took:.0f} s")
    marker.write_text(json.dumps({**wanted, "now": now.isoformat(), "seconds": round(took)}))
    return Population(url, now, sizes)


# --- the run ----------------------------------------------------------------------------------

@click.command()
@click.option("--accounts", type=click.IntRange(min=100), default=FULL.accounts,
              show_default=True)
@click.option("--events", type=click.IntRange(min=1_000), default=FULL.events,
              show_default=True)
@click.option("--quick", is_flag=True, help="20,000 accounts and 600,000 events (a smoke test)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="keep the cluster here (and reuse the population it holds)")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--generate-only", is_flag=True, help="make the population, measure nothing")
def main(accounts: int, events: int, quick: bool, data_dir: Path | None, seed: int,
         generate_only: bool) -> None:
    sizes = QUICK if quick else Sizes(accounts, events)
    cluster = Cluster(data_dir)
    cluster.start()
    try:
        pop = population(cluster, sizes, seed)
        if generate_only:
            return
    finally:
        cluster.finish()


if __name__ == "__main__":
    main()
