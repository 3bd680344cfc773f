"""GET /api/v1/metrics and /metrics.csv on a hand-built window, both databases: what storage
hands the figures (the first crossing per account, its opening, the plan history) and the
figures themselves, exact, checked against the OpenAPI document."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest

from core.guardrails import in_control
from tests.conftest import Api
from tests.e2e.helpers import NOW, account, ago, batch, contact, error_of, event
from tests.e2e.test_openapi import conforms, registry, spec  # noqa: F401 (fixtures)

SALT = "metrics-e2e"


@pytest.fixture
def app(make_app):
    return make_app(CONTROL_SHARE="0.5", CONTROL_SALT=SALT, BUSINESS_NAME="Acme")


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def named(control: bool, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        name = f"m-acct-{i}"
        if in_control(name, Decimal("0.5"), SALT) == control:
            out.append(name)
        i += 1
    return out


def dispatch(app):
    return app.extensions["upgrade_chat"].dispatcher.dispatch_due()


def crossing(api, app, account_id: str, n: int) -> None:
    """A Starter account in Chicago whose 4,800 messages crossed 4,500 half an hour ago."""
    body = account(contacts=[contact(f"{account_id}-c", name="Buyer", role="billing",
                                     phone=f"+1312555{n:04d}")])
    assert api.put(f"/accounts/{account_id}", json=body).status_code == 201
    events = [event(f"{account_id}-{i}", account_id, "messages", 600,
                    ago(minutes=30 + 10 * (7 - i))) for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    dispatch(app)  # the opening goes out now (sandbox SMS): 30 minutes after the crossing


def say(api, account_id: str, text: str, n: int):
    r = api.post(f"/conversations/{account_id}-c/messages",
                 json={"channel": "sms", "text": text, "id": f"{account_id}-in-{n}"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.fixture
def window(api, app, clock):
    t1, t2 = named(False, 2)
    c1, c2 = named(True, 2)
    for n, account_id in enumerate((t1, t2, c1, c2)):
        crossing(api, app, account_id, n)
    say(api, t1, "yes", 1)
    assert say(api, t1, "confirm", 2)["state"] == "upgraded"
    assert say(api, t2, "no, too expensive", 1)["state"] == "declined"
    clock.now = NOW + timedelta(days=5)  # a control account upgrades on its own
    body = account(plan="growth", contacts=[contact(f"{c1}-c", name="Buyer", role="billing",
                                                    phone="+13125550002")])
    assert api.put(f"/accounts/{c1}", json=body).status_code == 200
    return t1, t2, c1, c2


def test_the_window_s_figures_are_exact_and_as_documented(api, window, spec, registry):
    r = api.get("/metrics?from=2026-11-01&to=2026-12-01")
    assert r.status_code == 200, r.get_json()
    m = conforms(spec, registry, r, "get", "/api/v1/metrics")
    assert (m["from"], m["to"], m["conversion_days"], m["by"]) == (
        "2026-11-01", "2026-12-01", 30, None)
    assert m["opportunities"] == {"treatment": 2, "control": 2}
    assert m["converted"] == {"treatment": 1, "control": 1}
    assert m["cross_to_upgrade_rate"] == {"treatment": 0.5, "control": 0.5, "target": 0.25}
    assert m["time_to_prompt_seconds"] == {"count": 2, "p50": 1800.0, "p90": 1800.0,
                                           "p99": 1800.0, "share_under_1h": 1.0}
    assert (m["prompted_threads"], m["prompt_to_conversion_rate"]) == (2, 0.5)
    assert m["mean_arr_uplift"] == "4200.00"  # 12 × ($499 − $149)
    assert m["decline_reasons"]["price"] == 1
    assert (m["nrr_90d"], m["nrr_upgrades"]) == (None, 0)  # none 90 days old yet
    assert m["lift"]["absolute"] == 0.0 and m["lift"]["ci95"] is None
    assert "too few" in m["lift"]["note"]
    assert m["srm"] == {"p_value": 1.0, "flag": False, "expected_control_share": 0.5}


def test_a_breakdown_and_the_csv_exports(api, window):
    t1, t2, c1, c2 = window
    m = api.get("/metrics?from=2026-11-01&to=2026-12-01&by=step").get_json()
    assert list(m["groups"]) == ["starter->growth"]
    assert m["groups"]["starter->growth"]["opportunities"] == m["opportunities"]
    r = api.client.get("/api/v1/metrics.csv?from=2026-11-01&to=2026-12-01&rows=opportunities",
                       headers=api.headers)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = {row["account"]: row for row in csv.DictReader(io.StringIO(r.get_data(as_text=True)))}
    assert set(rows) == {t1, t2, c1, c2}
    assert (rows[t1]["arm"], rows[t1]["converted"], rows[t1]["arr_uplift"]) == (
        "treatment", "yes", "4200.00")
    assert (rows[c1]["arm"], rows[c1]["converted"], rows[c1]["converted_to"]) == (
        "control", "yes", "growth")
    assert rows[t2]["decline_reason"] == "price" and rows[t2]["seconds_to_prompt"] == "1800"
    r = api.client.get("/api/v1/metrics.csv?from=2026-11-01&to=2026-12-01", headers=api.headers)
    figures = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert figures[0] == ["group", "figure", "treatment", "control", "value"]
    assert ["all", "opportunities", "2", "2", ""] in figures


def test_a_window_before_the_crossings_is_empty_and_bad_windows_are_refused(api, window):
    m = api.get("/metrics?from=2026-10-01&to=2026-11-01").get_json()
    assert m["opportunities"] == {"treatment": 0, "control": 0}
    assert m["cross_to_upgrade_rate"] == {"treatment": None, "control": None, "target": 0.25}
    for query, code in (("from=2026-13-01", "invalid_date"), ("to=0001-01-01", "invalid_date"),
                        ("from=2026-12-01&to=2026-11-01", "invalid_window"),
                        ("by=colour", "invalid_breakdown"),
                        ("conversion_days=0", "invalid_conversion_days")):
        assert error_of(api.get(f"/metrics?{query}"))["code"] == code
    assert api.client.get("/api/v1/metrics").status_code == 401
