"""The population bench/scale.py measures: accounts, contacts and usage events written with COPY,
and the tables the service derives from them (rollups, the per-account usage rows, plan history,
threshold state, signals, threads, messages, plan changes), derived in SQL so they agree with the
events (the usage rows by the storage's own `rebuild_usage_totals`).

`generate` writes the raw rows; `derive` builds everything else from them: it is the one place
that knows the derived tables.

Events are written with binary COPY built by numpy (30,000,000 rows in a few minutes rather
than the better part of an hour of Python tuples), in time order a chunk at a time, so each
account's events are spread over the table as live ingestion leaves them, not clustered.
"""

from __future__ import annotations

import io
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import numpy as np
import psycopg

from core.catalog import Catalog
from core.thresholds import evaluate_down, evaluate_up
from storage.db import make_engine
from storage.usage_totals import rebuild_usage_totals

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
DAYS = 90
PLANS = (("starter", 0.60), ("growth", 0.30), ("scale", 0.10))
# Median messages a month per plan (lognormal, sigma 0.8): some of each plan are past their
# thresholds (Starter -> Growth at 4,500, Growth -> Scale at 30,000), most are not.
MESSAGES_MEDIAN = {"starter": 2_000, "growth": 12_000, "scale": 60_000}
SEATS_MEAN = {"starter": 1.8, "growth": 6.0, "scale": 30.0}
INTEGRATIONS_MEAN = {"starter": 0.5, "growth": 4.0, "scale": 10.0}
TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
             "America/Phoenix", "Europe/London", "Europe/Berlin", "Australia/Sydney")
CHUNK = 1_000_000


@dataclass(frozen=True)
class Sizes:
    accounts: int
    events: int


def say_nothing(message: str) -> None:
    pass


def pg_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _micros(when: datetime) -> int:
    return int((when - PG_EPOCH).total_seconds() * 1_000_000)


# --- accounts and contacts --------------------------------------------------------------------

def _plans(rng: np.random.Generator, n: int) -> np.ndarray:
    names = np.array([p for p, _ in PLANS])
    return names[rng.choice(len(PLANS), size=n, p=[w for _, w in PLANS])]


def write_accounts(conn: psycopg.Connection, catalog: Catalog, n: int, now: datetime,
                   rng: np.random.Generator) -> np.ndarray:
    """Accounts 1..n (ids set here, the sequence moved past them) with a billing contact on SMS
    each and, for a third, a member on web chat. Returns the plans, by account index."""
    plans = _plans(rng, n)
    verticals = sorted(catalog.verticals)
    vertical = rng.integers(0, len(verticals), n)
    zone = rng.integers(0, len(TIMEZONES), n)
    billing = rng.integers(1, 29, n)
    since_days = rng.uniform(0, 400, n)
    opted_out = rng.random(n) < 0.02
    member = rng.random(n) < 0.33
    now_s = now.isoformat()
    with conn.cursor() as cur:
        with cur.copy("COPY accounts (id, external_id, name, plan, vertical, timezone, billing_day,"
                      " plan_since, open_escalations, created_at, updated_at) FROM STDIN") as copy:
            for i in range(n):
                since = (now - timedelta(days=float(since_days[i]))).isoformat()
                copy.write(f"{i + 1}\tacct-{i + 1:07d}\tAccount {i + 1}\t{plans[i]}\t"
                           f"{verticals[vertical[i]]}\t{TIMEZONES[zone[i]]}\t{billing[i]}\t"
                           f"{since}\t0\t{since}\t{now_s}\n")
        with cur.copy("COPY contacts (id, account_id, external_id, position, name, role, phone,"
                      " email, web_user_id, opted_out_at) FROM STDIN") as copy:
            cid = 0
            for i in range(n):
                cid += 1
                out = now_s if opted_out[i] else "\\N"
                copy.write(f"{cid}\t{i + 1}\tc-{i + 1}-1\t0\tBilling {i + 1}\tbilling\t"
                           f"+1415{2_000_000 + i:07d}\tbilling{i + 1}@example.com\t\\N\t{out}\n")
                if member[i]:
                    cid += 1
                    copy.write(f"{cid}\t{i + 1}\tc-{i + 1}-2\t1\tMember {i + 1}\tmember\t\\N\t"
                               f"\\N\tuser-{i + 1}\t\\N\n")
        cur.execute("SELECT setval('accounts_id_seq', %s), setval('contacts_id_seq', %s)",
                    (n, cid))
    return plans


# --- usage events -----------------------------------------------------------------------------

def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal text of non-negative integers, as a fixed-width bytes array."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = (v % 10) + 48
        v //= 10
    return out.view(f"S{width}").reshape(-1)


def _binary_rows(seq: np.ndarray, account: np.ndarray, metric: bytes, quantity: np.ndarray,
                 at: np.ndarray) -> bytes:
    """COPY BINARY tuples (seq, event_id, account_id, metric, quantity, at, received_at) for
    events of one metric (a fixed-width row, so numpy builds them all at once)."""
    n = len(seq)
    dtype = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("seq", ">i8"), ("l2", ">i4"),
                      ("eid", "S12"), ("l3", ">i4"), ("acc", ">i8"), ("l4", ">i4"),
                      ("metric", f"S{len(metric)}"), ("l5", ">i4"), ("q", ">i8"), ("l6", ">i4"),
                      ("at", ">i8"), ("l7", ">i4"), ("rat", ">i8")])
    rows = np.empty(n, dtype=dtype)
    rows["nf"] = 7
    rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 8, 12, 8, len(metric)
    rows["l5"], rows["l6"], rows["l7"] = 8, 8, 8
    rows["seq"] = seq
    ids = np.empty((n, 12), dtype=np.uint8)
    ids[:, 0], ids[:, 1] = ord("e"), ord("v")
    ids[:, 2:] = _digits(seq, 10).view(np.uint8).reshape(n, 10)
    rows["eid"] = ids.view("S12").reshape(-1)
    rows["acc"] = account
    rows["metric"] = metric
    rows["q"] = quantity
    rows["at"] = at
    rows["rat"] = at + 30_000_000  # received 30 s later
    return rows.tobytes()


def _spread(rng: np.random.Generator, weights: np.ndarray, total: int) -> np.ndarray:
    """Whole counts per account adding up to `total`, in proportion to `weights`."""
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[rng.choice(len(counts), size=short, replace=False, p=share / share.sum())] += 1
    return counts


def usage_plan(catalog: Catalog, plans: np.ndarray, events: int, now: datetime,
               rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per metric: account ids, quantities and times (µs since 2000) of every event, `events`
    in all. Gauges: seats twice (a reading and a later change), integrations once; features:
    a few hits on some accounts; messages: the rest, each account's monthly volume drawn per
    plan and spread over its events."""
    n = len(plans)
    ids = np.arange(1, n + 1, dtype=np.int64)
    end, span = _micros(now) - 60_000_000, DAYS * 86_400 * 1_000_000

    def times(k: int) -> np.ndarray:
        return end - rng.integers(0, span, k)

    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    per_plan = {p: plans == p for p, _ in PLANS}

    def level(table: dict[str, float]) -> np.ndarray:
        mean = np.zeros(n)
        for p, mask in per_plan.items():
            mean[mask] = table[p]
        return mean

    seats = np.concatenate([np.maximum(1, rng.poisson(level(SEATS_MEAN))),
                            np.maximum(1, rng.poisson(level(SEATS_MEAN)))])
    out["seats"] = (np.concatenate([ids, ids]), seats, times(2 * n))
    out["integrations"] = (ids, rng.poisson(level(INTEGRATIONS_MEAN)), times(n))
    # Locked features tried (Starter: workflows, api_access; Growth: sso) and included ones used.
    feature_rows: list[tuple[str, np.ndarray]] = []
    for feature, plan, share in (("workflows", "starter", 0.10), ("api_access", "starter", 0.05),
                                 ("sso", "growth", 0.08), ("workflows", "growth", 0.60),
                                 ("audit_export", "scale", 0.40)):
        chosen = ids[per_plan[plan] & (rng.random(n) < share)]
        feature_rows.append((feature, np.repeat(chosen, rng.integers(1, 6, len(chosen)))))
    for feature in sorted({f for f, _ in feature_rows}):
        accounts = np.concatenate([a for f, a in feature_rows if f == feature])
        out[f"feature:{feature}"] = (accounts, np.ones(len(accounts), dtype=np.int64),
                                     times(len(accounts)))
    rest = events - sum(len(a) for a, _, _ in out.values())
    if rest < n:
        raise ValueError(f"{events:,} events are too few for {n:,} accounts (need {n * 4:,})")
    monthly = np.exp(np.log(level(MESSAGES_MEDIAN)) + 0.8 * rng.standard_normal(n))
    counts = _spread(rng, rng.uniform(0.3, 1.7, n), rest)
    counts = np.maximum(counts, 0)
    accounts = np.repeat(ids, counts)
    each = np.maximum(1, np.round(monthly * DAYS / 30 / np.maximum(counts, 1))).astype(np.int64)
    out["messages"] = (accounts, np.repeat(each, counts), times(len(accounts)))
    return out


def write_events(conn: psycopg.Connection, usage: dict[str, tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]],
                 say: Callable[[str], None] = say_nothing) -> int:
    """COPY every event, in time order a chunk (CHUNK rows) at a time; seq follows the order
    written. Returns how many."""
    metric = np.concatenate([np.full(len(a), i, dtype=np.int16)
                             for i, (a, _, _) in enumerate(usage.values())])
    names = [m.encode() for m in usage]
    account = np.concatenate([a for a, _, _ in usage.values()])
    quantity = np.concatenate([q for _, q, _ in usage.values()])
    at = np.concatenate([t for _, _, t in usage.values()])
    order = np.argsort(at, kind="stable")
    total = len(order)
    seq = 0
    started = time.monotonic()
    with conn.cursor() as cur:
        with cur.copy("COPY usage_events (seq, event_id, account_id, metric, quantity, at,"
                      " received_at) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
            for start in range(0, total, CHUNK):
                part = order[start:start + CHUNK]
                for i, name in enumerate(names):
                    rows = part[metric[part] == i]
                    if len(rows) == 0:
                        continue
                    copy.write(_binary_rows(np.arange(seq + 1, seq + 1 + len(rows)),
                                            account[rows], name, quantity[rows], at[rows]))
                    seq += len(rows)
                rate = seq / max(time.monotonic() - started, 1e-9)
                say(f"  events: {seq:,} of {total:,} ({rate:,.0f}/s)")
            copy.write(struct.pack(">h", -1))
        cur.execute("SELECT setval('usage_events_seq_seq', %s)", (seq,))
    return seq


# --- derived tables ---------------------------------------------------------------------------

def _index_definitions(conn: psycopg.Connection, table: str) -> list[str]:
    """The table's constraints and other indexes, as statements that make them again (primary
    and unique keys before foreign keys)."""
    constraints = [f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
                   for name, definition in conn.execute(
                       "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE conrelid = %s::regclass ORDER BY contype DESC", (table,))]
    indexes = [definition for (definition,) in conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN"
        " (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", (table, table))]
    return constraints + indexes


def without_indexes(conn: psycopg.Connection, table: str, fill: Callable[[], object]) -> None:
    """Run `fill` with the table's keys and indexes dropped, then make them again: a bulk load
    builds each index once, sorted, instead of inserting into it row by row."""
    rebuild = _index_definitions(conn, table)
    for statement in rebuild:
        if statement.startswith("ALTER TABLE"):
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {statement.split()[5]}")
        else:
            conn.execute(f"DROP INDEX IF EXISTS {statement.split(' INDEX ', 1)[1].split()[0]}")
    fill()
    conn.commit()
    for statement in rebuild:
        conn.execute(statement)
        conn.commit()


def _usage_daily(conn: psycopg.Connection, now: datetime, catalog: Catalog) -> None:
    without_indexes(conn, "usage_daily", lambda: conn.execute("""
        INSERT INTO usage_daily (account_id, metric, day, total, max_quantity, last_quantity,
                                 last_at)
        SELECT account_id, metric, day, sum(quantity), max(quantity),
               (array_agg(quantity ORDER BY at DESC, seq DESC))[1], max(at)
        FROM (SELECT account_id, metric, (at AT TIME ZONE 'UTC')::date AS day, quantity, at, seq
              FROM usage_events) e
        GROUP BY account_id, metric, day
        -- in day order, as ingestion adds them (a day's first event makes its row): an
        -- account's rollups are spread over the table, not side by side
        ORDER BY day, account_id, metric"""))


def _plan_history(conn: psycopg.Connection, now: datetime, catalog: Catalog) -> None:
    """Every account's first plan; the Growth accounts that moved there in the last 90 days came
    from Starter, a third of them through a conversation (an opportunity the metrics count: a
    signal, a thread upgraded, its messages, the plan change), the rest by an operator."""
    conn.execute("""
        INSERT INTO plan_history (account_id, from_plan, to_plan, at, source)
        SELECT id, NULL, CASE WHEN plan = 'growth' AND plan_since > %(start)s THEN 'starter'
                              ELSE plan END,
               created_at - interval '400 days', 'backfill'
        FROM accounts""", {"start": now - timedelta(days=DAYS)})
    conn.execute("""
        CREATE TEMP TABLE scale_upgraded AS
        SELECT id AS account_id, plan_since AS at, (id %% 3 = 0) AS in_chat FROM accounts
        WHERE plan = 'growth' AND plan_since > %(start)s""", {"start": now - timedelta(days=DAYS)})
    conn.execute("""
        INSERT INTO threads (account_id, contact_id, current_plan, target_plan, direction, state,
                             last_channel, opened_at, updated_at, closed_at, initiated_by)
        SELECT u.account_id, c.id, 'growth', 'growth', 'up', 'upgraded', 'sms',
               u.at - interval '2 days', u.at, u.at, 'business'
        FROM scale_upgraded u JOIN contacts c ON c.account_id = u.account_id AND c.position = 0
        WHERE u.in_chat""")
    conn.execute("""
        INSERT INTO plan_changes (account_id, thread_id, idempotency_key, from_plan, to_plan,
                                  direction, period_start, effective, charge_today, status,
                                  channel, requested_at, applied_at)
        SELECT t.account_id, t.id, 'scale-' || t.id, 'starter', 'growth', 'up',
               (t.closed_at AT TIME ZONE 'UTC')::date, (t.closed_at AT TIME ZONE 'UTC')::date,
               105.00, 'done', 'sms', t.closed_at, t.closed_at
        FROM threads t WHERE t.state = 'upgraded'""")
    conn.execute("""
        INSERT INTO plan_history (account_id, from_plan, to_plan, at, source, plan_change_id)
        SELECT u.account_id, 'starter', 'growth', u.at,
               CASE WHEN p.id IS NULL THEN 'operator' ELSE 'conversation' END, p.id
        FROM scale_upgraded u LEFT JOIN plan_changes p ON p.account_id = u.account_id""")
    conn.execute("""
        INSERT INTO signals (account_id, key, direction, from_plan, to_plan, metric, value,
                             threshold, crossed_at, detected_at, outcome, thread_id)
        SELECT t.account_id, 'starter->growth:messages', 'up', 'starter', 'growth', 'messages',
               4600, 4500, t.opened_at - interval '1 minute', t.opened_at, 'prompted', t.id
        FROM threads t WHERE t.state = 'upgraded'""")


def threshold_states(conn: psycopg.Connection, url: str, catalog: Catalog, now: datetime,
                     batch: int = 5_000) -> int:
    """The keys each account is at or above now (threshold_states), from its usage matrix as
    the storage reads it (`SqlUsageRepository.matrices`) and the core's own evaluation, as
    ingestion would have left them; the crossings they stand for go to `scale_crossings` for
    the signals and threads that follow. Returns how many keys."""
    from sqlalchemy.orm import Session

    from storage.db import make_engine
    from storage.repositories import SqlUsageRepository

    conn.execute("""CREATE TABLE IF NOT EXISTS scale_crossings (
        account_id bigint, key text, direction text, from_plan text, to_plan text, metric text,
        value numeric, threshold numeric)""")
    engine = make_engine(url)
    keys = 0
    try:
        after = 0
        while True:
            rows = conn.execute("SELECT id, plan, plan_since FROM accounts WHERE id > %s"
                                " ORDER BY id LIMIT %s", (after, batch)).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            with Session(engine) as session:
                matrices = SqlUsageRepository(session).matrices([r[0] for r in rows], now)
            states = []
            crossings = []
            for account_id, plan_name, plan_since in rows:
                plan = catalog.plan(plan_name)
                up, above = evaluate_up(catalog, plan, matrices[account_id], frozenset(), now)
                down, above = evaluate_down(catalog, plan, matrices[account_id], above,
                                            plan_since, now, now)
                states.extend((account_id, k) for k in sorted(above))
                crossings.extend((account_id, c) for c in up + down)
            with conn.cursor() as cur:
                with cur.copy("COPY threshold_states (account_id, key, changed_at)"
                              " FROM STDIN") as copy:
                    for account_id, key in states:
                        copy.write_row((account_id, key, now))
                with cur.copy("COPY scale_crossings FROM STDIN") as copy:
                    for account_id, c in crossings:
                        copy.write_row((account_id, c.key, c.direction, c.from_plan, c.to_plan,
                                        c.metric, c.value, c.threshold))
            keys += len(states)
    finally:
        engine.dispose()
    return keys


def _conversations(conn: psycopg.Connection, now: datetime, catalog: Catalog) -> None:
    """Signals for the crossings that stand now (crossed in the last 85 days), and for each
    account's first up-tier one a thread: expired, declined or still live (open or offered), or
    none for the control cohort (a tenth, by id); the opening that went out, and for declined
    and offered threads the buyer's reply and ours."""
    conn.execute("""
        CREATE TEMP TABLE scale_first AS
        SELECT DISTINCT ON (c.account_id) c.account_id, c.key, c.from_plan, c.to_plan,
               %(now)s::timestamptz - (interval '1 minute' * (1 + (c.account_id * 7919) %% 122400))
                 AS detected_at,
               (c.account_id %% 10 = 7) AS control,
               (ARRAY['expired', 'expired', 'declined', 'offered', 'open'])
                 [1 + (c.account_id / 10) %% 5] AS state
        FROM scale_crossings c WHERE c.direction = 'up'
        ORDER BY c.account_id, c.key""", {"now": now})
    conn.execute("""
        INSERT INTO threads (account_id, contact_id, current_plan, target_plan, direction, state,
                             decline_reason, last_channel, opened_at, updated_at, closed_at,
                             initiated_by)
        SELECT f.account_id, c.id, f.from_plan, f.to_plan, 'up', f.state,
               CASE WHEN f.state = 'declined' THEN 'price' END, 'sms', f.detected_at,
               f.detected_at + interval '1 hour',
               CASE WHEN f.state IN ('expired', 'declined') THEN f.detected_at + interval '1 hour'
               END, 'business'
        FROM scale_first f JOIN contacts c ON c.account_id = f.account_id AND c.position = 0
        WHERE NOT f.control""")
    conn.execute("""
        INSERT INTO signals (account_id, key, direction, from_plan, to_plan, metric, value,
                             threshold, crossed_at, detected_at, outcome, reason, thread_id)
        SELECT c.account_id, c.key, c.direction, c.from_plan, c.to_plan, c.metric, c.value,
               c.threshold, coalesce(f.detected_at, %(now)s::timestamptz - interval '3 days'),
               coalesce(f.detected_at, %(now)s::timestamptz - interval '3 days'),
               CASE WHEN f.control THEN 'suppressed' WHEN f.key = c.key THEN 'prompted'
                    ELSE 'suppressed' END,
               CASE WHEN f.control THEN 'control' WHEN f.key = c.key THEN NULL
                    ELSE 'thread_open' END,
               t.id
        FROM scale_crossings c
        LEFT JOIN scale_first f ON f.account_id = c.account_id
        LEFT JOIN threads t ON t.account_id = c.account_id AND t.opened_at = f.detected_at
                           AND t.state <> 'upgraded'""", {"now": now})
    conn.execute("""
        INSERT INTO messages (thread_id, contact_id, channel, direction, kind, body, status, at,
                              attempts, sent_at, delivery_status)
        SELECT t.id, t.contact_id, 'sms', 'out', 'opening',
               'Beacon: You sent more messages than your plan includes. Reply YES for details.',
               CASE WHEN t.state = 'open' THEN 'queued' ELSE 'delivered' END, t.opened_at,
               CASE WHEN t.state = 'open' THEN 0 ELSE 1 END,
               CASE WHEN t.state = 'open' THEN NULL ELSE t.opened_at + interval '5 seconds' END,
               CASE WHEN t.state = 'open' THEN NULL ELSE 'delivered' END
        FROM threads t""")
    conn.execute("""
        INSERT INTO messages (thread_id, contact_id, channel, direction, kind, body, provider_id,
                              status, at)
        SELECT t.id, t.contact_id, 'sms', 'in', 'inbound', 'how much would it cost?',
               'SMscale' || t.id, 'received', t.opened_at + interval '20 minutes'
        FROM threads t WHERE t.state IN ('declined', 'offered', 'upgraded')""")
    conn.execute("""
        INSERT INTO messages (thread_id, contact_id, channel, direction, kind, body, status, at,
                              attempts, sent_at, delivery_status)
        SELECT t.id, t.contact_id, 'sms', 'out', 'reply',
               'Upgrading today costs $105.00 for the rest of this billing period.', 'delivered',
               t.opened_at + interval '21 minutes', 1, t.opened_at + interval '21 minutes',
               'delivered'
        FROM threads t WHERE t.state IN ('declined', 'offered', 'upgraded')""")


# Derived tables, in order: (what, how). Each reads only what the ones before it wrote.
DERIVATIONS: tuple[tuple[str, Callable[[psycopg.Connection, datetime, Catalog], None]], ...] = (
    ("usage_daily", _usage_daily),
    ("plan history, upgrades through conversations", _plan_history),
)


def derive(conn: psycopg.Connection, url: str, catalog: Catalog, now: datetime,
           say: Callable[[str], None] = say_nothing) -> None:
    """Every derived table, from the accounts and events: the SQL steps of DERIVATIONS, then the
    threshold state (the core's evaluation over the storage's matrices), then the signals,
    threads and messages of the crossings that state stands for."""
    for name, step in DERIVATIONS:
        started = time.monotonic()
        step(conn, now, catalog)
        conn.commit()
        say(f"  {name}: {time.monotonic() - started:.1f} s")
    conn.execute("ANALYZE")
    conn.commit()
    started = time.monotonic()
    engine = make_engine(url)  # the per-account usage rows, by the storage's own derivation
    with engine.begin() as sa_conn:
        rows = rebuild_usage_totals(sa_conn, now)
    engine.dispose()
    say(f"  usage rows: {rows:,}, {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    keys = threshold_states(conn, url, catalog, now)
    conn.commit()
    say(f"  threshold state: {keys:,} keys, {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    _conversations(conn, now, catalog)
    conn.execute("DROP TABLE scale_crossings")
    conn.commit()
    say(f"  signals, threads, messages: {time.monotonic() - started:.1f} s")
    conn.execute("ANALYZE")
    conn.commit()


# --- the whole population ---------------------------------------------------------------------

def generate(url: str, catalog: Catalog, sizes: Sizes, now: datetime, seed: int = 7,
             say: Callable[[str], None] = say_nothing) -> None:
    """Accounts and events (COPY) into the migrated, empty database at `url`, then `derive`."""
    rng = np.random.default_rng(seed)
    with psycopg.connect(pg_url(url)) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute("SET work_mem = '256MB'")
        started = time.monotonic()
        plans = write_accounts(conn, catalog, sizes.accounts, now, rng)
        conn.commit()
        say(f"  accounts and contacts: {sizes.accounts:,}, {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        usage = usage_plan(catalog, plans, sizes.events, now, rng)
        without_indexes(conn, "usage_events", lambda: write_events(conn, usage, say))
        say(f"  usage events with their indexes: {sum(len(a) for a, _, _ in usage.values()):,},"
            f" {time.monotonic() - started:.1f} s")
        del usage, plans
        derive(conn, url, catalog, now, say)
    with psycopg.connect(pg_url(url), autocommit=True) as conn:
        started = time.monotonic()
        conn.execute("VACUUM ANALYZE")
        say(f"  vacuum analyze: {time.monotonic() - started:.1f} s")
