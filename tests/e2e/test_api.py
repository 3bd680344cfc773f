"""The operator's JSON API under /api/v1, end to end: real HTTP through the Flask test client, a
real database (every test runs on SQLite and on PostgreSQL through the `db_url` fixture), no mocks.

Figures come from docs/product.md §3 (plans, thresholds) and §4 (the case); "now" is the test clock,
2026-11-26T15:00Z, which is 09:00 on Nov 26 in America/Chicago.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.e2e.helpers import NOW, account, ago, batch, contact, error_of, event, iso

ACME = "acct-acme"


# --- small readers -------------------------------------------------------------------------------


def create(api, external_id: str = ACME, **fields):
    response = api.put(f"/accounts/{external_id}", json=account(**fields))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def post(api, *events):
    response = api.post("/usage", json=batch(*events))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def usage_of(api, external_id: str = ACME) -> dict:
    response = api.get(f"/accounts/{external_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["usage"]


def signals_of(api, external_id: str = ACME) -> list[dict]:
    response = api.get(f"/accounts/{external_id}/signals")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["signals"]


def case_of(api, external_id: str = ACME) -> dict:
    response = api.get(f"/accounts/{external_id}/case")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_error(response, status: int, code: str, *, field=..., index=...) -> dict:
    assert response.status_code == status, (response.status_code, response.get_json())
    err = error_of(response)
    assert err["code"] == code, err
    if field is not ...:
        assert err.get("field") == field, err
    if index is not ...:
        assert err.get("index") == index, err
    return err


# --- auth ------------------------------------------------------------------------------------------


def test_request_without_authorization_header_is_401_unauthorized(app):
    response = app.test_client().get(f"/api/v1/accounts/{ACME}")
    assert_error(response, 401, "unauthorized")


def test_request_with_a_wrong_api_key_is_401_unauthorized(app):
    response = app.test_client().get(f"/api/v1/accounts/{ACME}",
                                     headers={"Authorization": "Bearer not-the-key"})
    assert_error(response, 401, "unauthorized")


def test_request_with_the_right_key_under_the_basic_scheme_is_401(app, api):
    key = api.headers["Authorization"].split(" ", 1)[1]
    response = app.test_client().get(f"/api/v1/accounts/{ACME}",
                                     headers={"Authorization": f"Basic {key}"})
    assert_error(response, 401, "unauthorized")


def test_bearer_scheme_with_an_empty_token_is_401(app):
    response = app.test_client().get(f"/api/v1/accounts/{ACME}",
                                     headers={"Authorization": "Bearer "})
    assert_error(response, 401, "unauthorized")


def test_unauthorized_write_stores_nothing(app, api):
    response = app.test_client().put(f"/api/v1/accounts/{ACME}", json=account())
    assert_error(response, 401, "unauthorized")
    assert_error(api.get(f"/accounts/{ACME}"), 404, "account_not_found")


def test_openapi_document_is_served_as_json_without_a_key(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    assert isinstance(response.get_json(), dict)


# --- PUT /accounts/<id> ----------------------------------------------------------------------------


def test_put_account_creates_it_with_201_then_updates_it_with_200(api, clock):
    created = api.put(f"/accounts/{ACME}", json=account(contacts=[contact("c-1", name="Ana",
                                                                          role="billing")]))
    assert created.status_code == 201
    body = created.get_json()
    assert body["external_id"] == ACME
    assert body["name"] == "Acme Dental"
    assert body["plan"] == "starter"
    assert body["vertical"] == "generic"
    assert body["timezone"] == "America/Chicago"
    assert body["billing_day"] == 5
    assert body["plan_since"] == iso(NOW)
    assert body["contacts"] == [{"external_id": "c-1", "name": "Ana", "role": "billing",
                                 "phone": None, "whatsapp": None, "web_user_id": None,
                                 "email": None, "erased_at": None}]
    assert body["health"] == {"csat": None, "sentiment": None, "open_escalations": 0,
                              "status": "green", "updated_at": None}
    assert body["usage"]["messages"] == 0 and body["usage"]["seats"] == 0

    clock.now = NOW + timedelta(hours=1)
    updated = api.put(f"/accounts/{ACME}", json=account(name="Acme Dental Group",
                                                        vertical="healthcare", billing_day=12,
                                                        timezone="America/New_York"))
    assert updated.status_code == 200
    body = updated.get_json()
    assert (body["name"], body["vertical"], body["billing_day"], body["timezone"]) == (
        "Acme Dental Group", "healthcare", 12, "America/New_York")
    assert api.get(f"/accounts/{ACME}").get_json() == body


def test_put_account_without_a_vertical_uses_generic_and_a_contact_without_a_role_is_a_member(api):
    body = account(contacts=[contact("c-1")])
    del body["vertical"]
    response = api.put(f"/accounts/{ACME}", json=body)
    assert response.status_code == 201
    created = response.get_json()
    assert created["vertical"] == "generic"
    assert created["contacts"][0]["role"] == "member"


def test_put_account_normalises_phone_numbers_to_e164(api):
    body = create(api, contacts=[
        contact("c-1", phone="(312) 555-0142", whatsapp="whatsapp:+14155550100"),
        contact("c-2", phone="+1 415-555-0101", web_user_id="u-2", email="b@acme.test"),
    ])
    first, second = body["contacts"]
    assert first["phone"] == "+13125550142"
    assert first["whatsapp"] == "+14155550100"
    assert second["phone"] == "+14155550101"
    assert second["web_user_id"] == "u-2" and second["email"] == "b@acme.test"


def test_default_phone_region_setting_decides_how_national_numbers_are_read(make_app):
    from tests.conftest import Api

    api = Api(make_app(DEFAULT_PHONE_REGION="GB").test_client())
    body = create(api, contacts=[contact("c-1", phone="020 7946 0018")])
    assert body["contacts"][0]["phone"] == "+442079460018"


@pytest.mark.parametrize("key, value", [("phone", "12345"), ("phone", "not a phone"),
                                        ("whatsapp", "whatsapp:+1415")])
def test_put_account_with_an_invalid_phone_is_422_invalid_phone_naming_the_field(api, key, value):
    response = api.put(f"/accounts/{ACME}", json=account(contacts=[
        contact("c-0"), contact("c-1", **{key: value})]))
    assert_error(response, 422, "invalid_phone", field=f"contacts[1].{key}")
    assert_error(api.get(f"/accounts/{ACME}"), 404, "account_not_found")


@pytest.mark.parametrize("overrides, code, field", [
    ({"plan": "enterprise"}, "unknown_plan", ...),
    ({"vertical": "bakery"}, "unknown_vertical", ...),
    ({"timezone": "Mars/Olympus_Mons"}, "unknown_timezone", "timezone"),
    ({"timezone": "CST+6"}, "unknown_timezone", "timezone"),
    ({"billing_day": 0}, "invalid_billing_day", "billing_day"),
    ({"billing_day": 29}, "invalid_billing_day", "billing_day"),
    ({"billing_day": -5}, "invalid_billing_day", "billing_day"),
    ({"contacts": [contact("c-1", role="owner")]}, "invalid_role", "contacts[0].role"),
    ({"contacts": [contact("c-1"), contact("c-1")]}, "duplicate_contact", "contacts[1].external_id"),
    ({"plan_since": "yesterday"}, "invalid_timestamp", "plan_since"),
    ({"plan_since": "2026-11-01T00:00:00"}, "invalid_timestamp", "plan_since"),
    ({"plan_since": "2026-12-26T00:00:00Z"}, "invalid_timestamp", "plan_since"),
])
def test_put_account_with_a_well_formed_but_invalid_value_is_422_and_creates_nothing(
        api, overrides, code, field):
    response = api.put(f"/accounts/{ACME}", json=account(**overrides))
    assert_error(response, 422, code, field=field)
    assert_error(api.get(f"/accounts/{ACME}"), 404, "account_not_found")


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("name"), "name"),
    (lambda b: b.update(name="   "), "name"),
    (lambda b: b.update(name=42), "name"),
    (lambda b: b.pop("plan"), "plan"),
    (lambda b: b.pop("timezone"), "timezone"),
    (lambda b: b.pop("billing_day"), "billing_day"),
    (lambda b: b.update(billing_day="5"), "billing_day"),
    (lambda b: b.update(billing_day=5.5), "billing_day"),
    (lambda b: b.update(billing_day=True), "billing_day"),
    (lambda b: b.update(plan_since=1700000000), "plan_since"),
    (lambda b: b.update(contacts={"external_id": "c-1"}), "contacts"),
    (lambda b: b.update(contacts=["c-1"]), "contacts[0]"),
    (lambda b: b.update(contacts=[{"name": "Ana"}]), "contacts[0].external_id"),
    (lambda b: b.update(contacts=[contact("c-1", phone=3125550142)]), "contacts[0].phone"),
])
def test_put_account_with_a_missing_field_or_wrong_type_is_400_malformed_naming_the_field(
        api, mutate, field):
    body = account()
    mutate(body)
    response = api.put(f"/accounts/{ACME}", json=body)
    assert_error(response, 400, "malformed", field=field)
    assert_error(api.get(f"/accounts/{ACME}"), 404, "account_not_found")


@pytest.mark.parametrize("data", ["not json", "{\"name\": ", "", "null"])
def test_put_account_with_a_body_that_is_not_json_is_400_malformed(api, data):
    response = api.put(f"/accounts/{ACME}", data=data, content_type="application/json")
    assert_error(response, 400, "malformed")


@pytest.mark.parametrize("body", [[account()], "starter", 5])
def test_put_account_with_a_json_body_that_is_not_an_object_is_400_malformed(api, body):
    response = api.put(f"/accounts/{ACME}", json=body)
    assert_error(response, 400, "malformed")
    assert_error(api.get(f"/accounts/{ACME}"), 404, "account_not_found")


def test_put_account_replaces_contacts_so_a_contact_left_out_disappears(api):
    create(api, contacts=[contact("c-1", name="Ana", phone="+13125550142"),
                          contact("c-2", name="Ben"), contact("c-3", name="Cy")])
    response = api.put(f"/accounts/{ACME}", json=account(contacts=[
        contact("c-3", name="Cy", role="admin"), contact("c-1", name="Ana B.")]))
    assert response.status_code == 200
    contacts = api.get(f"/accounts/{ACME}").get_json()["contacts"]
    assert [(c["external_id"], c["name"], c["role"], c["phone"]) for c in contacts] == [
        ("c-3", "Cy", "admin", None), ("c-1", "Ana B.", "member", None)]

    # A contact that left one account can join another.
    create(api, "acct-other", contacts=[contact("c-2")])


def test_put_account_without_contacts_removes_them_all(api):
    create(api, contacts=[contact("c-1"), contact("c-2")])
    assert api.put(f"/accounts/{ACME}", json=account(contacts=[])).status_code == 200
    assert api.get(f"/accounts/{ACME}").get_json()["contacts"] == []


def test_put_account_with_a_contact_owned_by_another_account_is_422_contact_conflict(api):
    create(api, "acct-other", contacts=[contact("c-shared", name="Dana")])
    response = api.put(f"/accounts/{ACME}", json=account(contacts=[contact("c-mine"),
                                                                   contact("c-shared")]))
    assert_error(response, 422, "contact_conflict", field="contacts[1].external_id")
    assert_error(api.get(f"/accounts/{ACME}"), 404, "account_not_found")
    other = api.get("/accounts/acct-other").get_json()
    assert [c["external_id"] for c in other["contacts"]] == ["c-shared"]
    assert other["contacts"][0]["name"] == "Dana"


def test_rejected_update_leaves_the_stored_account_as_it_was(api):
    before = create(api, contacts=[contact("c-1")])
    response = api.put(f"/accounts/{ACME}", json=account(name="Renamed", billing_day=31,
                                                         contacts=[]))
    assert_error(response, 422, "invalid_billing_day", field="billing_day")
    assert api.get(f"/accounts/{ACME}").get_json() == before


def test_changing_plan_resets_plan_since_and_keeping_it_does_not(api, clock):
    create(api)
    clock.now = NOW + timedelta(days=3)
    same = api.put(f"/accounts/{ACME}", json=account(name="Renamed")).get_json()
    assert same["plan_since"] == iso(NOW)

    clock.now = NOW + timedelta(days=5)
    moved = api.put(f"/accounts/{ACME}", json=account(plan="growth")).get_json()
    assert moved["plan"] == "growth"
    assert moved["plan_since"] == iso(NOW + timedelta(days=5))
    assert moved["plan_details"]["name"] == "growth"


def test_plan_since_given_in_the_body_is_stored_in_utc(api):
    body = create(api, plan_since="2026-09-01T08:00:00-05:00")
    assert body["plan_since"] == "2026-09-01T13:00:00Z"


# --- GET /accounts/<id> ----------------------------------------------------------------------------


def test_get_unknown_account_is_404_account_not_found(api):
    assert_error(api.get("/accounts/nobody"), 404, "account_not_found")


@pytest.mark.parametrize("plan, details", [
    ("starter", {"name": "starter", "base_price": "149.00", "included_messages": 1000,
                 "extra_message_price": "0.10", "included_seats": 3, "extra_seat_price": "40.00",
                 "max_integrations": 2, "features": ["core"]}),
    ("growth", {"name": "growth", "base_price": "499.00", "included_messages": 10000,
                "extra_message_price": "0.05", "included_seats": 10, "extra_seat_price": "35.00",
                "max_integrations": 10, "features": ["api_access", "core", "workflows"]}),
    ("scale", {"name": "scale", "base_price": "1499.00", "included_messages": 50000,
               "extra_message_price": "0.02", "included_seats": 50, "extra_seat_price": "30.00",
               "max_integrations": None,
               "features": ["api_access", "audit_export", "core", "hipaa_baa", "sso",
                            "workflows"]}),
])
def test_get_account_shows_the_plan_details_from_the_catalog(api, plan, details):
    create(api, plan=plan)
    assert api.get(f"/accounts/{ACME}").get_json()["plan_details"] == details


def test_get_account_returns_health_and_the_usage_matrix_as_of_now(api):
    create(api)
    post(api,
         event("m-1", ACME, "messages", 700, ago(days=2)),
         event("m-2", ACME, "messages", 50, ago(hours=1)),
         event("s-1", ACME, "seats", 3, ago(days=1)),
         event("i-1", ACME, "integrations", 1, ago(days=1)),
         event("f-1", ACME, "feature:workflows", 2, ago(hours=3)),
         event("f-2", ACME, "feature:api_access", 1, ago(hours=2)))
    body = api.get(f"/accounts/{ACME}").get_json()
    assert body["usage"] == {"messages": 750, "seats": 3, "integrations": 1,
                             "integrations_peak": 1,
                             "features": {"api_access": 1, "workflows": 2},
                             "window_days": 30, "as_of": iso(NOW)}
    assert body["health"]["status"] == "green"


def test_messages_count_only_over_the_trailing_30_days(api):
    create(api)
    post(api,
         event("old-31d", ACME, "messages", 1000, ago(days=31)),
         event("edge-30d", ACME, "messages", 500, ago(days=30)),
         event("in-29d", ACME, "messages", 200, ago(days=29, hours=23)),
         event("in-now", ACME, "messages", 7, iso(NOW)))
    assert usage_of(api)["messages"] == 207


def test_the_message_window_moves_with_the_clock(api, clock):
    create(api)
    post(api, event("m-1", ACME, "messages", 300, ago(days=29)),
         event("m-2", ACME, "messages", 40, ago(days=1)))
    assert usage_of(api)["messages"] == 340
    clock.now = NOW + timedelta(days=2)
    assert usage_of(api)["messages"] == 40


def test_feature_hits_older_than_30_days_do_not_count(api):
    create(api)
    post(api, event("f-old", ACME, "feature:workflows", 5, ago(days=31)),
         event("f-new", ACME, "feature:workflows", 1, ago(days=3)))
    assert usage_of(api)["features"] == {"workflows": 1}


@pytest.mark.parametrize("metric", ["seats", "integrations"])
def test_gauge_is_the_latest_reading_by_time_even_when_an_older_one_arrives_later(api, metric):
    create(api)
    post(api, event("g-new", ACME, metric, 5, ago(hours=1)))
    result = post(api, event("g-old", ACME, metric, 2, ago(hours=5)))
    assert result["accepted"] == 1
    assert usage_of(api)[metric] == 5
    post(api, event("g-newer", ACME, metric, 1, ago(minutes=10)))
    assert usage_of(api)[metric] == 1


def test_a_gauge_reading_older_than_30_days_still_counts_when_it_is_the_latest(api):
    create(api)
    post(api, event("s-1", ACME, "seats", 2, ago(days=45)))
    assert usage_of(api)["seats"] == 2


def test_usage_of_one_account_does_not_leak_into_another(api):
    create(api)
    create(api, "acct-other")
    post(api, event("a-1", ACME, "messages", 10, ago(hours=1)),
         event("b-1", "acct-other", "messages", 99, ago(hours=1)),
         event("b-2", "acct-other", "seats", 7, ago(hours=1)))
    assert (usage_of(api)["messages"], usage_of(api)["seats"]) == (10, 0)
    assert (usage_of(api, "acct-other")["messages"], usage_of(api, "acct-other")["seats"]) == (99, 7)


# --- POST /usage ----------------------------------------------------------------------------------


def test_usage_batch_returns_how_many_events_were_accepted_and_how_many_were_duplicates(api):
    create(api)
    events = [event(f"m-{i}", ACME, "messages", 100, ago(hours=i + 1)) for i in range(5)]
    assert post(api, *events) == {"accepted": 5, "duplicates": 0, "signals": []}
    assert usage_of(api)["messages"] == 500


def test_reposting_the_same_event_ids_counts_all_as_duplicates_and_changes_nothing(api):
    create(api)
    events = [event("m-1", ACME, "messages", 4000, ago(hours=3)),
              event("m-2", ACME, "messages", 600, ago(hours=2)),
              event("s-1", ACME, "seats", 4, ago(hours=1))]
    first = post(api, *events)
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert len(first["signals"]) == 2
    usage_before, signals_before = usage_of(api), signals_of(api)

    again = post(api, *events)
    assert again == {"accepted": 0, "duplicates": 3, "signals": []}
    # Same ids with different content are still the same events.
    changed = [dict(e, quantity=9999) for e in events]
    assert post(api, *changed) == {"accepted": 0, "duplicates": 3, "signals": []}
    assert usage_of(api) == usage_before
    assert signals_of(api) == signals_before


def test_the_same_event_id_twice_in_one_batch_is_counted_once(api):
    create(api)
    twice = event("m-1", ACME, "messages", 300, ago(hours=1))
    result = post(api, twice, event("m-2", ACME, "messages", 5, ago(hours=1)), dict(twice))
    assert (result["accepted"], result["duplicates"]) == (2, 1)
    assert usage_of(api)["messages"] == 305


def test_an_empty_usage_batch_accepts_nothing(api):
    assert post(api) == {"accepted": 0, "duplicates": 0, "signals": []}


def test_usage_batch_reports_the_thresholds_it_crossed(api):
    create(api)
    result = post(api, event("m-1", ACME, "messages", 3000, ago(hours=2)),
                  event("m-2", ACME, "messages", 1800, ago(hours=1)))
    assert result["signals"] == [{
        "direction": "up", "from_plan": "starter", "to_plan": "growth", "metric": "messages",
        "value": "4800", "threshold": "4500", "at": ago(hours=1), "detected_at": iso(NOW),
        "event_id": "m-2", "outcome": "suppressed", "reason": "no_contact", "defer_until": None}]  # an account without contacts: nobody to prompt


def test_an_event_a_few_minutes_ahead_of_our_clock_is_accepted(api):
    create(api)
    result = post(api, event("s-1", ACME, "seats", 2, iso(NOW + timedelta(minutes=4))))
    assert result["accepted"] == 1


# Each rejected batch starts with a valid event that would cross a threshold, so that storing any of
# the batch would show up in the usage, the signals, or as a duplicate on a second post.
REJECTED_BATCHES = [
    pytest.param(event("bad", ACME, "logins", 1, ago(hours=1)),
                 422, "unknown_metric", "events[1].metric", id="unknown-metric"),
    pytest.param(event("bad", ACME, "feature:teleport", 3, ago(hours=1)),
                 422, "unknown_metric", "events[1].metric", id="unknown-feature"),
    pytest.param(event("bad", ACME, "messages", -5, ago(hours=1)),
                 422, "negative_quantity", "events[1].quantity", id="negative-quantity"),
    pytest.param(event("bad", ACME, "messages", 1, "last tuesday"),
                 422, "invalid_timestamp", "events[1].at", id="bad-timestamp"),
    pytest.param(event("bad", ACME, "messages", 1, "2026-11-26T09:30:00"),
                 422, "invalid_timestamp", "events[1].at", id="timestamp-without-zone"),
    pytest.param(event("bad", ACME, "messages", 1, "2026-11-26"),
                 422, "invalid_timestamp", "events[1].at", id="date-only"),
    pytest.param(event("bad", ACME, "messages", 1, iso(NOW + timedelta(days=2))),
                 422, "invalid_timestamp", "events[1].at", id="far-future"),
    pytest.param(event("bad", ACME, "messages", 1, iso(NOW + timedelta(minutes=6))),
                 422, "invalid_timestamp", "events[1].at", id="past-clock-skew"),
    pytest.param(event("bad", "acct-ghost", "messages", 1, ago(hours=1)),
                 422, "unknown_account", "events[1].account", id="unknown-account"),
    pytest.param(event("bad", ACME, "messages", "many", ago(hours=1)),
                 400, "malformed", "events[1].quantity", id="quantity-not-a-number"),
    pytest.param(event("bad", ACME, "messages", 1.5, ago(hours=1)),
                 400, "malformed", "events[1].quantity", id="fractional-quantity"),
    pytest.param(event("bad", ACME, "messages", True, ago(hours=1)),
                 400, "malformed", "events[1].quantity", id="boolean-quantity"),
    pytest.param(event("bad", ACME, "messages", None, ago(hours=1)),
                 400, "malformed", "events[1].quantity", id="missing-quantity"),
    pytest.param({"account": ACME, "metric": "messages", "quantity": 1, "at": ago(hours=1)},
                 400, "malformed", "events[1].id", id="missing-id"),
    pytest.param(event("bad", ACME, "messages", 1, 1764169200),
                 400, "malformed", "events[1].at", id="numeric-timestamp"),
    pytest.param(["bad", ACME, "messages", 1], 400, "malformed", "events[1]", id="not-an-object"),
]


@pytest.mark.parametrize("bad, status, code, field", REJECTED_BATCHES)
def test_usage_batch_with_one_bad_event_stores_nothing_and_names_its_index(
        api, bad, status, code, field):
    create(api)
    good = event("good", ACME, "messages", 5000, ago(hours=2))
    tail = event("after", ACME, "seats", 4, ago(hours=1))
    response = api.post("/usage", json=batch(good, bad, tail))
    assert_error(response, status, code, field=field, index=1)

    assert usage_of(api)["messages"] == 0
    assert usage_of(api)["seats"] == 0
    assert signals_of(api) == []
    # Nothing was stored: the good events are new when they come again.
    assert post(api, good, tail)["accepted"] == 2
    assert len(signals_of(api)) == 2


def test_usage_batch_rejects_at_the_first_bad_event(api):
    create(api)
    response = api.post("/usage", json=batch(
        event("ok", ACME, "messages", 1, ago(hours=1)),
        event("ok2", ACME, "messages", 1, ago(hours=1)),
        event("neg", ACME, "messages", -1, ago(hours=1)),
        event("ghost", "acct-ghost", "messages", 1, ago(hours=1)),
        event("metric", ACME, "logins", 1, ago(hours=1))))
    assert_error(response, 422, "negative_quantity", index=2)


def test_unknown_account_in_a_batch_for_several_accounts_stores_nothing_for_any_of_them(api):
    create(api)
    create(api, "acct-other")
    response = api.post("/usage", json=batch(
        event("a-1", ACME, "seats", 4, ago(hours=1)),
        event("b-1", "acct-other", "seats", 4, ago(hours=1)),
        event("g-1", "acct-ghost", "seats", 4, ago(hours=1))))
    assert_error(response, 422, "unknown_account", field="events[2].account", index=2)
    for account_id in (ACME, "acct-other"):
        assert usage_of(api, account_id)["seats"] == 0
        assert signals_of(api, account_id) == []


@pytest.mark.parametrize("body, field", [
    ({}, "events"),
    ({"events": None}, "events"),
    ({"events": {"id": "m-1"}}, "events"),
    ({"events": "m-1"}, "events"),
])
def test_usage_body_without_an_events_array_is_400_malformed(api, body, field):
    assert_error(api.post("/usage", json=body), 400, "malformed", field=field)


@pytest.mark.parametrize("data", ["events", "[]", ""])
def test_usage_body_that_is_not_a_json_object_is_400_malformed(api, data):
    response = api.post("/usage", data=data, content_type="application/json")
    assert_error(response, 400, "malformed")


def test_usage_batch_over_10000_events_is_422_batch_too_large(api):
    create(api)
    events = [event(f"m-{i}", ACME, "messages", 1, ago(hours=1)) for i in range(10_001)]
    assert_error(api.post("/usage", json=batch(*events)), 422, "batch_too_large", field="events")
    assert usage_of(api)["messages"] == 0


# --- POST /accounts/<id>/health -------------------------------------------------------------------


def test_health_report_is_stored_and_shown_on_the_account(api, clock):
    create(api)
    clock.now = NOW + timedelta(minutes=30)
    response = api.post(f"/accounts/{ACME}/health",
                        json={"csat": 4.6, "sentiment": "0.25", "open_escalations": 0})
    assert response.status_code == 200
    expected = {"csat": 4.6, "sentiment": 0.25, "open_escalations": 0, "status": "green",
                "updated_at": iso(NOW + timedelta(minutes=30))}
    assert response.get_json()["health"] == expected
    assert api.get(f"/accounts/{ACME}").get_json()["health"] == expected


def test_a_health_report_replaces_the_previous_one(api):
    create(api)
    api.post(f"/accounts/{ACME}/health", json={"csat": 2, "sentiment": -0.9, "open_escalations": 2})
    body = api.post(f"/accounts/{ACME}/health", json={"csat": 4}).get_json()
    assert body["health"]["csat"] == 4.0
    assert body["health"]["sentiment"] is None
    assert body["health"]["open_escalations"] == 0
    assert body["health"]["status"] == "green"


@pytest.mark.parametrize("report, status", [
    ({"csat": 4.5, "sentiment": 0.2, "open_escalations": 0}, "green"),
    ({"csat": 2.9}, "red"),
    ({"csat": 3.0}, "green"),
    ({"csat": 1}, "red"),
    ({"sentiment": -0.31}, "red"),
    ({"sentiment": -0.3}, "green"),
    ({"sentiment": -1}, "red"),
    ({"open_escalations": 1}, "red"),
    ({"csat": 5, "sentiment": 1, "open_escalations": 1}, "red"),
    ({}, "green"),
])
def test_health_is_red_below_csat_3_or_sentiment_minus_0_3_or_with_an_open_escalation(
        api, report, status):
    create(api)
    response = api.post(f"/accounts/{ACME}/health", json=report)
    assert response.status_code == 200
    assert response.get_json()["health"]["status"] == status
    assert api.get(f"/accounts/{ACME}").get_json()["health"]["status"] == status


def test_a_csat_just_below_3_is_red_whatever_its_precision(api):
    create(api)
    body = api.post(f"/accounts/{ACME}/health", json={"csat": "2.9999", "sentiment": -0.3001}).get_json()
    assert body["health"]["status"] == "red"
    assert body["health"]["csat"] == 2.9999


def test_health_with_more_decimals_than_stored_is_refused_not_rounded(api):
    create(api)
    r = api.post(f"/accounts/{ACME}/health", json={"csat": "2.99999"})
    assert r.status_code == 422
    assert r.get_json()["error"]["code"] == "invalid_health"


def test_health_bounds_come_from_configuration(make_app):
    from tests.conftest import Api

    api = Api(make_app(HEALTH_CSAT_RED_BELOW="4.0", HEALTH_ESCALATIONS_RED_ABOVE=2).test_client())
    create(api)
    assert api.post(f"/accounts/{ACME}/health",
                    json={"csat": 3.5}).get_json()["health"]["status"] == "red"
    assert api.post(f"/accounts/{ACME}/health",
                    json={"csat": 4.0, "open_escalations": 2}).get_json()["health"]["status"] == "green"


@pytest.mark.parametrize("report, field", [
    ({"csat": 6}, "csat"),
    ({"csat": 0.5}, "csat"),
    ({"sentiment": 1.5}, "sentiment"),
    ({"sentiment": -1.01}, "sentiment"),
    ({"open_escalations": -1}, "open_escalations"),
])
def test_health_out_of_range_is_422_invalid_health_and_keeps_the_previous_report(
        api, report, field):
    create(api)
    api.post(f"/accounts/{ACME}/health", json={"csat": 4.2})
    response = api.post(f"/accounts/{ACME}/health", json=report)
    assert_error(response, 422, "invalid_health", field=field)
    assert api.get(f"/accounts/{ACME}").get_json()["health"]["csat"] == 4.2


@pytest.mark.parametrize("report, field", [
    ({"csat": "high"}, "csat"),
    ({"csat": True}, "csat"),
    ({"csat": "NaN"}, "csat"),
    ({"sentiment": [0.1]}, "sentiment"),
    ({"open_escalations": "2"}, "open_escalations"),
    ({"open_escalations": 1.5}, "open_escalations"),
])
def test_health_with_a_wrong_type_is_400_malformed(api, report, field):
    create(api)
    assert_error(api.post(f"/accounts/{ACME}/health", json=report), 400, "malformed", field=field)


def test_health_for_an_unknown_account_is_404_account_not_found(api):
    response = api.post("/accounts/nobody/health", json={"csat": 4})
    assert_error(response, 404, "account_not_found")


def test_health_body_that_is_not_json_is_400_malformed(api):
    create(api)
    response = api.post(f"/accounts/{ACME}/health", data="csat=4",
                        content_type="application/x-www-form-urlencoded")
    assert_error(response, 400, "malformed")


# --- GET /accounts/<id>/case ----------------------------------------------------------------------


def test_starter_account_past_the_message_break_even_gets_a_growth_case_that_claims_the_saving(api):
    create(api, timezone="America/Chicago", billing_day=5)
    post(api,
         event("m-old", ACME, "messages", 2000, ago(days=31)),  # outside the window
         event("m-1", ACME, "messages", 3000, ago(days=20)),
         event("m-2", ACME, "messages", 1800, ago(days=1)),
         event("s-1", ACME, "seats", 3, ago(days=2)))
    case = case_of(api)
    assert case["account"] == ACME
    assert (case["current_plan"], case["target_plan"], case["direction"]) == ("starter", "growth", "up")
    assert case["usage"] == {"messages": 4800, "seats": 3, "integrations": 0, "features": {}}
    assert case["thresholds_crossed"] == [{"metric": "messages", "value": 4800, "threshold": 4500}]
    assert case["cost_current"] == "529.00"
    assert case["cost_target"] == "499.00"
    assert case["monthly_difference"] == "30.00"
    assert case["claims_saving"] is True
    assert case["prorated_charge_today"] == "105.00"
    assert case["effective"] == "2026-11-26"
    assert case["unlocks"] == {"features": ["workflows", "api_access"],
                               "seats_included": {"from": 3, "to": 10},
                               "messages_included": {"from": 1000, "to": 10000},
                               "max_integrations": {"from": 2, "to": 10}}
    assert case["gives_up"] == []
    assert case["as_of"] == iso(NOW)

    message = case["message"]
    for figure in ("4,800", "$499.00", "$529.00", "$30.00", "$105.00"):
        assert figure in message, (figure, message)
    assert "less" in message
    assert message.isascii()


def test_the_case_explains_every_figure_with_its_inputs(api):
    create(api, billing_day=5)
    post(api, event("m-1", ACME, "messages", 4800, ago(days=1)),
         event("s-1", ACME, "seats", 3, ago(days=1)))
    explain = case_of(api)["explain"]
    assert explain["cost_current"] == {
        "plan": "starter", "base": "149.00",
        "messages": {"used": 4800, "included": 1000, "extra": 3800, "unit_price": "0.10",
                     "amount": "380.00"},
        "seats": {"used": 3, "included": 3, "extra": 0, "unit_price": "40.00", "amount": "0.00"},
        "total": "529.00"}
    assert explain["cost_target"] == {
        "plan": "growth", "base": "499.00",
        "messages": {"used": 4800, "included": 10000, "extra": 0, "unit_price": "0.05",
                     "amount": "0.00"},
        "seats": {"used": 3, "included": 10, "extra": 0, "unit_price": "35.00", "amount": "0.00"},
        "total": "499.00"}
    assert explain["proration"] == {
        "today": "2026-11-26", "period_start": "2026-11-05", "period_end": "2026-12-05",
        "days_in_period": 30, "days_remaining": 9, "base_difference": "350.00",
        "charge": "105.00"}


def test_starter_account_with_a_fourth_seat_gets_a_value_case_that_claims_no_saving(api):
    create(api)
    post(api, event("m-1", ACME, "messages", 900, ago(days=3)),
         event("s-1", ACME, "seats", 4, ago(days=1)))
    case = case_of(api)
    assert (case["target_plan"], case["direction"]) == ("growth", "up")
    assert case["thresholds_crossed"] == [{"metric": "seats", "value": 4, "threshold": 4}]
    assert case["cost_current"] == "189.00"
    assert case["cost_target"] == "499.00"
    assert case["monthly_difference"] == "-310.00"
    assert case["claims_saving"] is False
    assert case["prorated_charge_today"] == "105.00"
    message = case["message"]
    for figure in ("4 seats", "$499.00", "$189.00", "$310.00"):
        assert figure in message, (figure, message)
    lowered = message.lower()
    assert "less" not in lowered and "save" not in lowered and "saving" not in lowered
    assert "discount" not in lowered


def test_growth_account_at_the_scale_break_even_is_told_the_price_is_the_same(api):
    create(api, plan="growth", plan_since=ago(days=90))
    post(api, event("m-1", ACME, "messages", 30_000, ago(days=2)),
         event("s-1", ACME, "seats", 5, ago(days=2)))
    case = case_of(api)
    assert (case["current_plan"], case["target_plan"]) == ("growth", "scale")
    assert case["cost_current"] == "1499.00"
    assert case["cost_target"] == "1499.00"
    assert case["monthly_difference"] == "0.00"
    assert case["claims_saving"] is False
    assert case["prorated_charge_today"] == "300.00"  # 1,000.00 x 9 / 30
    assert "$1,499.00" in case["message"]
    assert "less" not in case["message"].lower()


@pytest.mark.parametrize("events, metric, value", [
    ([("integrations", 2)], "integrations", 2),
    ([("feature:workflows", 2), ("feature:workflows", 1)], "feature:workflows", 3),
    ([("feature:api_access", 3), ("feature:workflows", 1)], "feature:api_access", 3),
])
def test_integrations_at_the_cap_or_locked_features_hit_three_times_make_a_growth_case(
        api, events, metric, value):
    create(api)
    post(api, *[event(f"e-{i}", ACME, m, q, ago(hours=i + 1)) for i, (m, q) in enumerate(events)])
    case = case_of(api)
    assert case["target_plan"] == "growth"
    assert case["thresholds_crossed"] == [{"metric": metric, "value": value,
                                           "threshold": 3 if metric.startswith("feature") else 2}]
    assert case["claims_saving"] is False


def test_account_under_every_threshold_has_no_case_404_no_case(api):
    create(api)
    post(api, event("m-1", ACME, "messages", 4499, ago(days=1)),
         event("s-1", ACME, "seats", 3, ago(days=1)),
         event("i-1", ACME, "integrations", 1, ago(days=1)),
         event("f-1", ACME, "feature:workflows", 2, ago(days=1)))
    assert_error(api.get(f"/accounts/{ACME}/case"), 404, "no_case")


def test_case_for_an_unknown_account_is_404_account_not_found(api):
    assert_error(api.get("/accounts/nobody/case"), 404, "account_not_found")


def test_growth_account_with_low_usage_gets_a_down_case_that_charges_nothing_today(api):
    create(api, plan="growth", plan_since=ago(days=60), billing_day=5)
    post(api, event("m-1", ACME, "messages", 900, ago(days=4)),
         event("s-1", ACME, "seats", 2, ago(days=4)),
         event("i-1", ACME, "integrations", 1, ago(days=4)))
    case = case_of(api)
    assert (case["current_plan"], case["target_plan"], case["direction"]) == (
        "growth", "starter", "down")
    assert case["thresholds_crossed"] == []
    assert case["cost_current"] == "499.00"
    assert case["cost_target"] == "149.00"
    assert case["monthly_difference"] == "350.00"
    assert case["claims_saving"] is True
    assert case["prorated_charge_today"] == "0.00"
    assert case["effective"] == "2026-12-05"  # the next period start
    assert case["gives_up"] == ["workflows", "api_access"]
    message = case["message"]
    for figure in ("900 messages", "2 seats", "$149.00", "$499.00", "$350.00", "Dec 5"):
        assert figure in message, (figure, message)


def test_growth_account_too_new_on_its_plan_gets_no_down_case(api):
    create(api, plan="growth", plan_since=ago(days=10))
    post(api, event("m-1", ACME, "messages", 900, ago(days=4)))
    assert_error(api.get(f"/accounts/{ACME}/case"), 404, "no_case")


@pytest.mark.parametrize("metric, quantity", [("feature:workflows", 1), ("integrations", 3)])
def test_growth_account_using_what_starter_cannot_serve_gets_no_down_case(api, metric, quantity):
    create(api, plan="growth", plan_since=ago(days=60))
    post(api, event("m-1", ACME, "messages", 100, ago(days=4)),
         event("x-1", ACME, metric, quantity, ago(days=3)))
    assert_error(api.get(f"/accounts/{ACME}/case"), 404, "no_case")


def test_growth_account_whose_integrations_dropped_within_the_window_gets_no_down_case(api):
    create(api, plan="growth", plan_since=ago(days=60))
    post(api, event("i-1", ACME, "integrations", 5, ago(days=10)),
         event("i-2", ACME, "integrations", 1, ago(days=2)))
    assert usage_of(api)["integrations"] == 1
    assert usage_of(api)["integrations_peak"] == 5
    assert_error(api.get(f"/accounts/{ACME}/case"), 404, "no_case")


@pytest.mark.parametrize("now, billing_day, period, days, remaining, charge", [
    (NOW, 5, ("2026-11-05", "2026-12-05"), 30, 9, "105.00"),
    (NOW, 26, ("2026-11-26", "2026-12-26"), 30, 30, "350.00"),
    (NOW, 27, ("2026-10-27", "2026-11-27"), 31, 1, "11.29"),
    (NOW, 1, ("2026-11-01", "2026-12-01"), 30, 5, "58.33"),
    (NOW.replace(month=12, day=20), 28, ("2026-11-28", "2026-12-28"), 30, 8, "93.33"),
    (NOW.replace(year=2027, month=1, day=10), 15, ("2026-12-15", "2027-01-15"), 31, 5, "56.45"),
    (NOW.replace(year=2027, month=2, day=10), 1, ("2027-02-01", "2027-03-01"), 28, 19, "237.50"),
])
def test_prorated_charge_is_base_difference_times_remaining_days_over_days_in_period(
        api, clock, now, billing_day, period, days, remaining, charge):
    clock.now = now
    create(api, billing_day=billing_day)
    post(api, event("s-1", ACME, "seats", 4, iso(now - timedelta(hours=1))))
    case = case_of(api)
    proration = case["explain"]["proration"]
    assert (proration["period_start"], proration["period_end"]) == period
    assert (proration["days_in_period"], proration["days_remaining"]) == (days, remaining)
    assert case["prorated_charge_today"] == charge


@pytest.mark.parametrize("timezone, today, remaining, charge", [
    ("America/Chicago", "2026-11-26", 9, "105.00"),  # 21:00 on the 26th
    ("UTC", "2026-11-27", 8, "93.33"),
    ("Asia/Tokyo", "2026-11-27", 8, "93.33"),  # 12:00 on the 27th
])
def test_today_for_proration_is_the_date_in_the_accounts_time_zone(
        api, clock, timezone, today, remaining, charge):
    clock.now = NOW.replace(day=27, hour=3)  # 2026-11-27T03:00Z
    create(api, timezone=timezone, billing_day=5)
    post(api, event("s-1", ACME, "seats", 4, ago(clock.now, hours=1)))
    case = case_of(api)
    assert case["explain"]["proration"]["today"] == today
    assert case["explain"]["proration"]["days_remaining"] == remaining
    assert case["prorated_charge_today"] == charge
    assert case["effective"] == today


@pytest.mark.parametrize("vertical, seats_word", [
    ("salon", "stylist chairs"),
    ("healthcare", "staff seats"),
    ("real_estate", "agent seats"),
    ("sales", "rep seats"),
    ("it_msp", "technician seats"),
])
def test_vertical_framing_changes_the_words_but_not_the_numbers(api, vertical, seats_word):
    events = lambda acct: [event(f"{acct}-m", acct, "messages", 900, ago(days=3)),  # noqa: E731
                           event(f"{acct}-s", acct, "seats", 4, ago(days=1))]
    create(api, "acct-generic", vertical="generic")
    create(api, "acct-vertical", vertical=vertical)
    post(api, *events("acct-generic"), *events("acct-vertical"))
    generic, framed = case_of(api, "acct-generic"), case_of(api, "acct-vertical")

    def numbers(case):
        return {k: v for k, v in case.items() if k not in ("account", "message")}

    assert numbers(framed) == numbers(generic)
    assert seats_word in framed["message"]
    assert seats_word not in generic["message"]
    assert "4 seats" in generic["message"]
    for figure in ("$499.00", "$189.00", "$310.00", "$105.00"):
        assert figure in framed["message"]


def test_salon_message_case_talks_about_appointment_texts(api):
    create(api, vertical="salon")
    post(api, event("m-1", ACME, "messages", 4800, ago(days=1)))
    message = case_of(api)["message"]
    assert "4,800 appointment texts" in message
    assert "$529.00" in message and "$499.00" in message


# --- GET /accounts/<id>/signals -------------------------------------------------------------------


def test_a_threshold_fires_once_per_upward_crossing(api, clock):
    create(api)
    first = post(api, event("s-1", ACME, "seats", 4, ago(hours=6)))
    assert [s["metric"] for s in first["signals"]] == ["seats"]

    clock.now = NOW + timedelta(minutes=1)
    assert post(api, event("s-2", ACME, "seats", 5, ago(hours=5)))["signals"] == []
    clock.now = NOW + timedelta(minutes=2)
    assert post(api, event("s-3", ACME, "seats", 3, ago(hours=4)))["signals"] == []
    clock.now = NOW + timedelta(minutes=3)
    second = post(api, event("s-4", ACME, "seats", 4, ago(hours=3)))
    assert [s["metric"] for s in second["signals"]] == ["seats"]

    signals = signals_of(api)
    assert signals == [
        {"direction": "up", "from_plan": "starter", "to_plan": "growth", "metric": "seats",
         "value": "4", "threshold": "4", "at": ago(hours=3),
         "detected_at": iso(NOW + timedelta(minutes=3)), "event_id": "s-4", "outcome": "suppressed", "reason": "no_contact", "defer_until": None},
        {"direction": "up", "from_plan": "starter", "to_plan": "growth", "metric": "seats",
         "value": "4", "threshold": "4", "at": ago(hours=6), "detected_at": iso(NOW),
         "event_id": "s-1", "outcome": "suppressed", "reason": "no_contact", "defer_until": None},
    ]


def test_signals_of_an_account_without_any_are_an_empty_list(api):
    create(api)
    response = api.get(f"/accounts/{ACME}/signals")
    assert response.status_code == 200
    assert response.get_json() == {"account": ACME, "signals": []}


def test_signals_for_an_unknown_account_are_404_account_not_found(api):
    assert_error(api.get("/accounts/nobody/signals"), 404, "account_not_found")


def test_a_crossing_inside_one_batch_fires_at_the_event_that_crossed(api):
    create(api)
    result = post(api, event("m-2", ACME, "messages", 2000, ago(hours=1)),
                  event("m-1", ACME, "messages", 3000, ago(hours=2)),
                  event("m-3", ACME, "messages", 1000, ago(minutes=30)))
    assert [(s["metric"], s["value"], s["at"], s["event_id"]) for s in result["signals"]] == [
        ("messages", "5000", ago(hours=1), "m-2")]
    assert len(signals_of(api)) == 1


def test_several_thresholds_crossed_at_once_each_give_a_signal_newest_first(api):
    create(api)
    post(api, event("m-1", ACME, "messages", 4500, ago(hours=3)),
         event("i-1", ACME, "integrations", 2, ago(hours=2)),
         event("f-1", ACME, "feature:api_access", 3, ago(hours=1)))
    signals = signals_of(api)
    assert [(s["metric"], s["value"], s["threshold"]) for s in signals] == [
        ("feature:api_access", "3", "3"), ("integrations", "2", "2"), ("messages", "4500", "4500")]
    assert [s["at"] for s in signals] == [ago(hours=1), ago(hours=2), ago(hours=3)]


def test_an_older_gauge_reading_arriving_late_neither_fires_nor_rearms_a_threshold(api):
    create(api)
    assert len(post(api, event("s-1", ACME, "seats", 4, ago(hours=1)))["signals"]) == 1
    assert post(api, event("s-0", ACME, "seats", 2, ago(hours=5)))["signals"] == []
    assert post(api, event("s-2", ACME, "seats", 4, ago(minutes=30)))["signals"] == []
    assert len(signals_of(api)) == 1


def test_growth_account_whose_usage_fits_starter_gets_a_down_tier_signal(api):
    create(api, plan="growth", plan_since=ago(days=60))
    result = post(api, event("m-1", ACME, "messages", 900, ago(hours=1)))
    assert result["signals"] == [{
        "direction": "down", "from_plan": "growth", "to_plan": "starter", "metric": "cost",
        "value": "149.00", "threshold": "499.00", "at": ago(hours=1), "detected_at": iso(NOW),
        "event_id": "m-1", "outcome": "suppressed", "reason": "no_contact", "defer_until": None}]
    assert post(api, event("m-2", ACME, "messages", 5, ago(minutes=30)))["signals"] == []


def test_a_batch_that_also_reports_too_many_integrations_gives_no_down_tier_signal(api):
    create(api, plan="growth", plan_since=ago(days=60))
    result = post(api, event("m-1", ACME, "messages", 900, ago(hours=2)),
                  event("i-1", ACME, "integrations", 5, ago(hours=1)))
    assert result["signals"] == []
    assert signals_of(api) == []


def test_messages_that_age_out_of_the_window_rearm_the_threshold(api, clock):
    create(api)
    assert len(post(api, event("m-1", ACME, "messages", 5000, ago(hours=1)))["signals"]) == 1
    clock.now = NOW + timedelta(days=40)
    assert usage_of(api)["messages"] == 0  # below the threshold again
    again = post(api, event("m-2", ACME, "messages", 5000, ago(clock.now, hours=1)))
    assert [s["metric"] for s in again["signals"]] == ["messages"]
    assert len(signals_of(api)) == 2


# --- routes and HTTP errors -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/account", "/api/v1/accounts/a/b/c",
                                  "/api/v2/accounts/x"])
def test_unknown_route_under_the_api_is_a_404_json_error(api, path):
    response = api.client.get(path, headers=api.headers)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/api/v1/usage"),
    ("GET", "/api/v1/usage"),
    ("PUT", "/api/v1/usage"),
    ("POST", f"/api/v1/accounts/{ACME}"),
    ("DELETE", f"/api/v1/accounts/{ACME}"),
    ("GET", f"/api/v1/accounts/{ACME}/health"),
    ("POST", f"/api/v1/accounts/{ACME}/case"),
    ("POST", f"/api/v1/accounts/{ACME}/signals"),
])
def test_wrong_method_on_an_api_route_is_a_405_json_error(api, method, path):
    response = api.client.open(path, method=method, headers=api.headers, json={})
    assert_error(response, 405, "method_not_allowed")


def test_a_405_lists_the_allowed_methods_in_the_allow_header(api):
    response = api.client.delete("/api/v1/usage", headers=api.headers)
    assert response.status_code == 405
    assert "POST" in response.headers.get("Allow", "")


def test_unknown_route_outside_the_api_is_not_turned_into_json(api):
    response = api.client.get("/definitely-not-here")
    assert response.status_code == 404
    assert not response.is_json


def test_a_body_over_the_configured_size_limit_is_413_too_large(make_app):
    from tests.conftest import Api

    api = Api(make_app(MAX_CONTENT_LENGTH=2048).test_client())
    events = [event(f"m-{i}", ACME, "messages", 1, ago(hours=1)) for i in range(100)]
    assert_error(api.post("/usage", json=batch(*events)), 413, "too_large")


# --- concurrency ----------------------------------------------------------------------------------


def test_the_same_batch_posted_twice_at_once_is_stored_exactly_once(app, api):
    create(api)
    n = 60
    events = [event(f"m-{i}", ACME, "messages", 100, ago(minutes=n - i)) for i in range(n)]
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def send(slot: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/usage", headers=api.headers, json=batch(*events))
        results[slot] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [r[0] for r in results] == [200, 200], results
    bodies = [r[1] for r in results]
    assert sum(b["accepted"] for b in bodies) == n
    assert sum(b["duplicates"] for b in bodies) == n
    assert usage_of(api)["messages"] == n * 100
    assert sum(len(b["signals"]) for b in bodies) == 1
    assert [s["metric"] for s in signals_of(api)] == ["messages"]


def test_two_concurrent_creates_of_one_account_give_one_201_and_one_200(app, api):
    barrier = threading.Barrier(2)
    statuses: list = [None, None]

    def send(slot: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.put(f"/api/v1/accounts/{ACME}", headers=api.headers,
                              json=account(contacts=[contact("c-1")]))
        statuses[slot] = response.status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses) == [200, 201]
    assert [c["external_id"] for c in api.get(f"/accounts/{ACME}").get_json()["contacts"]] == ["c-1"]


@pytest.mark.parametrize("events, status, code, index", [
    # an unknown account before a negative quantity: the account is named
    ([event("a", "nobody", "seats", 1, ago(hours=1)), event("b", ACME, "seats", -1, ago(hours=1))],
     422, "unknown_account", 0),
    # a rule broken before a shape broken: the rule is named
    ([event("a", ACME, "seats", -1, ago(hours=1)), event("b", ACME, "seats", "x", ago(hours=1))],
     422, "negative_quantity", 0),
    # a shape broken before a rule broken and an unknown account
    ([event("a", ACME, "seats", 1, ago(hours=1)), event("b", ACME, "seats", "x", ago(hours=1)),
      event("c", ACME, "vibes", 1, ago(hours=1)), event("d", "nobody", "seats", 1, ago(hours=1))],
     400, "malformed", 1),
])
def test_a_rejected_batch_names_its_first_bad_event_whatever_the_kind_of_error(
        api, events, status, code, index):
    create(api)
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == status
    assert (error_of(r)["code"], error_of(r)["index"]) == (code, index)


def test_a_plan_change_rearms_the_new_plans_thresholds(api):
    create(api)
    api.post("/usage", json=batch(event("s1", ACME, "seats", 5, ago(hours=3))))
    api.put(f"/accounts/{ACME}", json=account(plan="growth"))
    api.put(f"/accounts/{ACME}", json=account(plan="starter"))
    api.post("/usage", json=batch(event("s2", ACME, "seats", 5, ago(hours=1))))
    signals = api.get(f"/accounts/{ACME}/signals").get_json()["signals"]
    assert [s["event_id"] for s in signals] == ["s2", "s1"]


def test_names_and_ids_longer_than_stored_are_422_too_long(api):
    r = api.put(f"/accounts/{'x' * 201}", json=account())
    assert (r.status_code, error_of(r)["code"]) == (422, "too_long")
    r = api.put(f"/accounts/{ACME}", json=account(name="n" * 201))
    assert (r.status_code, error_of(r)["field"]) == (422, "name")
    create(api)
    r = api.post("/usage", json=batch(event("i" * 201, ACME, "seats", 1, ago(hours=1))))
    assert (r.status_code, error_of(r)["code"], error_of(r)["index"]) == (422, "too_long", 0)


# --- input the database or the parser cannot take: a clear 4xx, never a 500 ----------------------

def _bad_requests(api):
    nul = "ac\u0000me"
    deep = "[" * 200_000 + "]" * 200_000
    return [
        ("put", "/accounts/acme", {"json": account(name=nul)}, 400, "malformed"),
        ("post", "/usage", {"json": batch(event(nul, "acme", "messages", 1, ago(hours=1)))}, 400, "malformed"),
        ("post", "/usage", {"json": batch(event("x" * 201, "acme", "messages", 1, ago(hours=1)))}, 422,
         "too_long"),
        ("post", "/usage", {"json": batch({"id": "e1", "account": "acme", "metric": "messages",
                                           "quantity": 1, "at": "0001-01-01T00:00:00+05:00"})},
         422, "invalid_timestamp"),
        ("get", "/accounts/ac%00me", {}, 400, "malformed"),
        ("get", "/accounts/acme?x=%00", {}, 400, "malformed"),
        ("post", "/accounts/acme/health", {"json": {"open_escalations": 10**12}}, 422,
         "invalid_health"),
        ("post", "/conversations/c-1/messages", {"json": {"channel": "sms", "text": nul}}, 400,
         "malformed"),
        ("post", "/conversations/c-1/messages",
         {"json": {"channel": "sms", "text": "hi", "id": "x" * 201}}, 422, "too_long"),
        ("post", "/usage", {"data": deep, "content_type": "application/json"}, 400, "malformed"),
    ]


@pytest.mark.parametrize("case", range(10))
def test_input_the_database_cannot_take_is_a_4xx_and_stores_nothing(api, case):
    assert api.put("/accounts/acme", json=account(contacts=[contact("c-1", phone="+13125550142")])
                   ).status_code == 201
    method, path, kwargs, status, code = _bad_requests(api)[case]
    r = getattr(api, method)(path, **kwargs)
    assert r.status_code == status, (path, r.get_data(as_text=True)[:300])
    assert error_of(r)["code"] == code
    assert api.get("/accounts/acme").get_json()["name"] == account()["name"]
    assert api.get("/accounts/acme/thread").get_json()["messages"] == []


def test_a_message_longer_than_any_channel_carries_is_a_422(api):
    assert api.put("/accounts/acme", json=account(contacts=[contact("c-1", phone="+13125550142")])
                   ).status_code == 201
    r = api.post("/conversations/c-1/messages", json={"channel": "sms", "text": "x" * 4097})
    assert r.status_code == 422 and error_of(r)["code"] == "text_too_long"
    ok = api.post("/conversations/c-1/messages", json={"channel": "sms", "text": "x" * 4096})
    assert ok.status_code == 200
