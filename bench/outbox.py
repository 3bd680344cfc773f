"""Benchmark the outbox: how fast due work is claimed, sent and recorded (no network).

Run from the repository root:

    .venv/bin/python bench/outbox.py                  # SQLite and PostgreSQL, defaults
    .venv/bin/python bench/outbox.py --accounts 200 --rounds 5 --only sqlite

Each round gets a fresh migrated database with N accounts, each with a billing contact on SMS and
an `open` thread, and queues per account an SMS opening (sending it moves the thread to
`offered`: the account and thread locks of the real path), an SMS reply and one job of a
"bench" kind (a no-op sender). The sandbox message sender stores instead of sending, so what is
measured is the dispatcher itself: the claim, the consent check, the outcome transactions. Due
work is drained as the scheduler drains it, batch after batch of 50; the figure is items per
second of that drain. PostgreSQL runs on a throwaway cluster (tests/support/postgres.py).
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from sqlalchemy import Engine, func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.report import format_table  # noqa: E402
from channels.twilio_outbound import SandboxSender  # noqa: E402
from channels import registered  # noqa: E402
from channels.twilio_messaging import SMS  # noqa: E402
from core.delivery import MESSAGE_KIND, RETRY, MessageJobs, queue_message  # noqa: E402
from core.guardrails import GuardrailPolicy, text_allowed_at  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import AccountRow, ContactRow, OutboxRow, ThreadRow  # noqa: E402
from storage.outbox import OutboxDispatcher  # noqa: E402
from storage.uow import SqlUnitOfWork  # noqa: E402
from tests.support import postgres  # noqa: E402

BATCH = 50
KIND = "bench"


@dataclass(frozen=True)
class Round:
    messages: int
    jobs: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.messages + self.jobs) / self.seconds


# Numbers in zones spread over the day: a run at any hour texts someone awake, since quiet hours
# hold for an opening at its send too (core.delivery.verdict).
AWAKE = (("+1312555{:04d}", "America/Chicago"), ("+44207946{:04d}", "Europe/London"),
         ("+8131234{:04d}", "Asia/Tokyo"), ("+6129123{:04d}", "Australia/Sydney"))


def awake_numbers(now: datetime, hours: int = 2) -> str:
    """The format of numbers (for `.format(i)`) in a zone where it is day from `now` for
    `hours` more."""
    policy = GuardrailPolicy()
    for pattern, zone in AWAKE:
        if all(text_allowed_at(t, None, zone, policy) == t
               for t in (now, now + timedelta(hours=hours))):
            return pattern
    return AWAKE[0][0]


def seed(engine: Engine, accounts: int, now: datetime, *, first: int = 0,
         plain_jobs: bool = True) -> None:
    """N accounts, each with a contact on SMS, an open thread, a queued opening and reply (each
    with its outbox job, as the use cases queue them), and (`plain_jobs`) a job of the bench
    kind. Account i (from `first`) is acct-<i>, its contact's phone <i> in a zone where it is
    day (`awake_numbers`), and its messages say "Bench opening <i>" and "Bench reply <i>"."""
    threads = []
    numbers = awake_numbers(now)
    with Session(engine) as s, s.begin():
        for i in range(first, first + accounts):
            acct = AccountRow(external_id=f"acct-{i:05d}", name=f"Bench {i}", plan="starter",
                              vertical="generic", timezone="UTC", billing_day=1,
                              plan_since=now - timedelta(days=90), open_escalations=0,
                              created_at=now, updated_at=now)
            s.add(acct)
            s.flush()
            person = ContactRow(account_id=acct.id, external_id=f"acct-{i:05d}-billing",
                                position=0, role="billing", phone=numbers.format(i))
            s.add(person)
            s.flush()
            thread = ThreadRow(account_id=acct.id, contact_id=person.id, current_plan="starter",
                               target_plan="growth", direction="up", state="open",
                               last_channel=SMS.name, opened_at=now, updated_at=now)
            s.add(thread)
            s.flush()
            threads.append((thread.id, person.id))
    with SqlUnitOfWork(engine) as uow:
        for i, (thread_id, contact_id) in enumerate(threads, start=first):
            for kind in ("opening", "reply"):
                queue_message(uow, thread_id=thread_id, contact_id=contact_id, channel=SMS,
                              kind=kind, body=f"Bench {kind} {i}", now=now)
            if plain_jobs:
                uow.jobs.enqueue(KIND, f"bench:{i}", {"n": i}, now)
        uow.commit()


def drain(engine: Engine, now: datetime) -> tuple[int, int]:
    """Send everything due, batch after batch, as `jobs run` does; (messages, jobs) sent."""
    outbox = OutboxDispatcher(engine, {MESSAGE_KIND: MessageJobs(SandboxSender(), registered()),
                                       KIND: lambda job: None}, lambda: now,
                              backoffs={MESSAGE_KIND: RETRY})
    sent = 0
    while stats := outbox.dispatch_due(limit=BATCH).sent:
        sent += stats
    with engine.connect() as conn:
        jobs = conn.scalar(select(func.count()).select_from(OutboxRow)
                           .where(OutboxRow.kind == KIND, OutboxRow.status == "sent"))
    return sent - jobs, jobs


def measure(url: str, accounts: int, now: datetime) -> Round:
    engine = make_engine(url)
    try:
        upgrade(engine)
        seed(engine, accounts, now)
        started = time.perf_counter()
        messages, jobs = drain(engine, now)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            offered = conn.scalar(select(func.count()).select_from(ThreadRow)
                                  .where(ThreadRow.state == "offered"))
        if (messages, jobs, offered) != (2 * accounts, accounts, accounts):
            raise RuntimeError(f"sent {messages} messages and {jobs} jobs, {offered} threads "
                               f"offered; expected {2 * accounts}, {accounts}, {accounts}")
    finally:
        engine.dispose()
    return Round(messages, jobs, seconds)


def rounds(name: str, make_url: Callable[[int], str], accounts: int, n: int,
           now: datetime) -> list[Round]:
    out = []
    for i in range(n):
        click.echo(f"{name}: round {i + 1} of {n} ...", err=True)
        out.append(measure(make_url(i), accounts, now))
    return out


def table(results: dict[str, list[Round]]) -> str:
    head = ("database", "messages", "jobs", "items/s (median)", "min", "max")
    rows = []
    for name, rs in results.items():
        rates = [r.rate for r in rs]
        rows.append((name, f"{rs[0].messages:,}", f"{rs[0].jobs:,}",
                     f"{statistics.median(rates):,.0f}", f"{min(rates):,.0f}",
                     f"{max(rates):,.0f}"))
    return format_table(head, rows)


@click.command(help=__doc__.splitlines()[0])
@click.option("--accounts", default=500, show_default=True, type=click.IntRange(1),
              help="Accounts; each brings 2 queued SMS and 1 job.")
@click.option("--rounds", "n", default=3, show_default=True, type=click.IntRange(1),
              help="Fresh databases per kind; the median is reported.")
@click.option("--only", type=click.Choice(["sqlite", "postgresql"]), default=None)
def main(accounts: int, n: int, only: str | None) -> None:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    now = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
    results: dict[str, list[Round]] = {}
    if only in (None, "sqlite"):
        folder = Path(tempfile.mkdtemp(prefix="upgrade-chat-bench-"))
        try:
            results["sqlite"] = rounds("sqlite", lambda i: f"sqlite:///{folder}/r{i}.sqlite3",
                                       accounts, n, now)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if only in (None, "postgresql"):
        click.echo("starting a throwaway PostgreSQL cluster ...", err=True)
        admin_url, cluster = postgres.start_server()
        try:
            results["postgresql"] = rounds(
                "postgresql", lambda i: postgres.create_database(admin_url, f"bench_outbox_{i}"),
                accounts, n, now)
        finally:
            if cluster is not None:
                cluster.destroy()
    print()
    print(f"{accounts} accounts: {2 * accounts} SMS (sandbox sender) and {accounts} jobs a round, "
          f"drained in batches of {BATCH}")
    print(table(results))


if __name__ == "__main__":
    main()
