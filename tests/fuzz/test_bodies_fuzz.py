"""The API's and the widget's JSON parsers, fuzzed: usage batches, account PUTs and health,
relayed conversation messages, the widget's messages and polls, with values of every type and
shape, seeded ids some of the time, and raw bodies that are no JSON at all. Properties: the
documented statuses only, every error the JSON envelope with a code and a message, nothing
stored by a refused request, what was accepted stored, no stack trace anywhere."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from urllib.parse import quote

import pytest
from hypothesis import given, strategies as st
from sqlalchemy import func, select

from storage.models import MessageRow, UsageEventRow
from tests.conftest import API_KEY, NOW
from tests.e2e.helpers import error_of, iso
from tests.fuzz.conftest import (ACCOUNTS, CONTACT_IDS, WEB_USERS, assert_no_trace, budget,
                                 identity_headers, no_logged_traceback)
from tests.fuzz.strategies import (ABSENT, INTEGERS, NUMBERS, either, huge, json_values, mostly,
                                   objects, text, words)

AUTH = {"Authorization": f"Bearer {API_KEY}"}
METRICS = ["messages", "seats", "integrations", "feature:workflows", "feature:api_access"]


@pytest.fixture(scope="module")
def app(seeded):
    return seeded()


def count(app, model) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))


def answered(response, statuses) -> dict | None:
    """The answer's JSON after checking it is one of `statuses`, an error in the envelope when
    it is an error, and free of any trace; the error object, or None on success."""
    body = response.get_data(as_text=True)
    assert response.status_code in statuses, f"{response.status_code}: {body[:2000]}"
    assert_no_trace(body)
    if response.status_code >= 400:
        return error_of(response)
    assert response.is_json
    return None


# --- values -------------------------------------------------------------------------------------

def _at(minutes: int, offset: int) -> str:
    """NOW moved by `minutes`, written in a zone `offset` minutes from UTC (up to ±23:59, which
    Python reads and PostgreSQL does not past ±15:59)."""
    return (NOW + timedelta(minutes=minutes)).astimezone(
        timezone(timedelta(minutes=offset))).isoformat()


TIMES = mostly(
    either(
        st.integers(-40 * 24 * 60, 10).map(lambda minutes: iso(NOW + timedelta(minutes=minutes))),
        st.builds(_at, st.integers(-40 * 24 * 60, 10),
                  st.integers(-23 * 60 - 59, 23 * 60 + 59))),
    st.sampled_from(["2026-11-26T09:30:00+05:30", "2026-11-26T09:30:00", "2026-11-26",
                     "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                     "2026-11-26t09:30z",
                     "2026-02-30T00:00:00Z", "24:00", " 2026-11-26T09:30:00Z "]),
    words(), tenths=7)
QUANTITIES = mostly(st.integers(0, 5000), INTEGERS, INTEGERS.map(str), NUMBERS,
                    st.sampled_from(["+7", " 8 ", "0x10", "1e3"]), tenths=6)
IDS = st.one_of(words(), INTEGERS, st.uuids().map(str))
TIMEZONES = mostly(st.sampled_from(["America/Chicago", "Europe/London", "UTC", "Etc/GMT+12",
                                    "America/Argentina/ComodRivadavia", "EST5EDT",
                                    "Asia/Kathmandu"]),
                   st.sampled_from(["localtime", "", "../../etc/passwd", "america/chicago"]),
                   words())
PLANS = mostly(st.sampled_from(["starter", "growth", "scale"]),
               st.sampled_from(["Starter", "enterprise", " growth"]), words())
VERTICALS = mostly(st.sampled_from(["generic", "healthcare", "real_estate", "salon", "sales",
                                    "it_msp"]), words())
PHONES = mostly(st.sampled_from(["+13125550142", "(212) 555-0142", "+442079460958",
                                 "whatsapp:+13125550142", "+1 312 555 0199"]),
                st.sampled_from(["+1", "+999999999999999999", "0", "phone"]), words(), tenths=6)


def events():
    return objects({"id": IDS, "account": mostly(st.sampled_from(ACCOUNTS), words()),
                    "metric": mostly(st.sampled_from(METRICS), words()), "quantity": QUANTITIES,
                    "at": TIMES})


def contacts():
    return objects({
        "external_id": mostly(st.uuids().map(str), st.sampled_from(CONTACT_IDS), IDS),
        "name": st.one_of(st.just(ABSENT), words()),
        "role": mostly(st.sampled_from(["billing", "admin", "member"]), st.just("owner")),
        "phone": st.one_of(st.just(ABSENT), PHONES), "whatsapp": st.one_of(st.just(ABSENT), PHONES),
        "web_user_id": st.one_of(st.just(ABSENT), words()),
        "email": st.one_of(st.just(ABSENT), words())})


def accounts():
    return objects({
        "name": mostly(st.sampled_from(["Acme", "Ünïcode Co", "x" * 200]), words()),
        "plan": PLANS, "vertical": st.one_of(st.just(ABSENT), VERTICALS), "timezone": TIMEZONES,
        "billing_day": mostly(st.integers(1, 28), st.integers(-1, 31), INTEGERS),
        "contacts": st.one_of(st.just(ABSENT), st.lists(
            mostly(contacts(), json_values(4), tenths=9), max_size=2)),
        "plan_since": st.one_of(st.just(ABSENT), TIMES)})


def path_id(ids: list[str]):
    """A path segment: a seeded id, or any text, escaped as a client would."""
    escaped = text(60).map(lambda t: quote(t, safe="", errors="surrogatepass"))
    return mostly(st.sampled_from(ids), escaped, tenths=6)


# Bodies that are no JSON object: not JSON, not UTF-8, too deep, numbers past every type.
RAW = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"null", b"[]", b"{", b'{"a":', b"NaN", b'{"events": NaN}',
                     b'{"events": [{"quantity": Infinity}]}', b"1e999999", b'"\\ud800"',
                     b'{"text": "\\u0000"}', b"\xef\xbb\xbf{}", b'{"a": 1, "a": 2}']),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 200_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    huge(1_000, 200_000).map(lambda t: json.dumps({"text": t, "events": [t]}).encode()))


def raw_or(strategy):
    """Mostly a JSON body from `strategy`, sometimes any JSON value, sometimes raw bytes."""
    return mostly(strategy.map(lambda b: json.dumps(b).encode()),
                  json_values().map(lambda b: json.dumps(b).encode()), RAW, tenths=8)


def post_json(client, method: str, path: str, body: bytes, headers: dict):
    return client.open(path, method=method, data=body,
                       headers={**headers, "Content-Type": "application/json"})


# --- the tests ----------------------------------------------------------------------------------

@given(body=raw_or(objects({
    "events": st.lists(mostly(events(), json_values(4), tenths=9), min_size=1, max_size=6)},
    tenths=9)))
@budget()
def test_a_usage_batch_is_stored_whole_or_refused_whole(app, caplog, body):
    before = count(app, UsageEventRow)
    with no_logged_traceback(caplog):
        response = post_json(app.test_client(), "POST", "/api/v1/usage", body, AUTH)
    err = answered(response, (200, 400, 422))
    stored = count(app, UsageEventRow) - before
    if err is not None:
        assert stored == 0, "a refused batch stored events"
        batch = json.loads(body)["events"] if err.get("index") is not None else None
        if batch is not None:
            assert 0 <= err["index"] < len(batch)
        return
    result = response.get_json()
    assert result["accepted"] + result["duplicates"] == len(json.loads(body)["events"])
    assert stored == result["accepted"], "accepted events were not stored"


@given(contact=path_id(CONTACT_IDS), body=raw_or(objects({
    "channel": mostly(st.sampled_from(["sms", "whatsapp", "web", "voice"]),
                      st.sampled_from(["email", "SMS", ""])),
    "text": st.one_of(words(), st.sampled_from(["yes", "confirm", "STOP", "START", "HELP",
                                                "how much today?", "person"])),
    "id": st.one_of(st.just(ABSENT), IDS),
    "deliver": st.one_of(st.just(ABSENT), st.booleans(), st.sampled_from(["true", 1]))})))
@budget()
def test_a_relayed_message_is_answered_or_refused_and_a_refusal_stores_nothing(app, caplog,
                                                                             contact, body):
    before = count(app, MessageRow)
    with no_logged_traceback(caplog):
        response = post_json(app.test_client(), "POST",
                             f"/api/v1/conversations/{contact}/messages", body, AUTH)
    err = answered(response, (200, 400, 404, 405, 422))
    if err is not None:
        assert count(app, MessageRow) == before, "a refused message stored something"
    else:
        assert all(isinstance(r, str) and r for r in response.get_json()["replies"])


@given(who=st.sampled_from(WEB_USERS), body=raw_or(objects({
    "text": st.one_of(words(), st.sampled_from(["yes", "confirm", "no", "person"])),
    "id": st.one_of(st.just(ABSENT), IDS)})),
    after=mostly(st.none(), st.integers(0, 10**6).map(str), INTEGERS.map(str), text()))
@budget()
def test_the_widget_answers_a_message_and_a_poll_of_any_shape(app, caplog, who, body, after):
    client = app.test_client()
    headers = identity_headers(*who)
    before = count(app, MessageRow)
    with no_logged_traceback(caplog):
        response = post_json(client, "POST", "/webchat/v1/messages", body, headers)
        err = answered(response, (200, 400, 403, 422))
        if err is not None:
            assert count(app, MessageRow) == before, "a refused message stored something"
        query = "" if after is None else "?after=" + quote(after, safe="", errors="surrogatepass")
        answered(client.get("/webchat/v1/thread" + query, headers=headers), (200, 400, 403))


# Last: a PUT replaces the demo accounts' contacts, whom the tests above write as.
@given(external_id=path_id(ACCOUNTS), body=raw_or(accounts()),
       health=raw_or(objects({
           "csat": st.one_of(st.just(ABSENT), NUMBERS, NUMBERS.map(str), words()),
           "sentiment": st.one_of(st.just(ABSENT), NUMBERS, NUMBERS.map(str), words()),
           "open_escalations": st.one_of(st.just(ABSENT), st.integers(0, 5), INTEGERS)})))
@budget()
def test_an_account_put_or_health_report_changes_the_account_or_nothing(app, caplog, external_id,
                                                                       body, health):
    client = app.test_client()
    path = f"/api/v1/accounts/{external_id}"
    before = client.get(path, headers=AUTH)
    with no_logged_traceback(caplog):
        put = post_json(client, "PUT", path, body, AUTH)
        put_error = answered(put, (200, 201, 400, 404, 405, 422))
        after_put = client.get(path, headers=AUTH)
        report = post_json(client, "POST", f"{path}/health", health, AUTH)
        health_error = answered(report, (200, 400, 404, 405, 422))
        after = client.get(path, headers=AUTH)
    if put_error is not None:
        assert after_put.get_data() == before.get_data(), "a refused PUT changed the account"
    else:
        assert after_put.get_json()["name"] == json.loads(body)["name"]
    if health_error is not None:
        assert after.get_data() == after_put.get_data(), "a refused report changed the account"
    elif report.status_code == 200:
        assert report.get_json()["health"] == after.get_json()["health"]
