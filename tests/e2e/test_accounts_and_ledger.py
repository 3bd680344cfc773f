"""GET /api/v1/accounts (paging, filters, search) and GET /api/v1/accounts/<id>/ledger (why an
account was prompted, or not), checked against channels/openapi.json on both databases."""

from __future__ import annotations

import pytest

from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, event
from tests.e2e.test_openapi import conforms, is_error, registry, spec  # noqa: F401

LIST = "/api/v1/accounts"
LEDGER = "/api/v1/accounts/{external_id}/ledger"


@pytest.fixture
def api(make_app) -> Api:
    # No control cohort: which crossings prompt is decided by the scenario alone.
    return Api(make_app(CONTROL_SHARE="0").test_client())


def crossing(api: Api, account_id: str, n: int = 7) -> dict:
    r = api.post("/usage", json=batch(*[event(f"{account_id}-m{i}", account_id, "messages", 700,
                                              ago(days=i)) for i in range(n)]))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def scenario(api: Api) -> None:
    """prompted: a Chicago account at 09:00 local; deferred: a Tokyo one at midnight local;
    suppressed: one whose contact opted out (STOP). Messages both ways, an escalation, a plan
    change by the operator."""
    assert api.put("/accounts/alpha-clinic", json=account(
        name="Alpha Clinic", contacts=[contact("alpha-dana", name="Dana", phone="+13125550101")]
    )).status_code == 201
    assert api.put("/accounts/beta-salon", json=account(
        name="Beta Salon", vertical="salon", timezone="Asia/Tokyo",
        contacts=[contact("beta-kim", phone="+81312345678")])).status_code == 201
    assert api.put("/accounts/gamma-realty", json=account(
        name="Gamma Realty", plan="growth", vertical="real_estate",
        contacts=[contact("gamma-lee", phone="+13125550103")])).status_code == 201
    assert api.post("/conversations/gamma-lee/messages",
                    json={"channel": "sms", "text": "STOP"}).status_code == 200
    for who in ("alpha-clinic", "beta-salon"):
        crossing(api, who)
    assert api.post("/usage", json=batch(*[event(f"g{i}", "gamma-realty", "messages", 8000,
                                                 ago(days=i)) for i in range(4)])).status_code == 200
    assert api.post("/conversations/alpha-dana/messages",
                    json={"channel": "sms", "text": "can I talk to a real person?"}
                    ).status_code == 200
    assert api.put("/accounts/gamma-realty", json=account(
        name="Gamma Realty", plan="scale", vertical="real_estate",
        contacts=[contact("gamma-lee", phone="+13125550103")])).status_code == 200


def test_the_listing_pages_filters_and_searches_as_documented(api, spec, registry):
    scenario(api)
    assert api.put("/accounts/delta-dental", json=account(
        name="Delta Dental", contacts=[contact("delta-sam", phone="+13125550104")])
    ).status_code == 201
    crossing(api, "delta-dental")
    for i in range(4):
        assert api.put(f"/accounts/zeta-{i}", json=account(name=f"Zeta {i}")).status_code == 201
    first = conforms(spec, registry, api.get("/accounts?per_page=3"), "get", LIST)
    assert (first["total"], first["page"], first["per_page"], first["next_page"]) == (8, 1, 3, 2)
    assert [a["external_id"] for a in first["accounts"]] == \
        ["alpha-clinic", "beta-salon", "delta-dental"]
    alpha, delta = first["accounts"][0], first["accounts"][2]
    assert alpha["thread"] is None  # escalated: no live thread
    assert delta["thread"]["state"] in ("open", "offered") and \
        delta["thread"]["target_plan"] == "growth"
    assert delta["health"] == "green" and delta["timezone"] == "America/Chicago"
    last = conforms(spec, registry, api.get("/accounts?per_page=3&page=3"), "get", LIST)
    assert [a["external_id"] for a in last["accounts"]] == ["zeta-2", "zeta-3"]
    assert last["next_page"] is None
    default = api.get("/accounts").get_json()
    assert default["per_page"] == 50 and default["next_page"] is None

    def ids(query: str) -> list[str]:
        body = conforms(spec, registry, api.get(f"/accounts?{query}"), "get", LIST)
        assert body["total"] == len(body["accounts"])
        return [a["external_id"] for a in body["accounts"]]

    assert ids("plan=scale") == ["gamma-realty"]
    assert ids("vertical=salon") == ["beta-salon"]
    # beta-salon's deferred opening waits in its open thread for the morning
    assert ids("state=none") == ["alpha-clinic", "gamma-realty"] + [f"zeta-{i}" for i in range(4)]
    assert sorted(ids("state=offered") + ids("state=open")) == ["beta-salon", "delta-dental"]
    assert ids("q=ZETA%203") == ["zeta-3"]  # the name, any case
    assert ids("q=realty") == ["gamma-realty"]
    assert ids("q=%25") == []  # a LIKE wildcard is a character like any other
    assert ids("q=beta&vertical=salon&state=open") == ["beta-salon"]


@pytest.mark.parametrize("query,status,code", [
    ("per_page=201", 422, "invalid_page"), ("per_page=0", 422, "invalid_page"),
    ("page=0", 422, "invalid_page"), ("page=two", 400, "malformed"),
    ("per_page=", 400, "malformed"), ("page=", 400, "malformed"),
    ("plan=platinum", 422, "unknown_plan"), ("state=declined", 422, "invalid_state"),
    ("state=", 422, "invalid_state"),
    ("q=" + "x" * 201, 422, "too_long")])
def test_bad_listing_parameters_are_documented_json_errors(api, spec, registry, query, status,
                                                          code):
    r = api.get(f"/accounts?{query}")
    is_error(registry, r, status, code)
    conforms(spec, registry, r, "get", LIST)


def test_the_ledger_says_why_each_account_was_prompted_or_not(api, spec, registry):
    scenario(api)

    def ledger(who: str) -> list[dict]:
        body = conforms(spec, registry, api.get(f"/accounts/{who}/ledger"), "get", LEDGER)
        assert body["account"] == who
        entries = body["entries"]
        assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
        return entries

    alpha = ledger("alpha-clinic")
    types = [e["type"] for e in alpha]
    assert types[0] == "plan_change" and "crossing" in types and "escalation" in types
    cross = next(e for e in alpha if e["type"] == "crossing")
    assert (cross["metric"], cross["value"], cross["threshold"], cross["outcome"],
            cross["reason"], cross["from_plan"], cross["to_plan"]) == \
        ("messages", "4900", "4500", "prompted", None, "starter", "growth")
    messages = [e for e in alpha if e["type"] == "message"]
    assert {m["direction"] for m in messages} == {"in", "out"}
    assert types.index("crossing") < types.index("message")  # the opening comes after it
    said = next(m for m in messages if m["direction"] == "in")
    assert said["body"] == "can I talk to a real person?" and said["redacted"] is False
    assert next(e for e in alpha if e["type"] == "escalation")["reason"] == "human"

    beta = next(e for e in ledger("beta-salon") if e["type"] == "crossing")
    assert (beta["outcome"], beta["reason"]) == ("deferred", "quiet_hours")
    assert beta["defer_until"] > beta["detected_at"]

    gamma = ledger("gamma-realty")
    suppressed = next(e for e in gamma if e["type"] == "crossing")
    assert (suppressed["outcome"], suppressed["reason"]) == ("suppressed", "opted_out")
    assert [(e["action"], e["source"]) for e in gamma if e["type"] == "consent"][-1] == \
        ("revoke", "buyer")
    plans = [(e["from_plan"], e["to_plan"], e["source"]) for e in gamma if e["type"] == "plan_change"]
    assert plans == [(None, "growth", "operator"), ("growth", "scale", "operator")]


def test_an_erased_body_is_not_in_the_ledger(api, spec, registry):
    scenario(api)
    assert api.post("/contacts/alpha-dana/erase").status_code == 200
    entries = conforms(spec, registry, api.get("/accounts/alpha-clinic/ledger"), "get", LEDGER)
    messages = [e for e in entries["entries"] if e["type"] == "message"]
    assert messages and all(m["body"] is None and m["redacted"] for m in messages)


def test_an_unknown_account_has_no_ledger(api, spec, registry):
    r = api.get("/accounts/nobody/ledger")
    is_error(registry, r, 404, "account_not_found")
    conforms(spec, registry, r, "get", LEDGER)
