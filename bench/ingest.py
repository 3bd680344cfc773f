"""Benchmark usage-event ingestion (record_usage, with threshold evaluation) against a raw bulk insert.

Run from the repository root:

    .venv/bin/python bench/ingest.py                      # SQLite and PostgreSQL, defaults
    .venv/bin/python bench/ingest.py --events 20000 --batch 100 --only sqlite

Each database kind gets two fresh migrated databases with the same accounts: one receives the
events through `core.services.record_usage`, the other receives the very same rows through a plain
SQLAlchemy Core `insert(UsageEventRow)` executemany, one transaction per batch. The two take
turns batch by batch (the order alternating), so the machine's slow spells fall on both and the
ratio is stable even when the absolute rates are not; "batch median" is the median over batches
of the same ratio for one batch (a stall of the machine during one batch moves the totals' ratio,
not the median). PostgreSQL runs on
a throwaway cluster (tests/support/postgres.py). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from sqlalchemy import Engine, func, insert, select  # noqa: E402

from app import load_catalog  # noqa: E402
from core.accounts import Contact  # noqa: E402
from core.catalog import Catalog  # noqa: E402
from core.services import AccountInput, record_usage, upsert_account  # noqa: E402
from core.usage import WINDOW, UsageEvent  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import AccountRow, SignalRow, UsageEventRow  # noqa: E402
from storage.uow import SqlUnitOfWork  # noqa: E402
from tests.support import postgres  # noqa: E402
from bench.report import format_table  # noqa: E402

log = logging.getLogger("bench.ingest")

# Share of events per metric (a `feature:workflows` draw on an account that does not use
# workflows becomes a `messages` event, so the real mix is a little richer in messages).
METRIC_MIX = (("messages", 0.85), ("seats", 0.05), ("integrations", 0.04),
              ("feature:workflows", 0.06))


# --- workload ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    now: datetime
    accounts: list[AccountInput]
    events: list[UsageEvent]  # in time order, the order they are ingested in


def build_workload(n_accounts: int, n_events: int, seed: int, now: datetime) -> Workload:
    """Accounts on Starter with skewed activity over the last 30 days, tuned so that a good share
    of them cross Starter's thresholds (4,500 messages, 4 seats, 2 integrations, 3 workflow hits)
    at some point inside the window, whatever the number of events."""
    rng = random.Random(seed)
    accounts = [
        AccountInput(
            external_id=f"acct-{i:05d}", name=f"Bench Account {i}", plan="starter",
            vertical="generic", timezone="UTC", billing_day=1,
            contacts=(Contact(external_id=f"acct-{i:05d}-billing", name=f"Billing {i}",
                              role="billing", web_user_id=f"user-{i:05d}",
                              email=f"billing{i}@example.com"),),
            plan_since=now - timedelta(days=90))
        for i in range(n_accounts)]

    # Per-account profile: activity share (long-tailed), 30-day message total, seat and
    # integration trajectories, whether the account uses workflows (a Growth feature).
    weights = [rng.lognormvariate(0, 0.8) for _ in accounts]
    message_target = [rng.randint(800, 9000) for _ in accounts]
    seats_from = [rng.randint(1, 3) for _ in accounts]
    seats_to = [s + rng.choice((0, 0, 1, 2, 3)) for s in seats_from]
    integ_from = [rng.randint(0, 1) for _ in accounts]
    integ_to = [i + rng.choice((0, 0, 1, 2)) for i in integ_from]
    uses_workflows = [rng.random() < 0.3 for _ in accounts]

    cum_weights = list(accumulate(weights))
    metrics = [m for m, _ in METRIC_MIX]
    metric_cum = list(accumulate(w for _, w in METRIC_MIX))
    span = (WINDOW - timedelta(minutes=1)).total_seconds()

    drafts = []  # (at, account index, metric)
    for _ in range(n_events):
        a = bisect_left(cum_weights, rng.random() * cum_weights[-1])
        metric = metrics[min(bisect_left(metric_cum, rng.random() * metric_cum[-1]), len(metrics) - 1)]
        if metric == "feature:workflows" and not uses_workflows[a]:
            metric = "messages"
        at = (now - timedelta(seconds=rng.random() * span)).replace(microsecond=0)
        drafts.append((at, a, metric))
    drafts.sort(key=lambda d: d[0])

    message_events = [0] * n_accounts
    for _, a, metric in drafts:
        if metric == "messages":
            message_events[a] += 1

    start = now - WINDOW
    events = []
    seen: set[str] = set()
    for at, a, metric in drafts:
        progress = (at - start).total_seconds() / WINDOW.total_seconds()
        if metric == "messages":
            mean = message_target[a] / message_events[a]
            quantity = max(1, round(mean * rng.uniform(0.5, 1.5)))
        elif metric == "seats":
            quantity = round(seats_from[a] + (seats_to[a] - seats_from[a]) * progress)
        elif metric == "integrations":
            quantity = round(integ_from[a] + (integ_to[a] - integ_from[a]) * progress)
        else:
            quantity = 1
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        assert event_id not in seen
        seen.add(event_id)
        events.append(UsageEvent(id=event_id, account=accounts[a].external_id, metric=metric,
                                 quantity=quantity, at=at))
    return Workload(now=now, accounts=accounts, events=events)


def batches(events: list[UsageEvent], size: int) -> list[list[UsageEvent]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


# --- the two contenders -----------------------------------------------------------------------

def prepare(engine: Engine, catalog: Catalog, workload: Workload) -> dict[str, int]:
    """Migrate the fresh database and create the accounts; their ids by external id."""
    upgrade(engine)
    uow = SqlUnitOfWork(engine)
    for data in workload.accounts:
        upsert_account(uow, catalog, data, workload.now)
    with engine.connect() as conn:
        return dict(conn.execute(select(AccountRow.external_id, AccountRow.id)).all())


def progress(label: str, length: int):
    return click.progressbar(length=length, label=label.ljust(28), file=sys.stderr,
                             show_pos=True, show_eta=False, width=30)


def raw_rows(account_ids: dict[str, int], batch: list[UsageEvent], now: datetime) -> list[dict]:
    return [{"event_id": e.id, "account_id": account_ids[e.account], "metric": e.metric,
             "quantity": e.quantity, "at": e.at, "received_at": now} for e in batch]


def count(engine: Engine, column) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count(column))).scalar_one()


# --- one database kind ------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    database: str
    events: int
    raw_seconds: float
    ingest_seconds: float
    signals: int
    pair_median: float  # the median over batches of raw time / ingestion time


    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_seconds

    @property
    def ingest_rate(self) -> float:
        return self.events / self.ingest_seconds


def measure(name: str, make_url: Callable[[str], str], catalog: Catalog, workload: Workload,
            size: int) -> Outcome:
    """Raw insert on one fresh database, ingestion on another, batch after batch in turn (the
    order alternating), so a slow spell of the machine falls on both and the ratio holds; both
    databases are checked afterwards."""
    n = len(workload.events)
    raw_engine = make_engine(make_url("bench_raw"))
    ingest_engine = make_engine(make_url("bench_ingest"))
    try:
        ids = prepare(raw_engine, catalog, workload)
        prepare(ingest_engine, catalog, workload)
        uow = SqlUnitOfWork(ingest_engine)
        stmt = insert(UsageEventRow)
        now = workload.now
        seconds = {"raw": 0.0, "ingest": 0.0}
        last = {"raw": 0.0, "ingest": 0.0}
        pairs: list[float] = []
        crossings = 0

        def raw(batch: list[UsageEvent]) -> None:
            rows = raw_rows(ids, batch, now)
            started = time.perf_counter()
            with raw_engine.begin() as conn:
                conn.execute(stmt, rows)
            last["raw"] = time.perf_counter() - started
            seconds["raw"] += last["raw"]

        def ingest(batch: list[UsageEvent]) -> None:
            nonlocal crossings
            started = time.perf_counter()
            crossings += len(record_usage(uow, catalog, batch, now).crossings)
            last["ingest"] = time.perf_counter() - started
            seconds["ingest"] += last["ingest"]

        with progress(f"{name}: raw + record_usage", n) as bar:
            for i, batch in enumerate(batches(workload.events, size)):
                for step in ((raw, ingest) if i % 2 == 0 else (ingest, raw)):
                    step(batch)
                pairs.append(last["raw"] / last["ingest"])
                bar.update(len(batch))

        stored = count(raw_engine, UsageEventRow.seq)
        if stored != n:
            raise RuntimeError(f"{name} raw: {stored} rows stored, expected {n}")
        stored = count(ingest_engine, UsageEventRow.seq)
        signals = count(ingest_engine, SignalRow.id)
        if stored != n:
            raise RuntimeError(f"{name} ingest: {stored} rows stored, expected {n}")
        if signals != crossings:
            raise RuntimeError(f"{name} ingest: {signals} signals stored, {crossings} reported")
    finally:
        raw_engine.dispose()
        ingest_engine.dispose()
    return Outcome(name, n, seconds["raw"], seconds["ingest"], crossings, statistics.median(pairs))


def measure_sqlite(catalog: Catalog, workload: Workload, size: int) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="upgrade-chat-bench-"))
    try:
        return measure("sqlite", lambda name: f"sqlite:///{folder / name}.sqlite3",
                       catalog, workload, size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_postgresql(catalog: Catalog, workload: Workload, size: int) -> Outcome:
    click.echo("starting a throwaway PostgreSQL cluster ...", err=True)
    admin_url, cluster = postgres.start_server()
    try:
        return measure("postgresql", lambda name: postgres.create_database(admin_url, name),
                       catalog, workload, size)
    finally:
        if cluster is not None:
            cluster.destroy()


# --- report -----------------------------------------------------------------------------------

def table(outcomes: list[Outcome]) -> str:
    head = ("database", "raw events/s", "ingest events/s", "ingest/raw", "batch median",
            "signals")
    rows = [(o.database, f"{o.raw_rate:,.0f}", f"{o.ingest_rate:,.0f}",
             f"{o.ingest_rate / o.raw_rate:.3f}", f"{o.pair_median:.3f}", f"{o.signals:,}")
            for o in outcomes]
    return format_table(head, rows)


@click.command(help=__doc__.splitlines()[0])
@click.option("--events", default=50_000, show_default=True, type=click.IntRange(1),
              help="Usage events to ingest.")
@click.option("--accounts", default=200, show_default=True, type=click.IntRange(1),
              help="Accounts the events are spread over.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1),
              help="Events per record_usage call (and per raw insert transaction).")
@click.option("--only", type=click.Choice(["sqlite", "postgresql"]), default=None,
              help="Run on one database only.")
@click.option("--seed", default=1, show_default=True, help="Seed of the workload generator.")
def main(events: int, accounts: int, batch: int, only: str | None, seed: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    catalog = load_catalog(None)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    workload = build_workload(accounts, events, seed, now)
    mix: dict[str, int] = {}
    for e in workload.events:
        mix[e.metric] = mix.get(e.metric, 0) + 1
    click.echo(f"workload: {events:,} events over {accounts} accounts (last 30 days), "
               f"batch {batch}; " + ", ".join(f"{m} {c:,}" for m, c in sorted(mix.items())),
               err=True)

    outcomes = []
    if only in (None, "sqlite"):
        outcomes.append(measure_sqlite(catalog, workload, batch))
    if only in (None, "postgresql"):
        try:
            outcomes.append(measure_postgresql(catalog, workload, batch))
        except postgres.Unavailable as exc:
            if only == "postgresql":
                raise click.ClickException(f"PostgreSQL unavailable: {exc}") from None
            click.echo(f"skipping PostgreSQL: {exc}", err=True)

    print()
    print(f"{events:,} events, {accounts} accounts, batches of {batch}")
    print(table(outcomes))


if __name__ == "__main__":
    main()
