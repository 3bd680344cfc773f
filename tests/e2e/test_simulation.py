"""The simulation with known truth (devtools/simulation.py, `flask --app app simulate`): its
plumbing, not its statistics (bench/simulation.py measures those). A small population runs
through the service; the metrics must count exactly the opportunities and conversions the
simulation made, no opening may reach an opted-out buyer or a control account, every chat
upgrade must run once, and a seed must give the same result twice."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from app import create_app
from cli.simulate import run
from core.guardrails import in_control
from devtools.simulation import Params
from storage.db import make_engine
from tests.conftest import API_KEY

SMALL = Params(accounts=250, days=60, true_lift=0.08, seed=7)


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    """The operator's app the command runs under (its database only records the command)."""
    folder = tmp_path_factory.mktemp("operator")
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'operator.sqlite3'}",
                      "API_KEY": API_KEY, "INSTANCE_PATH": str(folder / "instance"),
                      "AUTO_MIGRATE": True})
    with app.app_context():
        app.extensions["upgrade_chat"].prepare_database()
    return app


@pytest.fixture(scope="module")
def simulated(operator, tmp_path_factory):
    """(report, engine on the simulation's database) of one small run."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sim') / 'sim.sqlite3'}"
    with operator.app_context():
        report = run(SMALL, url)
    engine = make_engine(url)
    yield report, engine
    engine.dispose()


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def test_the_metrics_count_the_first_crossings_and_the_upgrades_the_simulation_made(simulated):
    report, engine = simulated
    truth, measured = report["truth"], report["measured"]
    assert sum(truth["opportunities"].values()) > 40  # enough crossings to mean something
    assert measured["opportunities"] == truth["opportunities"]
    start = SMALL.start
    end = start + timedelta(days=SMALL.days)
    first = rows(engine, "SELECT account_id, MIN(detected_at) FROM signals WHERE direction = 'up' "
                         "GROUP BY account_id")
    in_window = [a for a, at in first if start.replace(tzinfo=None).isoformat(" ") <= str(at)
                 < end.replace(tzinfo=None).isoformat(" ")]
    assert len(in_window) == sum(measured["opportunities"].values())
    for arm in ("treatment", "control"):
        assert measured["converted"][arm] == truth["self_serve"][arm] + truth["chat"][arm]
    assert truth["chat"]["control"] == 0 and truth["chat"]["treatment"] > 0
    assert truth["self_serve"]["control"] + truth["self_serve"]["treatment"] > 0
    # Every treatment opportunity was reached and every would-be buyer's confirm upgraded.
    assert truth["held_back"] == {} and truth["chat_failed"] == 0
    assert truth["treatment_reached"] == truth["opportunities"]["treatment"]
    assert truth["chat"]["treatment"] == truth["would_take_if_asked"]["treatment"]


def test_every_chat_upgrade_ran_once(simulated):
    report, engine = simulated
    changes = rows(engine, "SELECT COUNT(*), COUNT(DISTINCT thread_id) FROM plan_changes "
                           "WHERE direction = 'up'")[0]
    upgraded = rows(engine, "SELECT COUNT(*) FROM threads WHERE state = 'upgraded'")[0][0]
    from_chat = rows(engine, "SELECT COUNT(*) FROM plan_history WHERE source = 'conversation'")
    assert changes[0] == changes[1] == upgraded == from_chat[0][0]
    assert upgraded >= report["truth"]["chat"]["treatment"] > 0


def test_no_opening_reached_an_opted_out_buyer_and_the_control_arm_got_no_prompt(simulated):
    report, engine = simulated
    opted_out = rows(engine, "SELECT id, opted_out_at FROM contacts "
                             "WHERE opted_out_at IS NOT NULL")
    assert opted_out, "the buyers' STOPs should have opted some out"
    late = rows(engine, "SELECT COUNT(*) FROM messages m JOIN contacts c ON c.id = m.contact_id "
                        "WHERE m.direction = 'out' AND m.kind = 'opening' "
                        "AND m.status IN ('sent', 'delivered') AND c.opted_out_at IS NOT NULL "
                        "AND m.sent_at > c.opted_out_at")
    assert late[0][0] == 0
    control = [(i, ext) for i, ext in rows(engine, "SELECT id, external_id FROM accounts")
               if in_control(ext, SMALL.control_share, SMALL.salt)]
    assert len(control) == report["population"]["control_accounts"] > 0
    ids = [i for i, _ in control]
    marks = ",".join(str(i) for i in ids)
    assert rows(engine, f"SELECT COUNT(*) FROM threads WHERE account_id IN ({marks})")[0][0] == 0
    assert rows(engine, "SELECT COUNT(*) FROM messages m JOIN contacts c ON c.id = m.contact_id "
                        f"WHERE c.account_id IN ({marks}) AND m.direction = 'out'")[0][0] == 0
    suppressed = rows(engine, "SELECT COUNT(*) FROM signals WHERE reason = 'control'")[0][0]
    assert suppressed >= report["measured"]["opportunities"]["control"] > 0


def test_the_same_seed_gives_the_same_result(operator):
    tiny = Params(accounts=80, days=30, true_lift=0.1, seed=3)
    with operator.app_context():
        one, two = run(tiny), run(tiny)
        other = run(Params(accounts=80, days=30, true_lift=0.1, seed=4))
    for r in (one, two, other):
        r.pop("seconds")
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert json.dumps(one, sort_keys=True) != json.dumps(other, sort_keys=True)


def test_the_command_prints_the_lift_beside_the_truth_and_writes_the_report(operator, tmp_path):
    out = tmp_path / "report.json"
    result = operator.test_cli_runner().invoke(args=[
        "simulate", "--accounts", "60", "--days", "20", "--seed", "2", "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert "true lift      : +0.0800" in result.output and "measured lift" in result.output
    assert "sample ratio" in result.output and "run time" in result.output
    report = json.loads(out.read_text())
    assert report["params"]["seed"] == 2 and "covers_true_lift" in report
    refused = operator.test_cli_runner().invoke(args=["simulate", "--true-lift", "0.95"])
    assert refused.exit_code != 0 and "true lift must be between 0 and" in refused.output


def test_a_database_with_a_schema_is_refused(operator, tmp_path):
    url = f"sqlite:///{tmp_path / 'used.sqlite3'}"
    from storage import migrate

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    result = operator.test_cli_runner().invoke(args=["simulate", "--accounts", "5", "--days",
                                                     "2", "--database-url", url])
    assert result.exit_code != 0 and "runs only in an empty database" in result.output


def test_the_benchmark_runs_seeds_and_counts_the_covering_intervals():
    """bench/simulation.py in a tiny size: the figures are meaningless, the script must work."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "bench" / "simulation.py"), "--accounts",
                           "40", "--days", "10", "--seeds", "2"], capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert "covered the true lift: 0/2" in done.stdout, done.stdout + done.stderr
    assert "time per run" in done.stdout
    assert len([line for line in done.stdout.splitlines() if line[:4].strip() in ("1", "2")]) \
        == 2
