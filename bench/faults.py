"""Load and faults: what the service keeps, loses and repeats under overload and under faults.

Three runs, each printing the date and the machine with its table (README, "Load and faults"),
each exiting 1 when a message was lost, an upgrade was made twice, or a stated bound was broken:

    .venv/bin/python bench/faults.py load     # signed inbound SMS at twice the peak for 10 min;
                                              #   PostgreSQL restarted at 1/3, a worker killed at 2/3
    .venv/bin/python bench/faults.py outage   # Twilio answers 503/429 with Retry-After for 10 min
    .venv/bin/python bench/faults.py kill     # `jobs run` killed -9 at a random moment, 1,000 times
    .venv/bin/python bench/faults.py all --quick    # the three with tiny durations (the smoke test)

Every duration is an option (`--help` on each); the defaults are the published runs'. Needs the
`prod` extra (gunicorn) and, for `load` to measure the peak, Debian's wrk (or give `--peak`).
Each run starts a throwaway PostgreSQL cluster (tests/support/postgres.py) and the fakes it needs
(tests/support/fake_twilio.py, tests/support/receiver.py). Progress on stderr, tables on stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

from bench.report import format_table, machine  # noqa: E402
from bench.webhook import (API_KEY, PATH, Server, ServerConfig, Signer,  # noqa: E402
                           bench_target, free_port, message_sid, messages, new_tag, prime, say,
                           service_env, setup_accounts, smoke)
from tests.support import postgres  # noqa: E402

SMS_FROM = "+15005550006"  # Twilio's magic test number: the fakes' sending number
PUBLIC_BASE_URL = "https://chat.example.com"  # nothing calls it: no status callbacks here
FALLBACK_WORDS = "something went wrong on our side"  # channels.twilio_messaging._fallback_reply
ACKNOWLEDGED = ("reply", "spooled", "apology")


class Failed(Exception):
    """A run that could not be carried out (not a finding: a finding is a table row)."""


# --- what every run shares --------------------------------------------------------------------

@dataclass
class Database:
    """The PostgreSQL server a run uses: an admin URL and, for a throwaway one, its cluster."""

    admin_url: str
    cluster: postgres.Cluster | None

    @property
    def version(self) -> str:
        return postgres.server_version(self.admin_url)


@contextmanager
def database_server(ctx: click.Context) -> Iterator[Database]:
    """The server the caller handed over (`ctx.obj`: (admin URL, Cluster), as the test suite
    does with its session cluster), else a throwaway cluster for this run."""
    if ctx.obj:
        admin_url, cluster = ctx.obj
        yield Database(admin_url, cluster)
        return
    say("starting a throwaway PostgreSQL cluster ...")
    try:
        admin_url, cluster = postgres.start_server()
    except postgres.Unavailable as exc:
        raise click.ClickException(f"PostgreSQL unavailable: {exc}") from None
    try:
        yield Database(admin_url, cluster)
    finally:
        if cluster is not None:
            cluster.destroy()


@contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="upgrade-chat-bench-faults-"))
    try:
        yield work
    finally:
        if keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def fresh_database(db: Database, name: str) -> str:
    from storage.db import make_engine
    from storage.migrate import upgrade

    url = postgres.create_database(db.admin_url, name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def flask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", *args]


def report(title: str, pg_version: str, tables: list[str], notes: list[str],
           problems: list[str]) -> bool:
    """Print a run's header, machine, tables and notes; True when nothing went wrong."""
    print()
    print(title)
    print(machine(pg_version))
    for t in tables:
        print()
        print(t)
    if notes:
        print()
    for n in notes:
        print(n)
    for p in problems:
        print(f"PROBLEM: {p}")
    print("result: " + ("FAILED" if problems else "ok"))
    return not problems


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; infinity counts as larger than all."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def ms(seconds: float, timeout: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return f">{timeout:g} s"
    return f"{seconds * 1000:,.0f}"


def n(x: int) -> str:
    return f"{x:,}"


# --- 1. load with faults ----------------------------------------------------------------------

@dataclass
class Sent:
    """One request of the open-loop generator."""

    i: int
    due: float  # seconds after the start when it was due
    late: float  # seconds the generator sent it after `due`
    latency: float  # seconds from the send to the whole answer; inf: no answer
    outcome: str  # reply | spooled | apology | HTTP <status> | timeout | refused | closed | ...


@dataclass
class Fault:
    name: str
    at: float  # seconds after the start it began
    took: float = 0.0  # seconds the action itself took
    detail: str = ""


def classify(data: bytes) -> str:
    """What an answer was: the buyer's reply in TwiML, the spool's empty TwiML ("we got it": the
    message is on disk, its reply comes later from the outbox), the apology TwiML of a failure
    (channels.twilio_messaging: 200, but the message was not handled), or another status."""
    if not data:
        return "closed"  # the connection ended without an answer (a killed worker)
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return "garbled"
    if status != 200:
        return f"HTTP {status}"
    text_body = body.decode("utf-8", "replace")
    if "<Response" not in text_body:
        return "HTTP 200 without TwiML"
    if FALLBACK_WORDS in text_body:
        return "apology"
    return "reply" if "<Message" in text_body else "spooled"


class OpenLoop:
    """Signed Twilio webhooks at a fixed arrival rate, whatever the answers (open loop: a slow
    answer never delays the next request, as Twilio does not wait either). One connection per
    request (gunicorn's sync workers close it after each answer), Twilio's 15 s timeout, no
    retries (Twilio retries only a refused connection, and then only with its own MessageSid
    again: here a refused request counts as not acknowledged)."""

    def __init__(self, port: int, signer: Signer, msgs: list[tuple[str, str]], tag: str,
                 rate: float, timeout: float, max_open: int) -> None:
        self.port, self.signer, self.msgs, self.tag = port, signer, msgs, tag
        self.rate, self.timeout, self.max_open = rate, timeout, max_open
        self.results: list[Sent] = []
        self.open = 0
        self.most_open = 0

    def request(self, i: int) -> bytes:
        sender, body = self.msgs[i]
        signature, form = self.signer.sign(sender, body, message_sid(self.tag, i))
        return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature}\r\nUser-Agent: TwilioProxy/1.1\r\n"
                f"Accept: */*\r\nConnection: close\r\nContent-Length: {len(form)}\r\n\r\n"
                f"{form}").encode("ascii")

    async def one(self, i: int, due: float, start: float) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        writer = None
        latency = math.inf
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(self.request(i))
                data = await reader.read()  # to the end: the server closes after its answer
            outcome = classify(data)
            if outcome != "closed":
                latency = loop.time() - sent
        except TimeoutError:
            outcome = "timeout"
        except ConnectionRefusedError:
            outcome = "refused"
        except (ConnectionResetError, BrokenPipeError):
            outcome = "reset"
        except OSError as exc:
            outcome = f"error {exc.errno}"
        finally:
            self.open -= 1
            if writer is not None:
                writer.close()
        self.results.append(Sent(i, due, sent - start - due, latency, outcome))

    async def run(self, count: int, faults: list[tuple[float, str, Callable[[], str]]]
                  ) -> list[Fault]:
        """Send `count` requests at the rate; run each fault's action (in a thread) when its
        moment comes. Returns the faults as they happened."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks: set[asyncio.Task] = set()
        happened: list[Fault] = []

        async def fault(at: float, name: str, action: Callable[[], str]) -> None:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            began = loop.time()
            detail = await asyncio.to_thread(action)
            happened.append(Fault(name, began - start, loop.time() - began, detail))

        fault_tasks = [asyncio.create_task(fault(*f)) for f in faults]
        i = 0
        while i < count:
            now = loop.time()
            due_now = min(count, int((now - start) * self.rate) + 1)
            while i < due_now:
                due = i / self.rate
                if self.open >= self.max_open:
                    self.results.append(Sent(i, due, now - start - due, math.inf,
                                             "not sent (generator's connection limit)"))
                else:
                    task = asyncio.create_task(self.one(i, due, start))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.sleep(max(0.0, start + i / self.rate - loop.time()))
        say(f"load: all {count:,} sent; waiting for the last answers (up to {self.timeout:g} s)")
        await asyncio.gather(*tasks, *fault_tasks)
        return sorted(happened, key=lambda f: f.at)


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def kill_a_worker(server: Server, workers: int, rng: random.Random) -> str:
    """SIGKILL one of gunicorn's workers (its arbiter starts another); says which and when the
    replacement was up."""
    pids = server.worker_pids()
    if not pids:
        raise Failed("gunicorn has no workers to kill")
    victim = rng.choice(pids)
    began = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    while time.monotonic() - began < 60:
        now = server.worker_pids()
        if victim not in now and len(now) >= workers:
            return (f"worker {victim} killed -9; gunicorn had a new one after "
                    f"{time.monotonic() - began:.1f} s")
        time.sleep(0.05)
    return f"worker {victim} killed -9; no new worker within 60 s"


def restart_postgresql(cluster: postgres.Cluster, pause: float) -> str:
    began = time.monotonic()
    cluster.restart(pause)
    return (f"PostgreSQL restarted (pg_ctl stop -m fast; "
            + (f"{pause:g} s down; " if pause else "") + f"start): "
            f"{time.monotonic() - began:.1f} s")


def settle(url: str, tag: str, quiet: float = 3.0, limit: float = 120.0) -> None:
    """Wait until the run's inbound messages stop arriving in the database (gunicorn serves the
    requests still in its backlog, whose clients gave up long ago, as a live service would)."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        began = last_change = time.monotonic()
        last = -1
        while time.monotonic() - began < limit and time.monotonic() - last_change < quiet:
            try:
                with engine.connect() as conn:
                    now = conn.scalar(text("SELECT count(*) FROM messages WHERE direction = "
                                           "'in' AND provider_id LIKE :p"), {"p": f"SM{tag}%"})
            except Exception:  # noqa: BLE001 - not up again yet: keep waiting
                now = last
            if now != last:
                last, last_change = now, time.monotonic()
            time.sleep(0.5)
    finally:
        engine.dispose()


def drain_spool(env: dict[str, str], spool: Path, engine: Engine, log: Path,
                max_passes: int = 500) -> tuple[int, list[str]]:
    """`flask --app app jobs run` until the spool is empty and no message is due in the outbox
    (the replayed messages' replies go out by the sandbox sender); (passes, their summaries)."""
    from web.spool import Spool

    summaries = []
    for passes in range(1, max_passes + 1):
        with log.open("a") as out:
            done = subprocess.run(flask_command("jobs", "run"), env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=out, text=True, timeout=1800)
        summaries.append(done.stdout.strip())
        if done.returncode != 0:
            raise Failed(f"jobs run failed ({done.returncode}): {done.stdout[-500:]}; see {log}")
        with engine.connect() as conn:
            due = conn.scalar(text("SELECT count(*) FROM outbox WHERE status = 'pending' "
                                   "AND next_attempt_at <= now()"))
        if not Spool(spool).pending() and not due:
            return passes, summaries
    raise Failed(f"the spool or the outbox still had work after {max_passes} passes")


@dataclass
class Stored:
    """What the database holds for the run's MessageSids after the drain."""

    inbound: Counter  # MessageSid -> rows
    inline: Counter  # MessageSid -> replies answered in the webhook's TwiML (no outbox job)
    queued: Counter  # MessageSid -> replies sent by the outbox (a replay's)
    queued_unsent: Counter  # MessageSid -> replies of a replay still not sent


def read_stored(engine: Engine, tag: str) -> Stored:
    pattern = f"SM{tag}%"
    with engine.connect() as conn:
        inbound = Counter(dict(conn.execute(text(
            "SELECT provider_id, count(*) FROM messages WHERE direction = 'in' "
            "AND provider_id LIKE :p GROUP BY provider_id"), {"p": pattern}).all()))
        rows = conn.execute(text(
            "SELECT i.provider_id, o.id IS NOT NULL AS queued, r.status "
            "FROM messages i JOIN messages r ON r.in_reply_to = i.id AND r.direction = 'out' "
            "LEFT JOIN outbox o ON o.key = 'message:' || r.id "
            "WHERE i.direction = 'in' AND i.provider_id LIKE :p"), {"p": pattern}).all()
    stored = Stored(inbound, Counter(), Counter(), Counter())
    for sid, queued, status in rows:
        if not queued:
            stored.inline[sid] += 1
        elif status == "sent":
            stored.queued[sid] += 1
        else:
            stored.queued_unsent[sid] += 1
    return stored


WINDOWS = ("before", "during: PostgreSQL restart", "between", "during: worker killed", "after")


def window_of(due: float, faults: list[Fault], span: float) -> str:
    """Which window an arrival due at `due` falls in: a fault's window runs from its start to
    `span` seconds after its action ended (the restart's ends at the kill, if that is sooner)."""
    restart, kill = faults[0], faults[1]
    if due < restart.at:
        return WINDOWS[0]
    if due >= kill.at + kill.took + span:
        return WINDOWS[4]
    if due >= kill.at:
        return WINDOWS[3]
    return WINDOWS[1] if due < restart.at + restart.took + span else WINDOWS[2]


def load_tables(results: list[Sent], stored: Stored, faults: list[Fault], span: float,
                timeout: float, tag: str) -> tuple[list[str], dict[str, int]]:
    sids = {r.i: message_sid(tag, r.i) for r in results}
    outcomes = Counter(r.outcome for r in results)
    sent = [r for r in results if not r.outcome.startswith("not sent")]
    acked = [r for r in sent if r.outcome in ACKNOWLEDGED]
    acked_sids = {sids[r.i] for r in acked}
    lost = sorted(s for s in acked_sids if s not in stored.inbound)
    twice_stored = sorted(s for s, k in stored.inbound.items() if k > 1)
    inline_seen = {sids[r.i] for r in sent if r.outcome == "reply"}
    answered_twice = sorted(s for s in inline_seen if stored.queued[s] or stored.queued_unsent[s])
    unanswered = sorted(s for s in acked_sids if s in stored.inbound and s not in inline_seen
                        and not stored.queued[s])
    late_stored = sum(1 for r in sent if r.outcome not in ACKNOWLEDGED
                      and sids[r.i] in stored.inbound)
    errors = Counter(r.outcome for r in sent if r.outcome not in ACKNOWLEDGED)
    errored = "; ".join(f"{k} {v:,}" for k, v in errors.most_common()) or "0"
    counts = format_table(
        ("sent", "acknowledged", "reply at once", "spool ack", "apology", "not acknowledged",
         "stored", "lost", "duplicated"),
        [(n(len(sent)), n(len(acked)), n(outcomes["reply"]), n(outcomes["spooled"]),
          n(outcomes["apology"]), errored, n(len(stored.inbound)), n(len(lost)),
          n(len(twice_stored) + len(answered_twice)))])
    rows = []
    for name in WINDOWS:
        mine = [r for r in sent if window_of(r.due, faults, span) == name]
        if not mine:
            rows.append((name, "-", "0", "0", "-", "-", "-", "0"))
            continue
        first, last = min(r.due for r in mine), max(r.due for r in mine)
        ok = [r for r in mine if r.outcome in ACKNOWLEDGED]
        lat = [r.latency for r in mine]
        rows.append((name, f"{first:,.0f}-{last:,.0f}", n(len(mine)), n(len(ok)),
                     f"{sum(r.outcome == 'spooled' for r in mine):,}",
                     ms(pct(lat, 50), timeout), ms(pct(lat, 99), timeout),
                     n(len(mine) - len(ok))))
    windows = format_table(("window", "due at s", "sent", "acknowledged", "spool ack",
                            "p50 ms", "p99 ms", "not acknowledged"), rows)
    figures = {"lost": len(lost), "stored twice": len(twice_stored),
               "answered twice": len(answered_twice), "unanswered": len(unanswered),
               "late stored": late_stored, "not sent": len(results) - len(sent)}
    return [counts, windows], figures


@click.group(help=__doc__.splitlines()[0])
def main() -> None:
    pass


def _carried_out(run: Callable[..., bool], ctx: click.Context, opts: dict[str, Any]) -> bool:
    """Run one of the sub-commands' bodies; a run that could not be carried out is an error
    message, not a traceback."""
    try:
        return run(ctx, **opts)
    except Failed as exc:
        raise click.ClickException(str(exc)) from None


def _require_gunicorn() -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        raise click.ClickException("gunicorn not installed: .venv/bin/pip install "
                                   "'gunicorn>=22,<24' (the prod extra)") from None


LOAD_QUICK = dict(duration=3.0, peak=10.0, accounts=10, workers=2, span=1.0, timeout=5.0)


@main.command("load")
@click.option("--duration", default=600.0, show_default=True, type=click.FloatRange(3),
              help="Seconds of load at the fixed rate; PostgreSQL restarts at a third of it, a "
                   "worker is killed at two thirds.")
@click.option("--peak", type=click.FloatRange(0.1), default=None,
              help="The service's peak in messages/s; default: measured first (wrk, closed "
                   "loop, --peak-duration seconds at 50 connections).")
@click.option("--peak-duration", default=15.0, show_default=True, type=click.FloatRange(1),
              help="Seconds of the closed-loop run that measures the peak.")
@click.option("--factor", default=2.0, show_default=True, type=click.FloatRange(0.01),
              help="The arrival rate as a multiple of the peak.")
@click.option("--accounts", default=2000, show_default=True, type=click.IntRange(1, 10_000),
              help="Accounts, one buyer (billing contact on SMS) each; most with an offer.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(2),
              help="gunicorn workers (as bench/webhook.py).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="Threads per worker: 1 runs sync workers (as bench/webhook.py), more runs "
                   "gthread workers (deploy/gunicorn.conf.py: --workers 2 --threads 16 here).")
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(0.5),
              help="Seconds a request may take: Twilio gives up on a webhook after 15.")
@click.option("--span", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds after a fault whose arrivals count as 'during' it.")
@click.option("--pg-down", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Seconds PostgreSQL stays stopped before it starts again.")
@click.option("--seed", default=1, show_default=True)
@click.option("--quick", is_flag=True, help="Tiny run for the smoke test: " + ", ".join(
    f"--{k.replace('_', '-')} {v:g}" for k, v in LOAD_QUICK.items()) + ".")
@click.option("--keep", is_flag=True, help="Keep the work folder (logs, spool).")
@click.pass_context
def load_command(ctx: click.Context, quick: bool, **opts: Any) -> None:
    """Signed inbound SMS from many buyers at twice the service's peak, with PostgreSQL
    restarted at a third and a gunicorn worker killed -9 at two thirds; then the spool drained
    by `flask --app app jobs run`. Lost (acknowledged, never stored) and duplicated (stored
    twice, answered twice) must be 0."""
    if quick:
        opts.update(LOAD_QUICK)
    _require_gunicorn()
    if not _carried_out(run_load, ctx, opts):
        ctx.exit(1)


def run_load(ctx: click.Context, *, duration: float, peak: float | None, peak_duration: float,
             factor: float, accounts: int, workers: int, threads: int, timeout: float,
             span: float, pg_down: float, seed: int, keep: bool) -> bool:
    from storage.db import make_engine

    if peak is None and shutil.which("wrk") is None:
        raise click.ClickException("wrk not found to measure the peak: apt-get install -y wrk, "
                                   "or give --peak")
    rng = random.Random(seed)
    limit = raise_open_files()
    with database_server(ctx) as db, work_folder(keep) as work:
        if db.cluster is None:
            raise click.ClickException("load restarts PostgreSQL: it needs a throwaway cluster, "
                                       "not UPGRADE_CHAT_TEST_PG_URL")
        pg_version = db.version
        url = postgres.create_database(db.admin_url, "bench_faults_load")
        say(f"load: creating {accounts} accounts with their crossings ...")
        buyers = setup_accounts(url, accounts, seed)
        spool = work / "spool"
        env = service_env(url, SPOOL_DIR=str(spool))
        config = ServerConfig(workers, threads)
        how = "given: --peak"
        if peak is None:
            say(f"load: measuring the peak ({peak_duration:g} s closed loop, wrk -c50) ...")
            measured, _, _ = bench_target(
                "peak", "app:create_app()", env, config, work, buyers,
                lambda count: messages(buyers, count, rng), peak_duration, 3.0, 50, 1,
                "<Message>", sized_for=1_500)
            peak = measured.rate
            how = f"measured: {measured.requests:,} in {measured.seconds:.1f} s, wrk -c50"
        rate = factor * peak
        count = max(1, int(rate * duration))
        tag = new_tag()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = work / "load-gunicorn.log"
        server = Server("app:create_app()", port, config,
                        dict(env, UPGRADE_CHAT_PUBLIC_BASE_URL=base), log)
        try:
            server.wait_ready()
            smoke(port, base, next(b for b in buyers if b.thread).phone, "<Message>")
            say(f"load: one message from each of {len(buyers)} buyers (unmeasured) ...")
            prime(port, base, buyers)
            say(f"load: {rate:,.1f} requests/s for {duration:g} s ({count:,} requests) ...")
            generator = OpenLoop(port, Signer(base), messages(buyers, count, rng), tag, rate,
                                 timeout, max(100, limit - 500))
            faults = [(duration / 3, "restart", lambda: restart_postgresql(db.cluster, pg_down)),
                      (2 * duration / 3, "kill", lambda: kill_a_worker(server, workers, rng))]
            happened = asyncio.run(generator.run(count, faults))
            settle(url, tag)  # what gunicorn's backlog still holds is served, late
        finally:
            server.stop()
        for f in happened:
            say(f"load: at {f.at:.1f} s: {f.detail}")
        say("load: draining the spool with `flask --app app jobs run` ...")
        engine = make_engine(url)
        try:
            passes, summaries = drain_spool(service_env(url, SPOOL_DIR=str(spool)), spool,
                                            engine, work / "jobs.log")
            stored = read_stored(engine, tag)
        finally:
            engine.dispose()
        rejected = list((spool / "rejected").glob("*")) if (spool / "rejected").is_dir() else []
        logged = log.read_text(errors="replace")
        results = sorted(generator.results, key=lambda r: r.i)

    tables, figures = load_tables(results, stored, happened, span, timeout, tag)
    lateness = [r.late for r in results]
    sends = [r for r in results if not r.outcome.startswith("not sent")]
    achieved = len(sends) / max(1e-9, max(r.due + r.late for r in results))
    kept_up = pct(lateness, 99) < 0.1 and not figures["not sent"] and achieved >= 0.95 * rate
    replayed = sum(int(s.split("spool: ")[1].split(" ")[0]) for s in summaries
                   if s.startswith("spool: "))
    notes = [
        f"generator: {'kept' if kept_up else 'could NOT keep'} the rate: {achieved:,.1f} "
        f"requests/s sent against {rate:,.1f} asked; sent late by p50 "
        f"{pct(lateness, 50) * 1000:,.1f} ms, p99 {pct(lateness, 99) * 1000:,.1f} ms, max "
        f"{max(lateness) * 1000:,.0f} ms; at most {generator.most_open:,} connections open"
        + (f"; {figures['not sent']:,} not sent (its connection limit)"
           if figures["not sent"] else ""),
        f"spool: {replayed:,} messages replayed by {passes} passes of `flask --app app jobs "
        f"run`; {len(rejected)} set aside; gunicorn logged "
        f"{logged.count('twilio inbound message failed'):,} failures (apology answers)",
        f"stored but never acknowledged (served after the client gave up, or the worker killed "
        f"after its commit): {figures['late stored']:,}; their replies are recorded as sent in "
        f"TwiML nobody received",
        f"acknowledged and stored, but no reply reached the buyer: {figures['unanswered']:,}",
        f"never stored: {len(sends) - len(stored.inbound):,} ({figures['lost']:,} of them "
        f"acknowledged, i.e. lost; Twilio gave up on the others, which it does not send again: "
        f"dropped from gunicorn's full backlog, or in a worker when it was killed)",
        "lost = acknowledged (HTTP 200 with TwiML) but not stored after the drain; duplicated = "
        f"a MessageSid stored twice ({figures['stored twice']}) or a buyer answered both in the "
        f"TwiML and from the outbox ({figures['answered twice']})",
    ]
    problems = []
    if figures["lost"]:
        problems.append(f"{figures['lost']:,} acknowledged messages were never stored")
    if figures["stored twice"] or figures["answered twice"]:
        problems.append(f"{figures['stored twice']:,} MessageSids stored twice, "
                        f"{figures['answered twice']:,} answered twice")
    if rejected:
        problems.append(f"{len(rejected)} spool entries set aside (spool/rejected)")
    if len(happened) != 2 or not happened[1].detail.startswith("worker"):
        problems.append("the faults did not all happen")
    title = (f"load with faults: {rate:,.1f} requests/s ({factor:g} x the peak {peak:,.1f}/s, "
             f"{how}) for {duration:g} s from {accounts:,} buyers, unique MessageSids, "
             f"timeout {timeout:g} s; {config.describe()}; "
             + "; ".join(f"at {f.at:,.0f} s: {f.detail}" for f in happened)
             + f"; 'during' = {span:g} s from each fault")
    return report(title, pg_version, tables, notes, problems)


# --- 2. provider outage -----------------------------------------------------------------------

OUTAGE_QUICK = dict(outage=3.0, retry_after=1, messages=20, waves=2, every=1,
                    recovery_timeout=60.0)
# Where the docs state how often a message may be sent (quoted with the outage's table).
SEND_BOUND = ("storage/outbox.py: \"Delivery is at least once, never exactly once: a sender can "
              "succeed and the process die before the outcome is written ... The job is then "
              "sent again\"; channels/twilio_outbound.py: a send is repeated only when \"its "
              "HTTP request succeeded but [its] outcome was never recorded — the process died, "
              "the database was unreachable, or the read timed out after Twilio had accepted "
              "the message\". None of these happens here (every refused request created "
              "nothing): the bound for this run is 0.")


def outage_answers(up_at: float, retry_after: int) -> Callable[[Any], Any]:
    """The fake Twilio's answers until `up_at` (time.time()): 503 and 429 in turn, each with
    Retry-After; then 201 Created."""
    from tests.support.fake_twilio import twilio_error

    turn = [0]

    def answer(request: Any) -> Any:
        if time.time() >= up_at:
            return 201
        turn[0] += 1
        if turn[0] % 2:
            return twilio_error(20503, status=503, message="Service Unavailable",
                                retry_after=retry_after)
        return twilio_error(20429, status=429, message="Too Many Requests",
                            retry_after=retry_after)

    return answer


def retry_after_kept(log: list[Any], slack: float = 0.01) -> tuple[int, int]:
    """(requests made before a Retry-After Twilio had given ran out, of them the ones for a
    message that had itself been told to wait). Every request is checked against the latest
    deadline any earlier answer set: Retry-After is about the account, not one message."""
    deadline, per_message = -math.inf, {}
    early = early_same = 0
    for r in sorted(log, key=lambda r: r.at):
        key = (r.to, r.body)
        if r.at < deadline - slack:
            early += 1
        if r.at < per_message.get(key, -math.inf) - slack:
            early_same += 1
        retry_after = getattr(r.answer, "retry_after", None)
        if retry_after is not None:
            deadline = max(deadline, r.at + retry_after)
            per_message[key] = r.at + retry_after
    return early, early_same


@main.command("outage")
@click.option("--outage", default=600.0, show_default=True, type=click.FloatRange(1),
              help="Seconds the fake Twilio answers 503 and 429 (in turn, with Retry-After).")
@click.option("--retry-after", default=30, show_default=True, type=click.IntRange(1),
              help="Seconds in each refusal's Retry-After header.")
@click.option("--messages", default=1000, show_default=True, type=click.IntRange(2, 19_998),
              help="SMS queued (an opening and a reply per account), in --waves waves across "
                   "the outage: at its start, then evenly.")
@click.option("--waves", default=3, show_default=True, type=click.IntRange(1))
@click.option("--every", default=10, show_default=True, type=click.IntRange(1),
              help="The scheduler's period: `flask --app app scheduler --every`.")
@click.option("--recovery-timeout", default=1800.0, show_default=True,
              type=click.FloatRange(1),
              help="Seconds to wait after the outage for every message to be settled.")
@click.option("--quick", is_flag=True, help="Tiny run for the smoke test: " + ", ".join(
    f"--{k.replace('_', '-')} {v:g}" for k, v in OUTAGE_QUICK.items()) + ".")
@click.option("--keep", is_flag=True, help="Keep the work folder (the scheduler's log).")
@click.pass_context
def outage_command(ctx: click.Context, quick: bool, **opts: Any) -> None:
    """SMS queued while the Twilio API (a local fake) answers 503 and 429 with Retry-After, then
    recovers; `flask --app app scheduler` runs throughout. Lost must be 0, sent more than once
    within the documented bound, and no request may come before a Retry-After ran out."""
    if quick:
        opts.update(OUTAGE_QUICK)
    if not _carried_out(run_outage, ctx, opts):
        ctx.exit(1)


def run_outage(ctx: click.Context, *, outage: float, retry_after: int, messages: int,
               waves: int, every: int, recovery_timeout: float, keep: bool) -> bool:
    from bench.outbox import seed
    from storage.db import make_engine
    from tests.support.fake_twilio import serving

    accounts = messages // 2
    per_wave = [accounts // waves + (1 if w < accounts % waves else 0) for w in range(waves)]
    with database_server(ctx) as db, work_folder(keep) as work, serving() as fake:
        pg_version = db.version
        url = fresh_database(db, "bench_faults_outage")
        engine = make_engine(url)
        log = work / "scheduler.log"
        env = service_env(url, TWILIO_ACCOUNT_SID=fake.account_sid,
                          TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_SMS_FROM=SMS_FROM,
                          PUBLIC_BASE_URL=PUBLIC_BASE_URL, TWILIO_API_URL=fake.base_url,
                          SPOOL_DIR=str(work / "spool"))
        began = time.time()
        up_at = began + outage
        fake.responder = outage_answers(up_at, retry_after)
        with log.open("w") as out:
            scheduler = subprocess.Popen(flask_command("scheduler", "--every", str(every)),
                                         env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            first = 0
            for w, count in enumerate(per_wave):
                time.sleep(max(0.0, began + w * outage / waves - time.time()))
                seed(engine, count, datetime.now(timezone.utc), first=first, plain_jobs=False)
                first += count
                say(f"outage: wave {w + 1}: {2 * count} SMS queued at "
                    f"{time.time() - began:.0f} s")
            time.sleep(max(0.0, up_at - time.time()))
            say(f"outage: Twilio is back at {time.time() - began:.0f} s; waiting for the "
                f"outbox ...")
            while time.time() < up_at + recovery_timeout:
                if scheduler.poll() is not None:
                    raise Failed(f"the scheduler exited ({scheduler.returncode}); see {log}")
                with engine.connect() as conn:
                    pending = conn.scalar(text("SELECT count(*) FROM outbox WHERE kind = "
                                               "'message' AND status = 'pending'"))
                if not pending:
                    break
                time.sleep(0.5)
            settled_at = time.time()
        finally:
            scheduler.send_signal(signal.SIGTERM)
            try:
                scheduler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                scheduler.kill()
                scheduler.wait()
        requests = fake.log()
        with engine.connect() as conn:
            statuses = Counter(dict(conn.execute(text(
                "SELECT status, count(*) FROM messages WHERE direction = 'out' "
                "GROUP BY status")).all()))
            errors = Counter(dict(conn.execute(text(
                "SELECT last_error, count(*) FROM messages WHERE direction = 'out' "
                "AND status <> 'sent' GROUP BY last_error")).all()))
        engine.dispose()
        logged = log.read_text(errors="replace")

    queued = sum(per_wave) * 2
    created = Counter((r.to, r.body) for r in requests if r.answer == 201)
    during = [r for r in requests if r.at < up_at]
    once = sum(1 for k in created.values() if k == 1)
    twice = sum(1 for k in created.values() if k > 1)
    lost = queued - len(created)
    early, early_same = retry_after_kept(requests)
    most_requests = max(Counter((r.to, r.body) for r in requests).values(), default=0)
    last_sent = max((r.at for r in requests if r.answer == 201), default=math.nan)
    table = format_table(
        ("queued", "sent once", "sent more than once", "lost", "attempts during the outage",
         "before Retry-After", "most requests for one message"),
        [(n(queued), n(once), n(twice), n(lost), n(len(during)),
          f"{early:,} ({early_same:,} for the same message)", n(most_requests))])
    notes = [
        f"messages at the end: " + ", ".join(f"{k} {v:,}" for k, v in statuses.most_common())
        + ("; not sent: " + "; ".join(f"{v:,} '{k}'" for k, v in errors.most_common())
           if errors else ""),
        f"attempts: {len(during):,} during the {outage:g} s outage "
        f"({len(during) / max(outage, 1e-9) * 60:,.1f} a minute), "
        f"{len(requests) - len(during):,} after; the last message went out "
        f"{last_sent - up_at:,.1f} s after Twilio recovered"
        + ("" if settled_at - up_at < recovery_timeout else
           f" (NOT all settled within --recovery-timeout {recovery_timeout:g} s)"),
        f"the scheduler logged {logged.count('ERROR'):,} errors, "
        f"{logged.count('held, not failed'):,} holds",
        f"the bound on sends: {SEND_BOUND}",
    ]
    problems = []
    if lost:
        problems.append(f"{lost:,} queued messages were never sent")
    if twice:
        problems.append(f"{twice:,} messages were sent more than once (bound: 0)")
    if early:
        problems.append(f"{early:,} requests came before a Retry-After had run out")
    title = (f"provider outage: the fake Twilio answers 503 and 429 (in turn, Retry-After "
             f"{retry_after} s) for {outage:g} s, then 201; {queued:,} SMS queued in {waves} "
             f"waves across it; `flask --app app scheduler --every {every}` throughout")
    return report(title, pg_version, [table], notes, problems)


# --- 3. the scheduler killed mid-send -------------------------------------------------------

KILL_QUICK = dict(trials=6, upgrades=2, confirms=2, sms=4, calibrate=1)
KILL_BOUND = ("a send is repeated only when its outcome was not recorded (storage/outbox.py, "
              "channels/twilio_outbound.py: Twilio has no idempotency key; the billing "
              "webhook's receivers dedupe on its idempotency_key, web/webhooks.py). The "
              "dispatcher sends one job at a time and records each before the next, so one "
              "death can leave at most one send unrecorded: at most 1 repeated send (SMS or "
              "webhook) per kill, and never a second upgrade.")


class Forker:
    """A process forked before any thread starts, which imports the app and reads the reply
    model once, then for each trial forks a fresh process that builds the app and runs
    `flask --app app jobs run` (the same click command, through Flask's CLI runner): a few
    milliseconds instead of the 2-3 s of starting Python and importing. It kills that process
    with SIGKILL `kill_after` seconds after the app is built (the work begins), unless it ended
    first, and says which happened."""

    def __init__(self, log: Path) -> None:
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the forker
            os.close(cmd_w)
            os.close(res_r)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            code = 0
            try:
                _forker_loop(cmd_r, res_w)
            except BaseException:  # noqa: BLE001 - reported in the log, the parent sees EOF
                logging.exception("the forker failed")
                code = 1
            os._exit(code)
        os.close(cmd_r)
        os.close(res_w)
        self.pid = pid
        self._orders = os.fdopen(cmd_w, "w", buffering=1)
        self._results = os.fdopen(res_r)

    def run(self, config: dict[str, Any], kill_after: float | None) -> tuple[bool, float, int]:
        """(killed, seconds from the start of the work to the end, exit code or -signal)."""
        self._orders.write(json.dumps({"config": config, "kill_after": kill_after}) + "\n")
        line = self._results.readline()
        if not line:
            raise Failed("the forker died (see its log)")
        r = json.loads(line)
        return r["killed"], r["seconds"], r["status"]

    def close(self) -> None:
        self._orders.close()
        self._results.close()
        os.waitpid(self.pid, 0)


def _forker_loop(orders_fd: int, results_fd: int) -> None:
    import app as app_module

    logging.basicConfig(level=logging.WARNING, force=True,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    app_module.load_intent_model()  # read once here: every child has it
    with os.fdopen(orders_fd) as orders, os.fdopen(results_fd, "w", buffering=1) as results:
        for line in orders:
            order = json.loads(line)
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                code = 70
                try:
                    code = _jobs_run(order["config"], ready_w)
                except BaseException:  # noqa: BLE001 - in the log; the exit code says it
                    logging.exception("jobs run failed")
                os._exit(code)
            os.close(ready_w)
            os.read(ready_r, 1)  # the app is built (or the child died)
            os.close(ready_r)
            began = time.monotonic()
            killed = False
            pidfd = os.pidfd_open(pid)
            try:
                kill_after = order["kill_after"]
                if kill_after is not None and not select.select([pidfd], [], [], kill_after)[0]:
                    os.kill(pid, signal.SIGKILL)
            finally:
                os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            seconds = time.monotonic() - began
            if os.WIFSIGNALED(status):
                killed = os.WTERMSIG(status) == signal.SIGKILL
                code = -os.WTERMSIG(status)
            else:
                code = os.WEXITSTATUS(status)
            results.write(json.dumps({"killed": killed, "seconds": seconds,
                                      "status": code}) + "\n")


def _jobs_run(config: dict[str, Any], ready_w: int) -> int:
    """In a fresh child: build the app and run `jobs run` through the CLI; its exit code."""
    from app import create_app

    app = create_app(config)
    runner = app.test_cli_runner()
    os.write(ready_w, b"r")
    os.close(ready_w)
    result = runner.invoke(args=["jobs", "run"])
    if result.exit_code:
        logging.error("jobs run exited %s: %s", result.exit_code, result.output[-2000:])
    return result.exit_code


@dataclass
class KillSetup:
    """The database's state at the start of every trial, and what each trial must end with."""

    upgraded: dict[int, str]  # account id -> the billing webhook's key, confirmed before
    confirming: dict[int, tuple[str, str]]  # account id -> (phone, key), CONFIRM in the spool
    spool_sids: dict[str, str]  # phone -> the MessageSid of its CONFIRM


def seed_kill(url: str, upgrades: int, confirms: int, sms: int) -> KillSetup:
    """Accounts whose buyers confirmed an upgrade (the billing webhook and the replies queued in
    the outbox, delivered by SMS) and accounts whose buyers are at the confirmation step (their
    CONFIRM is put in the spool at each trial: the upgrade itself happens in the killed run),
    plus `sms` more queued SMS; everything else already settled."""
    from app import create_app
    from channels.twilio_messaging import SMS
    from core.delivery import queue_message
    from storage.uow import SqlUnitOfWork

    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "CONTROL_SHARE": "0",
                      "DEMO": False, "AUTO_MIGRATE": False,
                      "BILLING_WEBHOOK_URL": "http://127.0.0.1:9/unused",
                      "BILLING_WEBHOOK_SECRET": "bench-faults-secret"})
    rt = app.extensions["upgrade_chat"]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = client.post(f"/api/v1{path}", json=body, headers=auth)
        if r.status_code not in (200, 201):
            raise Failed(f"POST {path}: {r.status_code} {r.get_data(as_text=True)[:300]}")
        return r.get_json()

    contacts = []
    for i in range(upgrades + confirms):
        ext, phone = f"kill-{i:04d}", f"+1312555{i:04d}"
        r = client.put(f"/api/v1/accounts/{ext}", headers=auth, json={
            "name": f"Kill Trial {i}", "plan": "starter", "vertical": "generic",
            "timezone": "America/Chicago", "billing_day": 1 + i % 28,
            "plan_since": (now - timedelta(days=120)).isoformat(),
            "contacts": [{"external_id": f"{ext}-billing", "name": f"Billing {i}",
                          "role": "billing", "phone": phone}]})
        if r.status_code not in (200, 201):
            raise Failed(f"PUT account {ext}: {r.status_code}")
        post("/usage", {"events": [
            {"id": f"{ext}-m{d}", "account": ext, "metric": "messages", "quantity": 160,
             "at": (now - timedelta(days=29 - d, hours=1)).isoformat()} for d in range(30)]})
        # The buyer says yes (relayed: the opening and the step come back in the answer, the
        # queued opening is cancelled); the confirmation step is next.
        if post(f"/conversations/{ext}-billing/messages",
                {"channel": "sms", "text": "yes", "id": f"{ext}-yes"})["state"] \
                != "awaiting_confirmation":
            raise Failed(f"{ext}: not at the confirmation step after yes")
        contacts.append((ext, phone))
    while rt.dispatcher.dispatch_due(limit=200).claimed:  # the cancelled openings settle
        pass
    for ext, _ in contacts[:upgrades]:
        if post(f"/conversations/{ext}-billing/messages",
                {"channel": "sms", "text": "confirm", "id": f"{ext}-confirm",
                 "deliver": True})["state"] != "upgraded":
            raise Failed(f"{ext}: not upgraded after confirm")
    engine = rt.engine
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT a.external_id, a.id, c.id, t.id FROM accounts a "
            "JOIN contacts c ON c.account_id = a.id JOIN threads t ON t.account_id = a.id")).all()
    ids = {ext: (account, contact, thread) for ext, account, contact, thread in rows}
    with SqlUnitOfWork(engine) as uow:
        for k in range(sms):
            ext = contacts[k % upgrades][0] if upgrades else contacts[k % len(contacts)][0]
            _, contact, thread = ids[ext]
            queue_message(uow, thread_id=thread, contact_id=contact, channel=SMS, kind="reply",
                          body=f"Bench SMS {k}", now=now)
        uow.commit()
    engine.dispose()
    upgraded = {ids[ext][0]: f"thread:{ids[ext][2]}:growth" for ext, _ in contacts[:upgrades]}
    confirming = {ids[ext][0]: (phone, f"thread:{ids[ext][2]}:growth")
                  for ext, phone in contacts[upgrades:]}
    return KillSetup(upgraded, confirming,
                     {phone: f"SM{i:032x}" for i, (_, phone) in enumerate(contacts)})


class Snapshot:
    """Every table's rows, copied aside once (bench_snap_<table>) and put back before each
    trial: one database, reset in a few milliseconds. The audit trail is append-only (its
    triggers refuse a DELETE): it is left to grow, trial after trial."""

    KEPT = frozenset({"audit_events"})

    def __init__(self, engine: Engine) -> None:
        from storage.models import Base

        self.engine = engine
        self.tables = [t.name for t in Base.metadata.sorted_tables if t.name not in self.KEPT]
        with engine.begin() as conn:
            for t in self.tables:
                conn.execute(text(f'DROP TABLE IF EXISTS "bench_snap_{t}"'))
                conn.execute(text(f'CREATE TABLE "bench_snap_{t}" AS SELECT * FROM "{t}"'))

    def restore(self) -> None:
        with self.engine.begin() as conn:  # DELETE: faster than TRUNCATE on tables this small
            for t in reversed(self.tables):
                conn.execute(text(f'DELETE FROM "{t}"'))
            for t in self.tables:
                conn.execute(text(f'INSERT INTO "{t}" SELECT * FROM "bench_snap_{t}"'))


@dataclass
class Trial:
    killed: bool
    seconds: float
    status: int
    clean_passes: int
    phase: str = ""  # where the kill found the work: replaying the spool, sending, done
    lost_upgrades: int = 0  # a confirmation with no plan change, or whose webhook never arrived
    duplicate_upgrades: int = 0  # a second plan change, or a webhook under a second key
    lost_sms: int = 0
    repeated_sms: int = 0  # SMS sent more than once (an extra send each)
    repeated_webhooks: int = 0  # the same webhook delivered again (receivers dedupe by its key)
    notes: list[str] = field(default_factory=list)


def check_trial(engine: Engine, setup: KillSetup, twilio_log: list[Any],
                webhooks: list[Any]) -> Trial:
    """What one trial left: plan changes and webhooks per confirmation, SMS per message."""
    trial = Trial(False, 0.0, 0, 0)
    with engine.connect() as conn:
        changes = Counter(dict(conn.execute(text(
            "SELECT account_id, count(*) FROM plan_changes GROUP BY account_id")).all()))
        unsent = conn.scalar(text("SELECT count(*) FROM outbox WHERE status <> 'sent' AND "
                                  "(kind = 'billing_webhook' OR (kind = 'message' AND status "
                                  "<> 'cancelled'))"))
        sms = conn.execute(text(
            "SELECT c.phone, m.body FROM messages m JOIN contacts c ON c.id = m.contact_id "
            "JOIN outbox o ON o.key = 'message:' || m.id WHERE o.status = 'sent'")).all()
    expected_keys = set(setup.upgraded.values()) | {k for _, k in setup.confirming.values()}
    for account in [*setup.upgraded, *setup.confirming]:
        if changes[account] == 0:
            trial.lost_upgrades += 1
        trial.duplicate_upgrades += max(0, changes[account] - 1)
    trial.duplicate_upgrades += sum(changes[a] for a in changes
                                    if a not in setup.upgraded and a not in setup.confirming)
    deliveries: Counter = Counter()
    for w in webhooks:
        try:
            deliveries[json.loads(w.body)["idempotency_key"]] += 1
        except (ValueError, KeyError, TypeError):
            trial.notes.append("a webhook without an idempotency key")
            trial.lost_upgrades += 1
    trial.lost_upgrades += len(expected_keys - set(deliveries))
    trial.duplicate_upgrades += len(set(deliveries) - expected_keys)
    trial.repeated_webhooks = sum(k - 1 for k in deliveries.values())
    created = Counter((r.to, r.body) for r in twilio_log if r.answer == 201)
    wanted = Counter((phone, body) for phone, body in sms)
    trial.lost_sms = sum(1 for m in wanted if m not in created) + unsent
    trial.repeated_sms = sum(k - 1 for k in created.values())
    for phone, body in set(created) - set(wanted):
        with engine.connect() as conn:
            found = conn.execute(text(
                "SELECT m.id, m.kind, m.status, o.status FROM messages m "
                "JOIN contacts c ON c.id = m.contact_id "
                "LEFT JOIN outbox o ON o.key = 'message:' || m.id "
                "WHERE c.phone = :phone AND m.body = :body"),
                {"phone": phone, "body": body}).all()
        trial.notes.append("an SMS went out that the database does not hold as sent: "
                           + ("; ".join(f"message {i} ({kind}) is {status}, its job {job}"
                                        for i, kind, status, job in found)
                              or f"no such message (to {'a' if phone else 'no'} number, "
                                 f"{len(body or '')} characters)"))
        trial.lost_sms += 1
    return trial


def where_it_stopped(engine: Engine, spool: Path) -> str:
    """Where a run stopped: still replaying the spool, still sending, or done."""
    from web.spool import Spool

    if Spool(spool).pending():
        return "replaying the spool"
    with engine.connect() as conn:
        pending = conn.scalar(text("SELECT count(*) FROM outbox WHERE status = 'pending'"))
    return "sending" if pending else "done"


def finish(app: Any, engine: Engine, spool: Path, max_passes: int = 20) -> int:
    """The clean run after a kill: the dead run's leases are made to have run out (as 5 minutes
    later), then `jobs run` passes until the spool is empty and nothing is due; the passes."""
    from cli import run_jobs
    from web.spool import Spool

    for passes in range(1, max_passes + 1):
        with engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET next_attempt_at = now() "
                              "WHERE status = 'pending' AND next_attempt_at > now()"))
        with app.app_context():
            run_jobs(app.extensions["upgrade_chat"])
        with engine.connect() as conn:
            pending = conn.scalar(text("SELECT count(*) FROM outbox WHERE status = 'pending'"))
        if not pending and not Spool(spool).pending():
            return passes
    raise Failed(f"work left after {max_passes} clean passes")


@main.command("kill")
@click.option("--trials", default=1000, show_default=True, type=click.IntRange(1),
              help="Runs of `jobs run` killed -9 at a random moment, each then finished clean.")
@click.option("--upgrades", default=4, show_default=True, type=click.IntRange(0),
              help="Confirmed upgrades whose billing webhook and SMS replies are in the outbox "
                   "at each trial's start.")
@click.option("--confirms", default=4, show_default=True, type=click.IntRange(0),
              help="Buyers' CONFIRM messages in the spool at each trial's start: the killed "
                   "run makes the upgrade, queues its webhook and reply, and sends them.")
@click.option("--sms", default=12, show_default=True, type=click.IntRange(0),
              help="More queued SMS (replies) at each trial's start.")
@click.option("--calibrate", default=3, show_default=True, type=click.IntRange(1),
              help="Unkilled runs first, to time the work: kills fall uniformly within it.")
@click.option("--exec", "use_exec", is_flag=True,
              help="Start each run as the command line `flask --app app jobs run` (2-3 s of "
                   "start-up each) instead of forking a process that has imported the app.")
@click.option("--seed", default=1, show_default=True)
@click.option("--quick", is_flag=True, help="Tiny run for the smoke test: " + ", ".join(
    f"--{k} {v:g}" for k, v in KILL_QUICK.items()) + ".")
@click.option("--keep", is_flag=True, help="Keep the work folder (the runs' log).")
@click.pass_context
def kill_command(ctx: click.Context, quick: bool, **opts: Any) -> None:
    """Confirmed upgrades and SMS in the outbox, CONFIRMs in the spool; `flask --app app jobs
    run` against a fake Twilio and a local billing webhook receiver, killed -9 at a random
    moment; then a clean run. Lost and duplicated upgrades must be 0, repeated sends within the
    documented bound (at most one per kill)."""
    if quick:
        opts.update(KILL_QUICK)
    if opts["upgrades"] + opts["confirms"] == 0:
        raise click.BadParameter("nothing to kill mid-send", param_hint="--upgrades/--confirms")
    if not _carried_out(run_kill, ctx, opts):
        ctx.exit(1)


def run_kill(ctx: click.Context, *, trials: int, upgrades: int, confirms: int, sms: int,
             calibrate: int, use_exec: bool, seed: int, keep: bool) -> bool:
    from app import create_app
    from channels.twilio_messaging import InboundMessage, spool_entry
    from storage.db import make_engine
    from tests.support import fake_twilio, receiver as webhook_receiver
    from web.spool import Spool

    rng = random.Random(seed)
    with database_server(ctx) as db, work_folder(keep) as work:
        pg_version = db.version
        url = fresh_database(db, "bench_faults_kill")
        say(f"kill: {upgrades} confirmed upgrades, {confirms} confirmations to spool, {sms} "
            f"more SMS ...")
        setup = seed_kill(url, upgrades, confirms, sms)
        engine = make_engine(url)
        snapshot = Snapshot(engine)
        engine.dispose()  # nothing of ours is open when the forker is forked
        log = work / "runs.log"
        forker = None if use_exec else Forker(log)  # before any thread starts (the fakes)
        spool = work / "spool"
        try:
            with fake_twilio.serving() as fake, webhook_receiver.serving() as receiver:
                config = {"DATABASE_URL": url, "API_KEY": API_KEY, "CONTROL_SHARE": "0",
                          "DEMO": False, "AUTO_MIGRATE": False, "SPOOL_DIR": str(spool),
                          "TWILIO_ACCOUNT_SID": fake.account_sid,
                          "TWILIO_AUTH_TOKEN": fake.auth_token, "TWILIO_SMS_FROM": SMS_FROM,
                          "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "TWILIO_API_URL": fake.base_url,
                          "BILLING_WEBHOOK_URL": receiver.url,
                          "BILLING_WEBHOOK_SECRET": "bench-faults-secret"}
                env = service_env(url, **{k: str(v) for k, v in config.items()
                                          if k not in ("DATABASE_URL", "API_KEY", "DEMO",
                                                       "AUTO_MIGRATE", "CONTROL_SHARE")})
                clean = create_app(config)
                engine = clean.extensions["upgrade_chat"].engine

                def run(kill_after: float | None) -> tuple[bool, float, int]:
                    if forker is not None:
                        return forker.run(config, kill_after)
                    with log.open("a") as out:
                        began = time.monotonic()
                        proc = subprocess.Popen(flask_command("jobs", "run"), env=env, cwd=ROOT,
                                                stdout=out, stderr=subprocess.STDOUT)
                        try:
                            proc.wait(timeout=kill_after)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
                        return (proc.returncode == -signal.SIGKILL,
                                time.monotonic() - began, proc.returncode)

                def trial(kill_after: float | None) -> Trial:
                    snapshot.restore()
                    for phone, sid in setup.spool_sids.items():
                        if any(phone == p for p, _ in setup.confirming.values()):
                            Spool(spool).write(spool_entry(
                                InboundMessage("sms", phone, "confirm", sid),
                                datetime.now(timezone.utc)))
                    t0, w0 = fake.count(), len(receiver.requests)
                    killed, seconds, status = run(kill_after)
                    phase = where_it_stopped(engine, spool)
                    passes = finish(clean, engine, spool)
                    result = check_trial(engine, setup, fake.log()[t0:],
                                         list(receiver.requests[w0:]))
                    result.killed, result.seconds, result.status = killed, seconds, status
                    result.clean_passes, result.phase = passes, phase
                    if status not in (0, -signal.SIGKILL):
                        result.notes.append(f"the run exited {status}")
                    return result

                say(f"kill: {calibrate} unkilled runs to time the work ...")
                timed = [trial(None) for _ in range(calibrate)]
                span = statistics.median(t.seconds for t in timed)
                say(f"kill: the work takes {span * 1000:,.0f} ms (median of {calibrate}); "
                    f"{trials:,} trials killed uniformly within it ...")
                results = []
                began = time.monotonic()
                for k in range(trials):
                    results.append(trial(rng.uniform(0, span)))
                    if (k + 1) % 100 == 0:
                        say(f"kill: {k + 1:,} trials in {time.monotonic() - began:,.0f} s")
                took = time.monotonic() - began
                clean.extensions["upgrade_chat"].engine.dispose()
        finally:
            if forker is not None:
                forker.close()
        logged = log.read_text(errors="replace") if log.exists() else ""

    def total(name: str, rows: list[Trial]) -> int:
        return sum(getattr(t, name) for t in rows)

    killed = [t for t in results if t.killed]
    beyond = [t for t in results + timed
              if t.repeated_sms + t.repeated_webhooks > (1 if t.killed else 0)]
    rows = []
    for name, rs in (("calibration (not killed)", timed), ("killed mid-run", killed),
                     ("finished before the kill", [t for t in results if not t.killed])):
        rows.append((name, n(len(rs)), n(total("duplicate_upgrades", rs)),
                     n(total("lost_upgrades", rs)), n(total("repeated_sms", rs)),
                     n(total("repeated_webhooks", rs)), n(total("lost_sms", rs)),
                     n(sum(1 for t in rs if t.repeated_sms + t.repeated_webhooks > (
                         1 if t.killed else 0)))))
    table = format_table(("trials", "runs", "duplicate upgrades", "lost upgrades",
                          "SMS sent twice", "webhooks delivered twice", "lost SMS",
                          "beyond the bound"), rows)
    notes_seen = Counter(note for t in results for note in t.notes)
    phases = Counter(t.phase for t in killed)
    notes = [
        f"per trial: {upgrades} confirmed upgrades (their webhook and SMS reply queued), "
        f"{confirms} CONFIRMs in the spool, {sms} more SMS: {2 * (upgrades + confirms) + sms} "
        f"jobs for the run; killed uniformly within the {span * 1000:,.0f} ms the work takes "
        f"(median of {calibrate} unkilled runs); {trials:,} trials in {took:,.0f} s "
        f"({took / trials * 1000:,.0f} ms each)"
        + ("; runs started as `flask --app app jobs run`" if use_exec else
           "; runs forked from a process that imported the app, each building it and running "
           "the `jobs run` command"),
        "the kills found the run " + ", ".join(
            f"{k} {v:,} times" for k, v in phases.most_common()) + "; the clean run after "
        f"each: {statistics.mean(t.clean_passes for t in results):.1f} "
        f"passes on average; the runs logged {logged.count('ERROR'):,} errors",
        f"the bound: {KILL_BOUND}",
    ] + [f"{v:,} trials: {k}" for k, v in notes_seen.most_common()]
    problems = []
    if total("duplicate_upgrades", results + timed):
        problems.append(f"{total('duplicate_upgrades', results + timed):,} duplicate upgrades")
    if total("lost_upgrades", results + timed) or total("lost_sms", results + timed):
        problems.append(f"{total('lost_upgrades', results + timed):,} upgrades and "
                        f"{total('lost_sms', results + timed):,} SMS lost")
    if beyond:
        problems.append(f"{len(beyond):,} trials repeated more sends than the bound allows")
    title = (f"scheduler killed mid-send: {trials:,} runs of `flask --app app jobs run` against "
             f"a fake Twilio and a local billing webhook receiver, each killed -9 at a random "
             f"moment, then finished by a clean run (the dead run's leases taken as run out)")
    return report(title, pg_version, [table], notes, problems)


@main.command("all")
@click.option("--quick", is_flag=True, help="Each run's --quick: about a minute in all.")
@click.option("--keep", is_flag=True, help="Keep the work folders.")
@click.pass_context
def all_command(ctx: click.Context, quick: bool, keep: bool) -> None:
    """load, outage and kill, one after the other, with their defaults (or --quick)."""
    _require_gunicorn()
    ok = True
    for command, run, fast in ((load_command, run_load, LOAD_QUICK),
                               (outage_command, run_outage, OUTAGE_QUICK),
                               (kill_command, run_kill, KILL_QUICK)):
        opts = {p.name: p.default for p in command.params if p.name not in ("quick", "keep")}
        if quick:
            opts.update(fast)
        ok = _carried_out(run, ctx, dict(opts, keep=keep)) and ok
    if not ok:
        ctx.exit(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A polite kill unwinds like Ctrl+C, so servers, fakes and the cluster are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    main()
