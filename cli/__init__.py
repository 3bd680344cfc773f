"""Operator commands under `flask --app app ...`: migrations, demo data, CSV usage import, a
contact's erasure, the background jobs, a catalog's thresholds tried on past usage.

create_app touches no database, so a command that uses one first makes it usable
(`Runtime.prepare_database`: the instance folder of the default SQLite file, and the migration
AUTO_MIGRATE asks for, on by default on SQLite), exactly as start-up used to for every command.
`flask --app app init` (app.py) is the explicit start step.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
import time
from functools import partial
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from core import dryrun, erasure, handlers, reevaluation, retention, services
from core.errors import CatalogError, DomainError, NotFound
from core.ports import StorageUnavailable
from web.inputs import parse_events
from web.spool import Spool
from channels.twilio_messaging import replay_spool
from storage import migrate
from storage.db import database_unreachable, is_sqlite
from storage.scheduler_lock import SchedulerLock
from web.catalog_file import load_catalog
from web.http import runtime
from web.logs import describe
from cli.audit import audit_cli, audited_command
from cli.operators import operators_cli
from cli.audit import note as audit_note
from core.audit import pseudonym

CSV_COLUMNS = ("id", "account", "metric", "quantity", "at")
log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    app.cli.add_command(db)
    app.cli.add_command(demo_cli)
    app.cli.add_command(usage_cli)
    app.cli.add_command(contacts_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(scheduler_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(thresholds_cli)
    app.cli.add_command(operators_cli)
    from cli.simulate import simulate_cli

    app.cli.add_command(simulate_cli)



@click.group(cls=AppGroup, help="Database schema (Alembic migrations).")
def db() -> None:
    pass


@db.command("upgrade", help="Migrate the database to the newest schema (run before deploying).")
@click.option("--revision", default="head", show_default=True)
@audited_command("schema.upgrade", "database", lambda kw: kw["revision"])
def db_upgrade(revision: str) -> None:
    runtime().prepare_database(schema=False)
    engine = runtime().engine
    before = migrate.current_revision(engine)
    migrate.upgrade(engine, revision)
    click.echo(f"schema: {before or 'empty'} -> {migrate.current_revision(engine)}")


@db.command("current", help="Show the schema revision of the database and the newest one.")
@audited_command("schema.read", "database")
def db_current() -> None:
    runtime().prepare_database(schema=False)
    current = migrate.current_revision(runtime().engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs `flask --app app db upgrade`"
    click.echo(f"database: {current or 'empty'}; newest: {head} ({state})")


@click.group("demo", cls=AppGroup, help="Demo accounts.")
def demo_cli() -> None:
    pass


@demo_cli.command("load", help="Load or refresh the demo accounts and their usage.")
@audited_command("demo.load", "accounts")
def demo_load() -> None:
    from devtools import demo

    runtime().prepare_database()
    n = demo.load(runtime())
    click.echo(f"loaded {n} demo accounts")


@demo_cli.command("reset", help="Replay the demo from scratch: remove the demo accounts and "
                                "everything of theirs (usage, signals, threads, messages, "
                                "escalations, calls, plan history, their outbox jobs), then load "
                                "them again as of now, so their openings arrive anew. Other "
                                "accounts are never touched; the audit trail is kept. Runs only "
                                "in sandbox mode on the embedded SQLite database, unless --yes.")
@click.option("--yes", is_flag=True,
              help="Run it on another database too (PostgreSQL, or with Twilio configured): the "
                   "accounts with the demo's ids there are deleted, with all their data.")
@audited_command("demo.reset", "accounts")
def demo_reset(yes: bool) -> None:
    from devtools import demo

    app = current_app
    embedded = bool(app.config["SANDBOX"]) and is_sqlite(app.config["DATABASE_URL"])
    if not embedded:
        where = ("not in sandbox mode (Twilio is configured)" if not app.config["SANDBOX"]
                 else "not on the embedded SQLite database")
        warning = (f"demo reset deletes the accounts {', '.join(demo.ids())} and everything of "
                   f"theirs (usage, conversations, plan history, outbox jobs); this service is "
                   f"{where}")
        if not yes:
            raise click.ClickException(f"{warning}. If those accounts are demo data here too, "
                                       f"run it again with --yes.")
        click.echo(f"warning: {warning}; going ahead (--yes).", err=True)
    rt = runtime()
    rt.prepare_database()
    removed, loaded = demo.reset(rt)
    audit_note(**{name.replace(" ", "_"): n for name, n in removed.items()}, loaded=loaded)
    accounts = removed.pop("accounts", 0)
    details = ", ".join(f"{n} {name}" for name, n in removed.items())
    click.echo(f"removed {accounts} demo accounts" + (f": {details}" if details else "")
               + " (the audit trail is kept)")
    click.echo(f"loaded {loaded} demo accounts as of {rt.now():%Y-%m-%d %H:%M UTC}; their "
               f"openings go out with the next jobs run (the embedded service's: within seconds)")


@click.group("usage", cls=AppGroup, help="Usage events.")
def usage_cli() -> None:
    pass


@usage_cli.command("import", help="Import usage events from a CSV file with columns "
                                  "id,account,metric,quantity,at (a header row).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@audited_command("usage.import", "file", lambda kw: kw["path"].name)
def usage_import(path: Path, batch_size: int) -> None:
    """Batches are all-or-nothing and ids are idempotent: after fixing a bad row, run it again."""
    rt = runtime()
    rt.prepare_database()
    total_rows = _count_rows(path)
    accepted = duplicates = signals = 0
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise click.ClickException(f"{path}: header lacks column(s) {', '.join(missing)}; "
                                       f"expected {','.join(CSV_COLUMNS)}")
        with click.progressbar(length=total_rows, label=f"importing {path.name}",
                               show_pos=True, show_eta=True) as bar:
            batch, lines = [], []
            for row in reader:
                batch.append(row)
                lines.append(reader.line_num)
                if len(batch) == batch_size:
                    a, d, s = _import_batch(rt, path, batch, lines)
                    accepted, duplicates, signals = accepted + a, duplicates + d, signals + s
                    bar.update(len(batch))
                    batch, lines = [], []
            if batch:
                a, d, s = _import_batch(rt, path, batch, lines)
                accepted, duplicates, signals = accepted + a, duplicates + d, signals + s
                bar.update(len(batch))
    click.echo(f"{accepted} events imported, {duplicates} duplicates skipped, "
               f"{signals} thresholds crossed")


def _count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return max(0, sum(1 for _ in f) - 1)


def _import_batch(rt, path: Path, rows: list[dict], lines: list[int]) -> tuple[int, int, int]:
    try:
        result = services.record_usage(rt.uow(), rt.catalog, parse_events(rows, "rows"), rt.now(),
                                       rt.settings)
    except DomainError as exc:
        where = f"line {lines[exc.index]}" if exc.index is not None else "a row"
        raise click.ClickException(
            f"{path}: {where}: {exc.message}. Nothing of this batch was stored; earlier batches "
            f"were. Fix the row and run the import again (ids already stored are skipped).") from None
    return result.accepted, result.duplicates, len(result.crossings)


@usage_cli.command("pull", help="Pull usage from the sources of the USAGE_SOURCES file, each "
                                "from its saved cursor, through the same ingestion as the API "
                                "(ids <source>:<id>). A source that fails is reported with the "
                                "row and the reason; its cursor stays before that row, the "
                                "others go on, and the command exits non-zero.")
@click.option("--source", "name", default=None, metavar="NAME", help="Only this source.")
@audited_command("usage.pull", "source", lambda kw: kw["name"] or "all")
def usage_pull(name: str | None) -> None:
    from cli.pull import pull_source

    rt = runtime()
    sources = rt.usage_sources
    if not sources:
        click.echo("no usage sources: set USAGE_SOURCES (UPGRADE_CHAT_USAGE_SOURCES) to a "
                   "sources file (see usage_sources.example.toml)")
        return
    if name is not None and name not in sources:
        raise click.ClickException(f"no source {name!r} in {current_app.config['USAGE_SOURCES']}"
                                   f"; it has {', '.join(sources)}")
    rt.prepare_database()
    reports = []
    for source in ([sources[name]] if name else sources.values()):
        with click.progressbar(length=0, label=f"pulling {source.name}", show_pos=True,
                               file=sys.stderr) as bar:
            def total(n: int, bar=bar) -> None:
                bar.length = n
            reports.append(pull_source(rt, source, on_total=total, progress=bar.update))
        click.echo(reports[-1].line())
    audit_note(sources=len(reports), ingested=sum(r.ingested for r in reports),
               failed=sum(1 for r in reports if r.error))
    failed = [r.source for r in reports if r.error]
    if failed:
        raise click.ClickException(f"usage pull failed for {', '.join(failed)}; the other "
                                   f"sources were pulled")


@click.group("contacts", cls=AppGroup, help="Contacts: erasing a buyer's personal data.")
def contacts_cli() -> None:
    pass


@contacts_cli.command("erase", help="Erase a contact's personal data (name, numbers, web user "
                                    "id, email, every message body of their conversations, "
                                    "what waits in the outbox and the inbound spool for them), "
                                    "keeping the counts; the contact gets a pseudonym, printed. "
                                    "Running it again says it was done already.")
@click.argument("contact_external_id")
@audited_command("contacts.erase", "contact", lambda kw: pseudonym(kw["contact_external_id"]))
def contacts_erase(contact_external_id: str) -> None:
    rt = runtime()
    rt.prepare_database()
    try:
        result = erasure.erase_contact(rt.uow(), Spool.for_app(current_app), contact_external_id,
                                       rt.now())
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    audit_note(**erasure.counts(result))
    if result.already_erased:
        click.echo(f"contact {result.contact}: already erased on "
                   f"{result.erased_at.strftime('%Y-%m-%d %H:%M UTC')}; nothing to do")
        return
    click.echo(f"contact erased; it is {result.contact} now: "
               f"{result.messages_blanked} message bodies blanked, "
               f"{result.addresses_removed} addresses removed, "
               f"{result.jobs_cancelled} queued messages cancelled, "
               f"{result.threads_closed} live threads closed, "
               f"{result.escalations_redrawn} CSM cards to redraw, "
               f"{result.spool_entries_removed} spool entries removed")


@click.group("jobs", cls=AppGroup, help="Background work: outbox, plan changes, expiry, "
                                        "retention.")
def jobs_cli() -> None:
    pass


@jobs_cli.command("run", help="Run every background job once: send due outbox jobs (SMS and "
                              "WhatsApp through Twilio or the sandbox, webhooks, CSM notices), "
                              "apply due down-tier changes, expire stale offers, purge message "
                              "bodies older than MESSAGE_RETENTION_DAYS.")
@audited_command("jobs.run")
def jobs_run() -> None:
    runtime().prepare_database()
    click.echo(run_jobs(runtime()))


OUTBOX_BATCH = 50  # jobs a claim takes: the lease (5 min) must cover a batch of slow sends
OUTBOX_BATCHES = 2  # claims a pass makes at most (while they come back full)


def run_jobs(rt) -> str:
    """One pass of every periodic job; what the scheduler runs. The inbound spool first: its
    replies are queued, and go out with the outbox below in the same pass."""
    from cli.pull import pull_due

    spool = replay_spool(rt, Spool.for_app(current_app))
    # The sources that are due (USAGE_SOURCES): their crossings' openings go out below.
    pulled = pull_due(rt)
    stats = None
    if rt.dispatcher:
        for _ in range(OUTBOX_BATCHES):
            batch = rt.dispatcher.dispatch_due(limit=OUTBOX_BATCH)
            stats = batch if stats is None else stats + batch
            if batch.claimed < OUTBOX_BATCH:
                break
    applied = handlers.apply_due_plan_changes(rt.uow(), rt.now())
    expired = handlers.expire_threads(rt.uow(), rt.now())
    purged = retention.purge_expired_bodies(rt.uow, rt.message_retention, rt.now()) \
        if rt.message_retention else None
    outbox = (f"{stats.sent} sent, {stats.retried} to retry, {stats.failed} failed, "
              f"{stats.cancelled} cancelled"
              + (f", {stats.held} held (the provider refused the account or asked us to "
                 f"wait)" if stats.held else "")
              + (f", {stats.later} put off to the morning (quiet hours now)"
                 if stats.later else "")
              ) if stats else "off"
    spooled = f"spool: {spool.replayed} replayed" + (
        f", {spool.failed_left} waiting" if spool.failed_left else "") + (
        f", {spool.rejected} set aside" if spool.rejected else "")
    return ((f"{pulled}; " if pulled else "") +
            f"{spooled}; outbox: {outbox}; plan changes applied: {applied}; "
            f"threads expired: {expired}; bodies purged: {'off' if purged is None else purged}")


@click.command("scheduler", help="Run the background jobs every --every seconds, in the "
                                 "foreground. One runs per database: another started "
                                 "against it (on another host, for fail-over) waits and "
                                 "takes over when the first stops or dies.")
@click.option("--every", default=10, show_default=True, type=click.IntRange(1, 3600))
@audited_command("scheduler.run", at_start=True)
def scheduler_cli(every: int) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    app = current_app._get_current_object()
    runtime().prepare_database()
    lock = SchedulerLock(runtime().engine)
    if not lock.try_acquire():
        # Another scheduler runs against this database: wait for it to stop, never run twice.
        click.echo("scheduler: another scheduler is running against this database; waiting "
                   "for it to stop (checked every second)")
        while not _try_acquire_waiting(lock):
            time.sleep(1)
    scheduler = BlockingScheduler(timezone="UTC")
    schedule_jobs(scheduler, app, every, lock)
    click.echo(f"scheduler: running background jobs every {every} s (Ctrl+C to stop)")
    try:
        scheduler.start()
    finally:
        lock.release()


def schedule_jobs(scheduler, app, every: float, lock: SchedulerLock) -> None:
    """The one periodic job (`run_jobs`), as both schedulers run it. A pass runs only while
    this process holds the database's scheduler lock (the embedded service takes it when free,
    so a separate scheduler and it never both run). A pass that could not start on time (a
    stall, a deploy) runs late rather than never (misfire_grace_time=None), and passes missed
    meanwhile are one pass (coalesce): each pass does all the work that is due.

    While the database is unreachable (down, restarting, the network), a pass does nothing and
    says so once, then once more when the database is back: no traceback per tick, and the due
    work waits in the database, to go out on the first pass after. Each pass first checks the
    lock is still ours (a PostgreSQL session lock dies with its connection, storage/
    scheduler_lock.py): after an outage it is taken again, or left to the scheduler that took it
    first."""
    # Held from the start when the lock was taken before the first pass (the waiting loop):
    # an outage before that pass must still end in "another holds it now" if it was lost.
    state = {"down": False, "holding": lock.held}

    def tick() -> None:
        try:
            holding = lock.try_acquire()
            if state["down"]:
                state["down"] = False
                log.info("scheduler: the database is back; due work runs again")
            if state["holding"] and not holding:
                log.warning("scheduler: the scheduler lock went with its database connection "
                            "and another scheduler holds it now; waiting for it to stop")
            state["holding"] = holding
            if holding:
                _in_context(app)
        except Exception as exc:
            if not _unreachable(exc):
                raise
            if not state["down"]:
                state["down"] = True
                log.warning("scheduler: the database is unreachable (%s); due work waits in it "
                            "and runs once it is back (tried every %s s)", describe(exc), every)

    scheduler.add_job(tick, "interval", seconds=every, max_instances=1, coalesce=True,
                      misfire_grace_time=None, id="upgrade-chat-jobs")


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, StorageUnavailable) or database_unreachable(exc)


def _try_acquire_waiting(lock: SchedulerLock) -> bool:
    """A waiting scheduler's try: an unreachable database is one more "not yet", not a crash."""
    try:
        return lock.try_acquire()
    except Exception as exc:
        if not _unreachable(exc):
            raise
        return False


def _in_context(app) -> None:
    with app.app_context():
        summary = run_jobs(app.extensions["upgrade_chat"])
    if re.search(r"\b[1-9]", summary):  # a line only when a pass did something
        log.info(summary)


# --- thresholds dry-run -------------------------------------------------------------------------

class CatalogFileError(click.ClickException):
    """A catalog file that cannot be used: exit code 2, as a bad option."""

    exit_code = 2


@click.group("thresholds", cls=AppGroup, help="Thresholds: try a catalog's on past usage, or "
                                               "evaluate every account again after a change.")
def thresholds_cli() -> None:
    pass


@thresholds_cli.command("dry-run", help=(
    "How many prompts the thresholds of another catalog would have fired over the last --days "
    "days, next to the current catalog's; nothing is sent or written. Usage is replayed by UTC "
    "day: at the end of each day, counters are summed over the 30 whole UTC days ending that "
    "day and gauges are their last reading, as the detector computes them, on the plan the "
    "account was on that day. An account counts once per plan step it crossed into (the "
    "opportunity), up-tier and down-tier; accounts of the control cohort are counted and shown "
    "apart (they would have been logged, not prompted)."))
@click.option("--catalog", "catalog_path", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The catalog to try (validated as CATALOG_PATH is).")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650),
              help="How many days back, today the last of them.")
@click.option("--batch-size", default=dryrun.BATCH, show_default=True,
              type=click.IntRange(1, 10_000), help="Accounts read at a time.")
@audited_command("thresholds.dry_run", "catalog", lambda kw: kw["catalog_path"].name)
def thresholds_dry_run(catalog_path: Path, days: int, batch_size: int) -> None:
    try:
        new = load_catalog(catalog_path)
    except CatalogError as exc:
        raise CatalogFileError(f"{exc}. Nothing was replayed.") from None
    rt = runtime()
    rt.prepare_database()
    policy = rt.settings.policy
    total = dryrun.count_accounts(rt.uow(read_only=True))
    with click.progressbar(length=total, label="replaying accounts", show_pos=True,
                           file=sys.stderr) as bar:
        result = dryrun.dry_run(partial(rt.uow, read_only=True), rt.catalog, new,
                                policy.control_share, policy.control_salt, days, rt.now(),
                                batch=batch_size, progress=bar.update)
    current_path = current_app.config.get("CATALOG_PATH") or "core/catalog.toml"
    ranks = {**{n: p.rank for n, p in new.plans.items()},
             **{n: p.rank for n, p in rt.catalog.plans.items()}}
    click.echo(render_dry_run(result, str(catalog_path), str(current_path), policy.control_share,
                              ranks))
    audit_note(days=days, accounts=result.accounts, crossings_current=result.total.current,
               crossings_new=result.total.new)


@thresholds_cli.command("reevaluate", help=(
    "Evaluate every account's thresholds and the down-tier rule again, now, with the current "
    "catalog (CATALOG_PATH): run it after changing the catalog. What is met now and was not "
    "crosses as if usage had just arrived (signals, the guardrails, an opening queued in the "
    "outbox; the control cohort logged, not prompted); what is no longer met is re-armed. "
    "Being above a threshold's old level counts as being above its new one. Running it again "
    "changes nothing."))
@click.option("--batch-size", default=reevaluation.BATCH, show_default=True,
              type=click.IntRange(1, 10_000), help="Accounts read at a time.")
@audited_command("thresholds.reevaluate", "catalog",
                 lambda kw: Path(current_app.config.get("CATALOG_PATH") or "core/catalog.toml").name)
def thresholds_reevaluate(batch_size: int) -> None:
    rt = runtime()
    rt.prepare_database()
    now = rt.now()
    total = dryrun.count_accounts(rt.uow(read_only=True))
    with click.progressbar(length=total, label="re-evaluating accounts", show_pos=True,
                           file=sys.stderr) as bar:
        result = reevaluation.reevaluate_thresholds(
            rt.uow, partial(rt.uow, read_only=True), rt.catalog, now, rt.settings,
            batch=batch_size, progress=bar.update)
    click.echo(render_reevaluation(result))
    audit_note(accounts=result.accounts, changed=result.changed, crossings=result.crossings,
               keys_added=result.keys_added, keys_removed=result.keys_removed,
               keys_moved=result.keys_moved)


def render_reevaluation(result: reevaluation.Reevaluation) -> str:
    lines = [f"{result.accounts:,} accounts re-evaluated; {result.changed:,} changed: "
             f"{result.keys_added:,} thresholds now met, {result.keys_removed:,} re-armed or "
             f"dropped, {result.keys_moved:,} kept at a new level; {result.crossings:,} "
             f"crossings."]
    for label, n in sorted(result.decisions.items()):
        lines.append(f"  {label}: {n:,}")
    if result.unknown_plan:
        lines.append(f"{result.unknown_plan:,} accounts are on a plan the catalog does not have: "
                     f"left as they were.")
    return "\n".join(lines)


def render_dry_run(result: dryrun.DryRun, new_path: str, current_path: str, share,
                   ranks: dict[str, int]) -> str:
    """The dry run's two tables (by plan step, up-tier first in plan order; by vertical)."""
    head = ("", "current", "new", "difference", "in control (current/new)")

    def line(label: str, c: dryrun.Count) -> tuple[str, ...]:
        return (label, f"{c.current:,}", f"{c.new:,}", f"{c.difference:+,}" if c.difference
                else "0", f"{c.control_current:,}/{c.control_new:,}")

    def table(title: str, rows: list[tuple[str, ...]], totals: list[tuple[str, ...]]) -> list[str]:
        header = (title, *head[1:])
        widths = [max(len(r[i]) for r in [header, *rows, *totals]) for i in range(len(header))]

        def fmt(r: tuple[str, ...]) -> str:
            return "  ".join(v.ljust(w) if i in (0, 4) else v.rjust(w)
                             for i, (v, w) in enumerate(zip(r, widths))).rstrip()

        rule = "  ".join("-" * w for w in widths)
        out = [fmt(header), rule, *map(fmt, rows)]
        if totals:
            out += [rule, *map(fmt, totals)]
        return out

    steps = sorted(result.by_step.items(), key=lambda kv: (
        kv[0].direction != "up", ranks.get(kv[0].from_plan, 0), ranks.get(kv[0].to_plan, 0),
        kv[0].label))
    lines = [f"Thresholds dry run: {new_path} (new) against {current_path} (current)",
             f"{result.accounts:,} accounts replayed over {(result.last_day - result.first_day).days + 1} "
             f"days, {result.first_day} to {result.last_day} (UTC days; 30-day sums at the end "
             f"of each day). Nothing was sent or written.",
             "Accounts crossing into each plan step; an account counts once per step.", ""]
    lines += table("by plan step", [line(s.label, c) for s, c in steps],
                   [line("total (account-steps)", result.total),
                    line("accounts", result.accounts_crossing)])
    lines.append("")
    lines += table("by vertical", [line(v, c) for v, c in sorted(result.by_vertical.items())],
                   [line("total (account-steps)", result.total)])
    lines += ["", f"in control: accounts of the control cohort (CONTROL_SHARE {share}); their "
                  f"crossings are logged, not prompted."]
    for n, which in ((result.unknown_plan_current, "current"), (result.unknown_plan_new, "new")):
        if n:
            lines.append(f"{n:,} accounts were on a plan the {which} catalog does not have: "
                         f"those days were not replayed under it.")
    return "\n".join(lines)
