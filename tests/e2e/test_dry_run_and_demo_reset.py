"""`flask --app app thresholds dry-run` and `flask --app app demo reset`, on SQLite and PostgreSQL.

The dry run is checked on a hand-built set of accounts whose crossings are counted by hand: one
that crosses under the new catalog only, one under both, one under neither, one of the control
cohort, one down-tier; a bad catalog stops it with the file and the key (exit 2); and it
writes nothing (every table's rows, the outbox's among them, are as they were; the audit trail
gets the command's own event). The demo reset removes the demo accounts and all of theirs,
loads them again as of now, leaves every other account as it was, and does the same when run
twice."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from core.guardrails import in_control
from storage.models import (AccountRow, Base, ContactRow, MessageRow, OutboxRow, SignalRow,
                            ThreadRow, UsageEventRow)
from tests.conftest import API_KEY, Api
from tests.e2e.helpers import account, ago, batch, contact, event
from web.catalog_file import DEFAULT_CATALOG

SHARE = "0.10"
OTHERS = ("only-new", "both", "neither", "down")
# A salt whose cohort (10%) holds none of the other accounts of the scenario.
SALT = next(salt for salt in (f"dry-run-{i}" for i in range(1000))
            if not any(in_control(a, Decimal(SHARE), salt) for a in OTHERS))


def control_id() -> str:
    """An account id the cohort holds out."""
    return next(f"ctl-{i}" for i in range(1000) if in_control(f"ctl-{i}", Decimal(SHARE), SALT))


def new_catalog(tmp_path):
    """The catalog with Starter's messages threshold at 3,000 instead of 4,500."""
    text_ = DEFAULT_CATALOG.read_text()
    assert text_.count("at = 4500") == 1
    path = tmp_path / "new.toml"
    path.write_text(text_.replace("at = 4500", "at = 3000"))
    return path


def scenario(api: Api) -> str:
    """Five accounts, counted by hand for a 90-day dry run ending on the clock's day:

    - only-new (healthcare, Starter): 3,500 messages over the last 10 days; crosses 3,000
      (new) but not 4,500 (current).
    - both (salon, Starter): a 4th seat 5 days ago; the seats threshold is the same in both.
      Its 4,600 messages 60 days ago cross messages too, in both: still one starter->growth.
    - neither (generic, Starter): 1,000 messages.
    - the control account (sales, Starter): 5,000 messages; crosses in both, logged not prompted.
    - down (real estate, Growth for 200 days): 20,000 messages 45 days ago, nothing since:
      Starter would cost more while they are in the window, less once they leave (15 days
      ago): a down-tier crossing in both. Before they came, it fitted already (not counted).
    """
    ctl = control_id()
    accounts = {
        "only-new": account(vertical="healthcare"),
        "both": account(vertical="salon"),
        "neither": account(vertical="generic"),
        ctl: account(vertical="sales"),
        "down": account(vertical="real_estate", plan="growth", plan_since=ago(days=200)),
    }
    for external_id, body in accounts.items():
        body["contacts"] = [contact(f"{external_id}-c", phone="+13125550100", role="billing")]
        r = api.put(f"/accounts/{external_id}", json=body)
        assert r.status_code == 201, r.get_json()
    events = [
        *[event(f"on-{d}", "only-new", "messages", 350, ago(days=d, hours=1)) for d in range(10)],
        event("both-seats", "both", "seats", 4, ago(days=5)),
        event("both-old", "both", "messages", 4600, ago(days=60)),
        event("neither-m", "neither", "messages", 1000, ago(days=3)),
        event("ctl-m", ctl, "messages", 5000, ago(days=2)),
        event("down-m", "down", "messages", 20000, ago(days=45)),
        event("down-s", "down", "seats", 2, ago(days=100)),
    ]
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()
    return ctl


def row(output: str, label: str) -> list[str]:
    """The cells of the table line that starts with `label`."""
    for line in output.splitlines():
        if line.startswith(label + "  "):
            return re.split(r"\s{2,}", line[len(label):].strip())
    raise AssertionError(f"no line {label!r} in:\n{output}")


def counts(engine, exclude=("audit_events",)) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in Base.metadata.sorted_tables if t.name not in exclude}


def test_dry_run_counts_each_step_under_both_catalogs(make_app, tmp_path):
    app = make_app(CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)
    ctl = scenario(Api(app.test_client()))
    result = app.test_cli_runner().invoke(
        args=["thresholds", "dry-run", "--catalog", str(new_catalog(tmp_path)), "--batch-size",
              "2"])  # five accounts in three batches
    assert result.exit_code == 0, result.output + result.stderr
    out = result.stdout
    assert "5 accounts replayed over 90 days, 2026-08-29 to 2026-11-26" in out
    assert row(out, "starter→growth") == ["2", "3", "+1", "1/1"]
    assert row(out, "growth→starter (down-tier)") == ["1", "1", "0", "0/0"]
    assert row(out, "total (account-steps)") == ["3", "4", "+1", "1/1"]
    assert row(out, "accounts") == ["3", "4", "+1", "1/1"]
    assert "growth→scale" not in out
    assert row(out, "healthcare") == ["0", "1", "+1", "0/0"]
    assert row(out, "salon") == ["1", "1", "0", "0/0"]
    assert row(out, "sales") == ["1", "1", "0", "1/1"]
    assert row(out, "real_estate") == ["1", "1", "0", "0/0"]
    assert "generic" not in out.split("by vertical")[1]
    assert "replaying accounts" in result.stderr  # the progress bar, on stderr
    assert ctl.startswith("ctl-")


def test_a_shorter_window_leaves_out_older_crossings(make_app, tmp_path):
    app = make_app(CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)
    scenario(Api(app.test_client()))
    result = app.test_cli_runner().invoke(
        args=["thresholds", "dry-run", "--catalog", str(new_catalog(tmp_path)), "--days", "7"])
    assert result.exit_code == 0, result.output
    # In the last 7 days: the control account's 5,000 (2 days ago), the 4th seat (5 days ago),
    # and only-new reaching 3,000 on its 9th day of 350 (day -1); the down-tier was 15 days ago.
    assert row(result.stdout, "starter→growth") == ["2", "3", "+1", "1/1"]
    assert "down-tier" not in result.stdout


def test_dry_run_writes_nothing_but_its_audit_event(make_app, tmp_path, engine):
    app = make_app(CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)
    scenario(Api(app.test_client()))
    before = counts(engine)
    with engine.connect() as conn:
        outbox = conn.execute(select(OutboxRow.id, OutboxRow.status, OutboxRow.attempts)
                              .order_by(OutboxRow.id)).all()
        audit = conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
    assert before["outbox"] > 0 and before["signals"] > 0  # there is something to change
    result = app.test_cli_runner().invoke(
        args=["thresholds", "dry-run", "--catalog", str(new_catalog(tmp_path))])
    assert result.exit_code == 0, result.output
    assert counts(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(OutboxRow.id, OutboxRow.status, OutboxRow.attempts)
                            .order_by(OutboxRow.id)).all() == outbox
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == audit + 1


def test_a_bad_catalog_is_named_by_file_and_key_and_exits_2(make_app, tmp_path, engine):
    app = make_app()
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_CATALOG.read_text().replace("included_seats = 3",
                                                       'included_seats = "three"'))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["thresholds", "dry-run", "--catalog", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: key 'plans.starter.included_seats': expected a whole number >= 0, " \
           f"got 'three'" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(args=["thresholds", "dry-run", "--catalog", str(tmp_path / "no.toml")])
    assert missing.exit_code == 2 and "no.toml: key 'CATALOG_PATH': expected a readable TOML " \
                                      "file" in missing.output
    with engine.connect() as conn:
        last = conn.execute(text("SELECT action, outcome FROM audit_events ORDER BY seq DESC "
                                 "LIMIT 1")).one()
    assert tuple(last) == ("thresholds.dry_run", "failed")


# --- demo reset ---------------------------------------------------------------------------------

DEMO = ["acme-clinic", "bright-salon", "harbor-realty", "pipeline-sales", "northwind-msp",
        "quiet-studio"]


def of_accounts(engine, external_ids) -> dict[str, int]:
    """Rows that belong to these accounts, in the tables that say whose they are."""
    with engine.connect() as conn:
        ids = list(conn.scalars(select(AccountRow.id).where(AccountRow.external_id.in_(external_ids))))
        threads = list(conn.scalars(select(ThreadRow.id).where(ThreadRow.account_id.in_(ids))))
        return {
            "accounts": len(ids),
            "contacts": conn.execute(select(func.count()).where(ContactRow.account_id.in_(ids))).scalar_one(),
            "usage": conn.execute(select(func.count()).where(UsageEventRow.account_id.in_(ids))).scalar_one(),
            "signals": conn.execute(select(func.count()).where(SignalRow.account_id.in_(ids))).scalar_one(),
            "threads": len(threads),
            "messages": conn.execute(select(func.count()).where(MessageRow.thread_id.in_(threads))).scalar_one(),
        }


def other_account(api: Api) -> None:
    """A customer's account (not the demo's) with usage, a crossing and an opening queued."""
    body = account(name="Real Co", contacts=[contact("real-pat", phone="+13125550199",
                                                     role="billing")])
    assert api.put("/accounts/real-co", json=body).status_code == 201
    assert api.post("/usage", json=batch(event("real-1", "real-co", "seats", 5, ago(hours=3)))
                    ).status_code == 200


def snapshot(engine) -> list:
    """Every row of a non-demo account's tables, to compare before and after."""
    with engine.connect() as conn:
        rid = conn.scalar(select(AccountRow.id).where(AccountRow.external_id == "real-co"))
        out = []
        for table in Base.metadata.sorted_tables:
            if "account_id" in table.c:
                out.append(conn.execute(select(table).where(table.c.account_id == rid)
                                        .order_by(*table.primary_key.columns)).all())
        threads = select(ThreadRow.id).where(ThreadRow.account_id == rid)
        messages = conn.scalars(select(MessageRow.id).where(MessageRow.thread_id.in_(threads)))
        keys = [f"message:{m}" for m in messages]
        assert keys  # its opening, queued
        out.append(conn.execute(select(OutboxRow).where(OutboxRow.key.in_(keys))).all())
        return out


@pytest.fixture
def demo_app(make_app):
    return make_app(DEMO=True, CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)


def _reset_args(db_url: str) -> list[str]:
    return ["demo", "reset"] + ([] if db_url.startswith("sqlite") else ["--yes"])


def test_demo_reset_removes_and_reloads_only_the_demo(demo_app, engine, clock, db_url):
    api = Api(demo_app.test_client())
    other_account(api)
    others = snapshot(engine)
    loaded = of_accounts(engine, DEMO)
    assert loaded["accounts"] == 6 and loaded["threads"] > 0
    # Something of the demo's that a visitor adds: a reply, so a message not from the loader.
    r = api.post("/conversations/acme-dana/messages",
                 json={"channel": "web", "text": "how much today?", "id": "w-1"})
    assert r.status_code == 200
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
    clock.now += timedelta(days=1)
    runner = demo_app.test_cli_runner()
    result = runner.invoke(args=_reset_args(db_url))
    assert result.exit_code == 0, result.output
    assert "removed 6 demo accounts: " in result.output
    assert "loaded 6 demo accounts as of 2026-11-27 15:00 UTC" in result.output
    assert of_accounts(engine, DEMO) == loaded  # the same demo, replayed
    assert snapshot(engine) == others  # the customer's account: every row as it was
    with engine.connect() as conn:
        opened = conn.execute(select(ThreadRow.opened_at).join(
            AccountRow, ThreadRow.account_id == AccountRow.id)
            .where(AccountRow.external_id.in_(DEMO))).scalars().all()
        assert opened and all(at == clock.now for at in opened)  # fresh times
        bodies = conn.execute(select(MessageRow.body)).scalars().all()
        assert "how much today?" not in bodies  # the visitor's reply went with the demo
        queued = conn.execute(select(func.count()).select_from(OutboxRow)
                              .where(OutboxRow.status == "pending")).scalar_one()
        assert queued > 0  # the openings, waiting for the next jobs run
        # The audit trail is untouched, plus the command's own event.
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() > audit
        last = conn.execute(text("SELECT action, outcome FROM audit_events ORDER BY seq DESC "
                                 "LIMIT 1")).one()
    assert tuple(last) == ("demo.reset", "ok")

    first = result.output
    again = runner.invoke(args=_reset_args(db_url))
    assert again.exit_code == 0, again.output
    assert of_accounts(engine, DEMO) == loaded and snapshot(engine) == others
    removed = lambda out: out.splitlines()[-2]  # noqa: E731
    assert "removed 6 demo accounts" in removed(again.output)
    assert removed(again.output) != removed(first)  # the reply was in the first only
    third = runner.invoke(args=_reset_args(db_url))
    assert removed(third.output) == removed(again.output)  # idempotent: the same each time


def test_demo_reset_elsewhere_needs_yes(make_app, engine, db_url):
    app = make_app(DEMO=True, TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="tok",
                   TWILIO_SMS_FROM="+13125550000", PUBLIC_BASE_URL="https://example.test")
    before = of_accounts(engine, DEMO)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["demo", "reset"])
    assert refused.exit_code == 1
    assert "not in sandbox mode" in refused.stderr and "--yes" in refused.stderr
    assert of_accounts(engine, DEMO) == before
    done = runner.invoke(args=["demo", "reset", "--yes"])
    assert done.exit_code == 0, done.output
    assert done.stderr.startswith("warning: demo reset deletes the accounts acme-clinic")
    assert of_accounts(engine, DEMO)["accounts"] == 6
