"""The plan history, through the API on SQLite and PostgreSQL: every plan an account has been on,
from when and how — an operator's PUT, an upgrade confirmed in a conversation, a down-tier
applied at its billing period — kept whatever the account's plan is now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from storage import migrate
from storage.db import make_engine
from tests.conftest import Api
from tests.e2e.helpers import NOW, account, ago, batch, contact, event, iso
from tests.e2e.test_conversations import ACME, DANA, cross_messages, say, setup_account


@pytest.fixture
def app(make_app):  # (conftest's `api` fixture drives this app)
    return make_app(CONTROL_SHARE="0")


def history(api, external_id=ACME):
    r = api.get(f"/accounts/{external_id}/plan-history")
    assert r.status_code == 200, r.get_json()
    return [(p["from_plan"], p["to_plan"], p["source"]) for p in r.get_json()["plans"]]


def test_an_account_starts_its_history_with_its_first_plan(api):
    setup_account(api)
    assert history(api) == [(None, "starter", "operator")]
    at = api.get(f"/accounts/{ACME}/plan-history").get_json()["plans"][0]["at"]
    assert at == iso(NOW)


def test_an_operator_plan_change_is_kept_and_a_put_with_the_same_plan_adds_nothing(api):
    setup_account(api)
    setup_again = {"plan": "starter", "timezone": "America/Chicago", "billing_day": 5,
                   "contacts": [contact(DANA, name="Dana", role="billing", phone="+13125550142")]}
    assert api.put(f"/accounts/{ACME}", json=account(**setup_again)).status_code == 200
    moved = dict(setup_again, plan="growth")
    assert api.put(f"/accounts/{ACME}", json=account(**moved)).status_code == 200
    assert history(api) == [(None, "starter", "operator"), ("starter", "growth", "operator")]


def test_an_upgrade_confirmed_in_a_conversation_is_kept_once(api):
    setup_account(api)
    cross_messages(api)
    say(api, "yes", "h-1")
    say(api, "confirm", "h-2")
    say(api, "confirm", "h-2")  # a provider retry
    say(api, "confirm", "h-3")  # and a second confirmation: already made
    assert history(api) == [(None, "starter", "operator"), ("starter", "growth", "conversation")]


def test_a_down_tier_enters_the_history_when_it_is_applied_not_when_it_is_confirmed(
        make_app, clock):
    api = Api(make_app(CONTROL_SHARE="0").test_client())
    body = account(plan="growth", timezone="America/Chicago", billing_day=5,
                   contacts=[contact(DANA, name="Dana", role="billing", phone="+13125550142")])
    body["plan_since"] = ago(NOW, days=400)
    assert api.put(f"/accounts/{ACME}", json=body).status_code == 201
    assert api.post("/usage", json=batch(event("d1", ACME, "messages", 2100, ago(NOW, days=3)),
                                         event("d2", ACME, "seats", 5, ago(NOW, days=2))))\
        .status_code == 200
    app = api.client.application
    app.test_cli_runner().invoke(args=["jobs", "run"])
    say(api, "yes", "d-yes")
    assert say(api, "confirm", "d-confirm")["state"] == "upgraded"
    assert history(api) == [(None, "growth", "operator")]  # pending until Dec 5
    clock.now = NOW + timedelta(days=10)
    assert app.test_cli_runner().invoke(args=["jobs", "run"]).exit_code == 0
    assert history(api) == [(None, "growth", "operator"), ("growth", "starter", "conversation")]
    at = api.get(f"/accounts/{ACME}/plan-history").get_json()["plans"][-1]["at"]
    assert at == iso(clock.now)


def test_an_unknown_account_has_no_history(api):
    r = api.get("/accounts/nobody/plan-history")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "account_not_found"


def test_the_migration_starts_the_history_of_existing_accounts_at_their_plan_since(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    migrate.upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (external_id, name, plan, vertical, timezone, billing_day, "
            "plan_since, open_escalations, created_at, updated_at) VALUES ('old', 'Old Co', "
            "'growth', 'generic', 'UTC', 1, '2025-01-01 00:00:00.000000', 0, "
            "'2024-06-01 00:00:00.000000', '2025-01-01 00:00:00.000000')"))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT from_plan, to_plan, source, at FROM plan_history")).all()
    engine.dispose()
    assert [(r[0], r[1], r[2]) for r in rows] == [(None, "growth", "backfill")]
    assert str(rows[0][3]).startswith("2025-01-01")
