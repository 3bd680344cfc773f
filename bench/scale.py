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
import re
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from typing import Callable

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
            engine = make_engine(url)
            started = time.monotonic()
            upgrade(engine)  # a population made before a migration gets it (its indexes)
            engine.dispose()
            say(f"population: schema at head ({time.monotonic() - started:.0f} s)")
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


# --- measuring --------------------------------------------------------------------------------

# The catalog change the re-evaluation is timed on: Starter -> Growth at 4,000 messages instead
# of 4,500 (accounts between the two cross) and Growth -> Scale at 13 seats instead of 11
# (accounts with 11 or 12 seats are re-armed).
CHANGE = (("at = 4500", "at = 4000"), ("at = 11\n", "at = 13\n"))


@dataclass
class Figure:
    name: str
    aim: str
    measured: str
    met: bool | None  # None: no aim, a figure to report


class Figures(list[Figure]):
    """The figures, each said on stderr as it is measured (a long run stopped early keeps
    what it measured)."""

    def append(self, figure: Figure) -> None:
        super().append(figure)
        met = "" if figure.met is None else (" (met)" if figure.met else " (NOT met)")
        say(f"  = {figure.name}: {figure.measured}{met}")


def working_copy(cluster: Cluster, pop: Population) -> str:
    """A fresh copy of the population (CREATE DATABASE ... TEMPLATE): the measurements write
    (signals, threads, pulled events), and a kept population must measure the same next time."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(cluster.admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "scale_run" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "scale_run" TEMPLATE "scale" STRATEGY file_copy'))
    engine.dispose()
    return make_url(pop.url).set(database="scale_run").render_as_string(hide_password=False)


def changed_catalog(folder: Path) -> Path:
    from web.catalog_file import DEFAULT_CATALOG

    text = DEFAULT_CATALOG.read_text()
    for old, new in CHANGE:
        if text.count(old) != 1:
            raise click.ClickException(f"the shipped catalog has {text.count(old)} {old!r}")
        text = text.replace(old, new)
    path = folder / "catalog-changed.toml"
    path.write_text(text)
    return path


@dataclass
class Child:
    seconds: float
    max_rss_mb: float
    stdout: str
    stderr: str


# Starts `flask` from a small interpreter and reports its peak RSS. A child forked straight from
# this process would count this process's memory (the metrics' facts, numpy's arrays) in its
# own ru_maxrss: Linux keeps the larger of the old and new image's high-water mark across exec.
LAUNCHER = """import os, sys
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "flask", "--app", "app",
                                      *sys.argv[1:]], dict(os.environ))
_, status, usage = os.wait4(pid, 0)
with open(os.environ["SCALE_RSS_FILE"], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def flask_command(args: list[str], env: dict[str, str], folder: Path) -> Child:
    """`flask --app app <args>` in a child process: its wall time and peak RSS (wait4's rusage
    of that process alone, started by LAUNCHER)."""
    out, err, rss = folder / "child.out", folder / "child.err", folder / "child.rss"
    with open(out, "w") as o, open(err, "w") as e:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=ROOT,
                              env={**env, "SCALE_RSS_FILE": str(rss)}, stdout=o, stderr=e)
        seconds = time.monotonic() - started
    if done.returncode != 0:
        raise click.ClickException(f"flask {' '.join(args)} failed ({done.returncode}): "
                                   f"{err.read_text()[-3000:]}")
    return Child(seconds, int(rss.read_text()) / 1024, out.read_text(), err.read_text())


def app_env(url: str, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPGRADE_CHAT_")}
    env.update({"UPGRADE_CHAT_DATABASE_URL": url, "UPGRADE_CHAT_API_KEY": API_KEY,
                "UPGRADE_CHAT_AUTO_MIGRATE": "false",
                "UPGRADE_CHAT_INSTANCE_PATH": str(folder / "instance"),
                "PYTHONPATH": str(ROOT)})
    env.update({f"UPGRADE_CHAT_{k}": v for k, v in extra.items()})
    return env


def measure_reevaluation(url: str, folder: Path, figures: list[Figure], verify: bool,
                         twice: bool) -> None:
    catalog = changed_catalog(folder)

    def reevaluate():
        return flask_command(["thresholds", "reevaluate"],
                             app_env(url, folder, CATALOG_PATH=str(catalog)), folder)

    say("re-evaluation after the catalog change ...")
    first = reevaluate()
    summary = first.stdout.strip().splitlines()
    say("  " + "\n  ".join(summary))
    figures.append(Figure("re-evaluation after a catalog change: time", "< 60 s",
                          f"{first.seconds:.1f} s", first.seconds < 60))
    figures.append(Figure("re-evaluation after a catalog change: peak RSS", "< 500 MB",
                          f"{first.max_rss_mb:.0f} MB", first.max_rss_mb < 500))
    figures.append(Figure("  what it did", "", summary[0] if summary else "?", None))
    found = re.search(r"([\d,]+) thresholds now met.*; ([\d,]+) crossings", summary[0] if summary else "")
    if found is None:
        raise click.ClickException(f"unexpected output of thresholds reevaluate: {summary}")
    met, crossed = (int(x.replace(",", "")) for x in found.groups())
    figures.append(Figure("re-evaluation: a signal for every threshold now met", f"{met:,}",
                          f"{crossed:,}", crossed == met))
    if not twice:
        if verify:
            verify_reevaluation(url, catalog, figures)
        return
    say("re-evaluation again (nothing to change) ...")
    second = reevaluate()
    again = second.stdout.strip().splitlines()
    say("  " + "\n  ".join(again))
    unchanged = bool(again) and " 0 changed" in again[0]
    figures.append(Figure("re-evaluation run again: time", "< 60 s", f"{second.seconds:.1f} s",
                          second.seconds < 60))
    figures.append(Figure("re-evaluation run again changes nothing", "0 changed",
                          again[0].split(";")[1].strip().split(":")[0] if again else "?",
                          unchanged))
    if verify:
        say("checking every account's state against the changed catalog ...")
        verify_reevaluation(url, catalog, figures)


def verify_reevaluation(url: str, catalog_path: Path, figures: list[Figure]) -> None:
    """Every account's threshold state, as the re-evaluation left it, against the keys the
    changed catalog's thresholds and down-tier rule are met for now (the core's functions on the
    storage's matrices); and every key added by it has its signal."""
    from sqlalchemy import text

    from core.thresholds import down_key, down_tier_fit, met_thresholds
    from storage.db import make_engine
    from storage.repositories import SqlUsageRepository
    from storage.uow import SqlUnitOfWork
    from web.catalog_file import load_catalog

    catalog = load_catalog(catalog_path)
    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    wrong = accounts = 0
    after = 0
    while True:
        uow = SqlUnitOfWork(engine, read_only=True)
        with uow:
            page = uow.accounts.usage_terms_after(after, 2_000)
            ids = [t.id for _, t in page]
            states = uow.thresholds.get_many(ids)
            matrices = SqlUsageRepository(uow.session).matrices(ids, now)
        if not page:
            break
        for _, t in page:
            plan = catalog.plan(t.plan)
            expected = {th.key for th, _, _ in met_thresholds(catalog, plan, matrices[t.id])}
            lower = down_tier_fit(catalog, plan, matrices[t.id], t.plan_since, now)
            if lower is not None:
                expected.add(down_key(plan, lower))
            wrong += expected != set(states[t.id])
        accounts += len(page)
        after = page[-1][1].id
    engine.dispose()
    figures.append(Figure("re-evaluation: accounts whose state is not what the catalog says",
                          "0", f"{wrong:,} of {accounts:,}", wrong == 0))


def _timed(get, path: str, runs: int) -> tuple[float, float]:
    """(first, median of the next `runs`) in ms of GET `path`, each checked for a 200."""
    times: list[float] = []
    for _ in range(runs + 1):
        if len(times) >= 2 and sum(times) > 30_000:
            break  # a slow read: a few timings say enough
        started = time.perf_counter()
        r = get(path)
        times.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise click.ClickException(f"GET {path}: {r.status_code} {r.get_data(as_text=True)[:500]}")
    return times[0], median(times[1:])


LISTINGS = (("", "no filter"), ("?plan=growth", "plan=growth"),
            ("?state=offered", "state=offered"), ("?q=acct-00123", "search q=acct-00123"),
            ("?q=account%204242", "search q=account 4242"))


def measure_reads(url: str, folder: Path, figures: list[Figure], runs: int) -> None:
    from app import create_app

    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "AUTO_MIGRATE": False,
                      "INSTANCE_PATH": str(folder / "instance")})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def get(path: str):
        return client.get(path, headers=headers)

    say("metrics for 90 days ...")
    cold, warm = _timed(get, "/api/v1/metrics", runs)
    body = get("/api/v1/metrics").get_json()
    opportunities = body["opportunities"]
    figures.append(Figure("GET /api/v1/metrics (last 90 days)", "< 2 s",
                          f"{warm / 1000:.2f} s (first {cold / 1000:.2f} s; "
                          f"{opportunities['treatment'] + opportunities['control']:,} "
                          f"opportunities)", warm < 2000))
    say("account list, first page ...")
    for query, label in LISTINGS:
        cold, warm = _timed(get, f"/api/v1/accounts{query}", runs)
        figures.append(Figure(f"GET /api/v1/accounts, first page, {label}", "< 100 ms",
                              f"{warm:.0f} ms (first {cold:.0f} ms)", warm < 100))
    app.extensions["upgrade_chat"].engine.dispose()


class Capture:
    """The statements an engine runs while `with` is open: text, parameters, seconds."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.engine, self.on, self.seen = engine, False, []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, params, context, executemany) -> None:
        conn.info["scale_started"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, executemany) -> None:
        if self.on and not executemany and statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, params,
                              time.perf_counter() - conn.info.pop("scale_started")))

    def __enter__(self) -> Capture:
        self.on, self.seen = True, []
        return self

    def __exit__(self, *exc: object) -> None:
        self.on = False

    def slowest(self, n: int) -> list[tuple[str, object, float]]:
        return sorted(self.seen, key=lambda s: -s[2])[:n]


def explain(url: str, folder: Path, out: Path) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest statements of each hot read (the account list
    with and without filters, the metrics, one page of the re-evaluation's walk), as the code
    runs them (captured from the engine, parameters included), into `out`."""
    from functools import partial

    from app import create_app
    from core.reevaluation import reevaluate_thresholds

    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "AUTO_MIGRATE": False,
                      "INSTANCE_PATH": str(folder / "instance")})
    rt = app.extensions["upgrade_chat"]
    capture = Capture(rt.engine)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    cases: list[tuple[str, Callable[[], object], int]] = [
        *[(f"GET /api/v1/accounts{q}", partial(client.get, f"/api/v1/accounts{q}",
                                              headers=headers), 2) for q, _ in LISTINGS],
        ("GET /api/v1/metrics", partial(client.get, "/api/v1/metrics", headers=headers), 3),
        ("re-evaluation, one page of 1,000 accounts", partial(
            reevaluate_thresholds, rt.uow, partial(rt.uow, read_only=True), rt.catalog,
            rt.now(), None, batch=1_000, progress=_stop_after_one_page), 8),
    ]
    lines = [f"EXPLAIN (ANALYZE, BUFFERS) of the slowest statements, {machine()}", ""]
    for label, run, n in cases:
        say(f"explain: {label}")
        try:
            run()  # warm
        except _OnePage:
            pass
        with capture:
            try:
                run()
            except _OnePage:
                pass
        raw = rt.engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, params, seconds in capture.slowest(n):
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                lines += [f"## {label}: {seconds * 1000:.1f} ms in the code", "",
                          statement.strip(), "", plan, ""]
            raw.rollback()
        finally:
            raw.close()
    out.write_text("\n".join(lines))
    rt.engine.dispose()


class _OnePage(Exception):
    pass


def _stop_after_one_page(n: int) -> None:
    raise _OnePage


def make_source(cluster: Cluster, pop: Population, rows: int) -> str:
    """A source database on the same cluster: `usage_log` with `rows` new rows (ids 1..rows)
    over the last hour, for random accounts (mostly messages, some seats)."""
    from sqlalchemy import create_engine, text

    url = postgres.create_database(cluster.admin_url, "scale_source")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("""
            CREATE TABLE usage_log (id bigint PRIMARY KEY, account text NOT NULL,
                                    metric text NOT NULL, quantity bigint NOT NULL,
                                    at timestamptz NOT NULL)"""))
        conn.execute(text("""
            INSERT INTO usage_log
            SELECT i, 'acct-' || lpad((1 + (i::bigint * 7919) % :accounts)::text, 7, '0'),
                   CASE WHEN i % 20 = 0 THEN 'seats' ELSE 'messages' END,
                   CASE WHEN i % 20 = 0 THEN 1 + i % 9 ELSE 1 + i % 50 END,
                   :now - make_interval(secs => 3600.0 * (:rows - i) / :rows + 60)
            FROM generate_series(1, :rows) i"""),
            {"accounts": pop.sizes.accounts, "rows": rows, "now": datetime.now(timezone.utc)})
        conn.execute(text("ANALYZE usage_log"))
    engine.dispose()
    return url


def measure_pull(cluster: Cluster, pop: Population, url: str, folder: Path,
                 figures: list[Figure], rows: int) -> None:
    say(f"pull mode: a source of {rows:,} new rows ...")
    source = make_source(cluster, pop, rows)
    sources = folder / "usage_sources.toml"
    sources.write_text(f"""[sources.bench]
url = "{source}"
query = "SELECT id, account, metric, quantity, at FROM usage_log WHERE id > :cursor ORDER BY id"
cursor = "id"
every = "5m"
""")
    child = flask_command(["usage", "pull"], app_env(url, folder, USAGE_SOURCES=str(sources)),
                         folder)
    say("  " + child.stdout.strip())
    if f"{rows} ingested" not in child.stdout:
        raise click.ClickException(f"the pull did not ingest every row: {child.stdout}")
    figures.append(Figure(f"pull mode catching up {rows:,} rows: time", "(report)",
                          f"{child.seconds:.0f} s", None))
    figures.append(Figure(f"pull mode catching up {rows:,} rows: rate", "(report)",
                          f"{rows / child.seconds:,.0f} rows/s (peak RSS "
                          f"{child.max_rss_mb:.0f} MB)", None))


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


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
@click.option("--pull-rows", type=click.IntRange(min=0), default=None,
              help="rows the pull catches up on [default: 1,000,000; --quick: 20,000]; 0: skip")
@click.option("--runs", type=click.IntRange(min=1), default=7, show_default=True,
              help="timed requests per read (after a first one)")
@click.option("--generate-only", is_flag=True, help="make the population, measure nothing")
@click.option("--twice/--once", default=True, show_default=True,
              help="run the re-evaluation a second time, to see it change nothing")
@click.option("--verify/--no-verify", default=None,
              help="check every account's state after the re-evaluation [default: with --quick]")
@click.option("--explain", "explain_to", type=click.Path(dir_okay=False, path_type=Path),
              help="write EXPLAIN (ANALYZE, BUFFERS) of the hot reads' slowest statements here")
@click.option("--only", type=click.Choice(["reevaluate", "reads", "pull"]), multiple=True,
              help="measure only these (repeatable)")
def main(accounts: int, events: int, quick: bool, data_dir: Path | None, seed: int,
         pull_rows: int | None, runs: int, generate_only: bool, twice: bool, verify: bool | None,
         explain_to: Path | None, only: tuple[str, ...]) -> None:
    sizes = QUICK if quick else Sizes(accounts, events)
    if pull_rows is None:
        pull_rows = 20_000 if quick else 1_000_000
    wanted = set(only or ("reevaluate", "reads", "pull"))
    cluster = Cluster(data_dir)
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        pop = population(cluster, sizes, seed)
        if generate_only:
            return
        version = postgres.server_version(pop.url)
        say(f"working copy of the population ({load()}) ...")
        url = working_copy(cluster, pop)
        figures = Figures()
        if explain_to is not None:
            explain(url, work, explain_to)
        if "reevaluate" in wanted:
            measure_reevaluation(url, work, figures, quick if verify is None else verify,
                                 twice)
        if "reads" in wanted:
            measure_reads(url, work, figures, runs)
        if "pull" in wanted and pull_rows:
            measure_pull(cluster, pop, url, work, figures, pull_rows)
        click.echo(f"bench/scale.py: {sizes.accounts:,} accounts, {sizes.events:,} usage events "
                   f"over 90 days (population made {pop.now:%Y-%m-%d %H:%M} UTC)")
        click.echo(machine(version))
        click.echo(f"{load()} at the end; PostgreSQL cluster with fsync, synchronous_commit and "
                   f"full_page_writes off (a bench), shared_buffers 1GB")
        click.echo("")
        click.echo(format_table(("figure", "aim", "measured", "met?"), [
            (f.name, f.aim, f.measured, "" if f.met is None else ("yes" if f.met else "NO"))
            for f in figures]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        cluster.finish()


if __name__ == "__main__":
    main()
