"""`flask --app app simulate`: the simulation with known truth (devtools/simulation.py).

It runs in an app of its own, built by the composition root's factory with the simulated clock
as its CLOCK, sandbox channels (whatever the environment says: nothing leaves the machine), the
control cohort's salt per seed, and a fresh database: a SQLite file in a temp folder (removed at
the end), or `--database-url`, which must be empty (no schema yet) so a simulation can never
write into a database that holds real accounts. The operator's own app only records the
command in its audit trail.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url

from cli.audit import audited_command
from cli.audit import note as audit_note
from devtools import simulation
from storage import migrate
from storage.db import make_engine
from web.http import runtime

FACTORY = "upgrade_chat_factory"  # app.extensions: create_app, set by the composition root
# Outward settings a simulation never uses, whatever the environment says (sandbox only).
OFF = ("TWILIO_ACCOUNT_SID", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_CHANNEL",
       "BILLING_WEBHOOK_URL", "BILLING_WEBHOOK_SECRET", "OPERATOR_URL", "DATABASE_REPLICA_URL")


@click.command("simulate", help="Run a synthetic population with a known true lift through the "
                                "service (simulated clock, sandbox channels, a fresh database) "
                                "and compare the lift the metrics measure with it.")
@click.option("--accounts", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=180, show_default=True, type=click.IntRange(1, 3650),
              help="Days of usage whose crossings are measured (the clock runs 30 more so "
                   "every conversion window closes).")
@click.option("--true-lift", default=0.08, show_default=True, type=click.FloatRange(0, 1),
              help="X: the chat adds X to every opportunity's conversion probability.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--control-share", default="0.10", show_default=True,
              help="The control cohort's share (the service's CONTROL_SHARE).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here.")
@click.option("--database-url", help="An empty database to run in (default: a SQLite file in a "
                                     "temp folder, removed at the end).")
@with_appcontext
@audited_command("simulation.run", "simulation", lambda kw: f"seed {kw['seed']}")
def simulate_cli(accounts: int, days: int, true_lift: float, seed: int, control_share: str,
                 report_path: Path | None, database_url: str | None) -> None:
    runtime().prepare_database()  # the operator's database: where this command is recorded
    try:
        share = Decimal(control_share)
    except ArithmeticError:
        raise click.BadParameter(f"{control_share!r} is not a number",
                                 param_hint="--control-share") from None
    params = simulation.Params(accounts, days, true_lift, seed, share)
    result = run(params, database_url, progress=True)
    audit_note(accounts=accounts, days=days, opportunities=sum(
        result["measured"]["opportunities"].values()))
    click.echo(summary(result))
    if report_path is not None:
        report_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        click.echo(f"report: {report_path}")


def run(params: simulation.Params, database_url: str | None = None, *,
        progress: bool = False) -> dict[str, Any]:
    """One simulation in an app of its own; the report (with `seconds`, the run's time)."""
    factory = current_app.extensions[FACTORY]
    shm = Path("/dev/shm")  # in memory where there is one: no disk syncs per commit
    folder = Path(tempfile.mkdtemp(prefix="upgrade-chat-sim-",
                                   dir=shm if shm.is_dir() and database_url is None else None))
    url = database_url or f"sqlite:///{folder / 'simulation.sqlite3'}"
    # The service's INFO lines (a thousand a simulated day) and the sandbox CSM lane's
    # escalation notices (WARNING, for an operator to see): not here. Errors still show.
    quiet = {logging.getLogger(): logging.WARNING, logging.getLogger("channels.slack"):
             logging.ERROR}
    levels = {logger: logger.level for logger in quiet}
    for logger, level in quiet.items():
        logger.setLevel(level)
    try:
        return _run(params, url, folder, database_url, factory, progress)
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
        shutil.rmtree(folder, ignore_errors=True)


def _run(params: simulation.Params, url: str, folder: Path, database_url: str | None,
         factory: Any, progress: bool) -> dict[str, Any]:
    _check_empty(url)
    clock = simulation.Clock(params.start)
    app = factory({
        "DATABASE_URL": url, "INSTANCE_PATH": str(folder / "instance"),
        "SPOOL_DIR": str(folder / "spool"), "API_KEY": "simulation-not-served", "CLOCK": clock,
        "CONTROL_SHARE": str(params.control_share), "CONTROL_SALT": params.salt,
        "AUTO_MIGRATE": False, "DEMO": False, "MESSAGE_RETENTION_DAYS": 0,
        "CATALOG_PATH": current_app.config.get("CATALOG_PATH"),
        **{key: None for key in OFF}})
    rt = app.extensions["upgrade_chat"]
    started = time.perf_counter()
    try:
        migrate.upgrade(rt.engine)
        with app.app_context():
            from cli import run_jobs

            def scheduler_pass() -> None:
                while _full(run_jobs(rt)):  # a pass sends 100 at most: again until done
                    pass

            total = params.days + params.follow_up_days
            if progress:
                with click.progressbar(length=total, label="simulating days", show_pos=True,
                                       show_eta=True) as bar:
                    result = simulation.run(rt, clock, params, scheduler_pass,
                                            lambda day: bar.update(1))
            else:
                result = simulation.run(rt, clock, params, scheduler_pass)
    except simulation.BadParams as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        rt.engine.dispose()
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["database"] = "temporary SQLite (removed)" if database_url is None else \
        make_url(database_url).render_as_string(hide_password=True)
    return result


def _check_empty(url: str) -> None:
    engine = make_engine(url)
    try:
        if migrate.current_revision(engine) is not None:
            raise click.ClickException("--database-url: that database has a schema already; a "
                                       "simulation runs only in an empty database")
    finally:
        engine.dispose()


def _full(summary: str) -> bool:
    from cli import OUTBOX_BATCH, OUTBOX_BATCHES

    found = re.search(r"outbox: (\d+) sent, (\d+) to retry, (\d+) failed, (\d+) cancelled",
                      summary)
    return found is not None and sum(map(int, found.groups())) >= OUTBOX_BATCH * OUTBOX_BATCHES


def summary(r: dict[str, Any]) -> str:
    """The report as the command prints it."""
    p, m, t = r["params"], r["measured"], r["truth"]
    lift = m["lift"]
    ci = lift["ci95"]
    measured = "n/a" if lift["absolute"] is None else f"{lift['absolute']:+.4f}"
    interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else f"none ({lift['note']})"
    covers = {True: "yes", False: "NO", None: "n/a"}[r["covers_true_lift"]]
    srm = m["srm"]
    srm_p = "n/a" if srm["p_value"] is None else f"{srm['p_value']:.3f}"
    lines = [
        f"simulation: {p['accounts']:,} accounts, {p['days']} days (+{p['follow_up_days']} "
        f"to close the conversion windows), seed {p['seed']}, control share "
        f"{p['control_share']}",
        f"window of crossings: {r['window']['from'][:10]} to {r['window']['to'][:10]}, "
        f"conversion within {r['window']['conversion_days']} days",
        "",
        f"{'arm':<10} {'opportunities':>13} {'converted':>9} {'rate':>8}   "
        f"(truth: self-serve + chat)",
    ]
    for arm in ("treatment", "control"):
        rate = m["rate"][arm]
        lines.append(f"{arm:<10} {m['opportunities'][arm]:>13,} {m['converted'][arm]:>9,} "
                     f"{'n/a' if rate is None else f'{rate:.4f}':>8}   "
                     f"({t['self_serve'][arm]:,} + {t['chat'][arm]:,})")
    lines += [
        "",
        f"true lift      : {p['true_lift']:+.4f}" + (
            f"   (effective, {t['treatment_reached']:,} of {t['opportunities']['treatment']:,} "
            f"treatment opportunities reached: {t['effective_true_lift']:+.4f})"
            if t["held_back"] else ""),
        f"measured lift  : {measured}   95% interval {interval}",
        f"covers the truth: {covers}",
        f"sample ratio   : p = {srm_p} ({'FLAGGED' if srm['flag'] else 'ok'}; expected "
        f"control share "
        f"{srm['expected_control_share']:.2f})",
        f"held back      : {t['held_back'] or 'none'}; chat confirmations that did not "
        f"upgrade: {t['chat_failed']}",
        f"run time       : {r['seconds']:.1f} s ({r['population']['usage_events']:,} usage "
        f"events)",
    ]
    return "\n".join(lines)
