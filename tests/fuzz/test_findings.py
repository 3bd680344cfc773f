"""What the fuzzers found, each kept as the minimal example that failed before its fix.

The document and the code disagreed about what a request may hold (schemathesis: schema-valid
input refused, schema-violating input accepted); each row below is one such request, checked
against channels/openapi.json and sent to the app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timezone

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from urllib.parse import quote_plus

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from core.audit import pseudonym
from storage import migrate
from storage.db import make_engine
from storage.models import AccountRow, AuditEventRow, MessageRow, ThreadRow, UsageEventRow
from tests.conftest import API_KEY, NOW
from tests.fuzz.conftest import SPEC, identity_headers, no_logged_traceback
from tests.fuzz.test_slack_fuzz import (URLENCODED, form, slack,  # noqa: F401 (a fixture)
                                       slack_lane_app, slack_post)
from tests.fuzz.test_twilio_fuzz import encode, forget_delivery, payload, post_signed, sent_sids
from tests.support import fake_slack, postgres
from web.inputs import NOT_BLANK, NUMERIC_STRING

DOCUMENT = json.loads(SPEC.read_text(encoding="utf-8"))
REGISTRY = Registry().with_resource("urn:spec", Resource.from_contents(
    DOCUMENT, default_specification=DRAFT202012))


def documented(schema: str, instance) -> bool:
    """Whether `instance` is valid for the document's components.schemas[schema]."""
    validator = Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{schema}"},
                                     registry=REGISTRY,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    return validator.is_valid(instance)


@pytest.fixture(scope="module")
def app(seeded):
    return seeded()


ACCOUNT = {"name": "Fuzz Co", "plan": "starter", "timezone": "America/New_York", "billing_day": 1}

# (what, schema, path, body, valid per the document, the app's status)
ROWS = [
    # The document said nothing of blank strings; the code refuses them (400). Now it says so.
    ("a blank event account", "UsageBatch", "/api/v1/usage",
     {"events": [{"account": "\t", "at": "2000-01-01T00:00:00Z", "id": 0, "metric": "0",
                  "quantity": 0}]}, False, 400),
    ("a blank relayed text", "InboundMessage", "/api/v1/conversations/acme-dana/messages",
     {"channel": "web", "text": "", "id": 0}, False, 400),
    ("a widget id of \\x1c: blank to str.strip(), not to JSON Schema's \\s",
     "WebInboundMessage", "/webchat/v1/messages", {"text": "hi", "id": "\x1c"}, False, 400),
    # A numeric string had any shape in the document; the code took Decimal's (also "1_0").
    ("an empty sentiment", "HealthInput", "/api/v1/accounts/acme-clinic/health",
     {"sentiment": ""}, False, 400),
    ("a sentiment with an underscore", "HealthInput", "/api/v1/accounts/acme-clinic/health",
     {"sentiment": "0_1"}, False, 400),
    ("a sentiment in other digits", "HealthInput", "/api/v1/accounts/acme-clinic/health",
     {"csat": "\u0664"}, False, 400),
    # A number beyond Decimal's exponent was "expected a number" (400): it is one, out of range.
    ("a sentiment too small to hold", "HealthInput", "/api/v1/accounts/acme-clinic/health",
     {"sentiment": "\x0b+0778196E-9193584421135052577"}, True, 422),
    # null is "absent" for every optional field (web.inputs.require); the document now says so.
    ("a null widget id", "WebInboundMessage", "/webchat/v1/messages",
     {"id": None, "text": "0"}, True, 200),
    ("a null relayed id and deliver", "InboundMessage", "/api/v1/conversations/acme-dana/messages",
     {"channel": "sms", "text": "hi", "id": None, "deliver": None}, True, 200),
    # Unknown fields are ignored everywhere; the widget's body said additionalProperties: false.
    ("an unknown field in a widget message", "WebInboundMessage", "/webchat/v1/messages",
     {"text": "0", "x-unknown": 42}, True, 200),
    # JSON has one number type, and JSON Schema's integer is any whole number: 8.0 is 8.
    ("a billing day written 8.0", "AccountInput", "/api/v1/accounts/fuzz-co",
     {**ACCOUNT, "billing_day": 8.0}, True, 201),
    # An empty plan_since was taken for an omitted one, silently.
    ("an empty plan_since", "AccountInput", "/api/v1/accounts/fuzz-co",
     {**ACCOUNT, "plan_since": ""}, False, 422),
]


@pytest.mark.parametrize("what, schema, path, body, valid, status", ROWS,
                         ids=[row[0] for row in ROWS])
def test_the_document_and_the_app_agree_on_what_a_request_may_hold(app, what, schema, path, body,
                                                                   valid, status):
    assert documented(schema, body) is valid
    if path.startswith("/webchat/"):
        headers = identity_headers("acme-clinic", "u-dana")
    else:
        headers = {"Authorization": f"Bearer {API_KEY}"}
    method = "PUT" if path.startswith("/api/v1/accounts/") and schema == "AccountInput" else "POST"
    response = app.test_client().open(path, method=method, json=body, headers=headers)
    assert response.status_code == status, response.get_json()
    if status >= 400:
        assert response.get_json()["error"]["code"]


def test_the_documents_not_blank_is_what_str_strip_leaves_something_of():
    not_blank = re.compile(NOT_BLANK)
    assert [c for c in range(sys.maxunicode + 1)
            if bool(not_blank.fullmatch(chr(c))) == chr(c).isspace()] == []


def test_the_document_uses_the_codes_patterns():
    schemas = DOCUMENT["components"]["schemas"]
    for field in ("csat", "sentiment"):
        assert schemas["HealthInput"]["properties"][field]["pattern"] == NUMERIC_STRING.pattern
    for schema, field in [("AccountInput", "name"), ("AccountInput", "timezone"),
                          ("ContactInput", "external_id"), ("UsageEvent", "id"),
                          ("UsageEvent", "account"), ("UsageEvent", "metric"),
                          ("InboundMessage", "text"), ("InboundMessage", "id"),
                          ("WebInboundMessage", "text"), ("WebInboundMessage", "id")]:
        assert schemas[schema]["properties"][field]["pattern"] == NOT_BLANK
    assert schemas["PlanName"]["pattern"] == NOT_BLANK


# --- Twilio -------------------------------------------------------------------------------------

def test_a_delivery_report_whose_error_code_holds_a_nul_is_refused_not_a_500(app, caplog):
    """/twilio/status stored the report's ErrorCode as it came: a NUL in it was a 500 on
    PostgreSQL (which cannot store one) and a NUL stored on SQLite. Twilio's codes are numbers;
    a report with another is not Twilio's (403) and changes nothing."""
    [sid, *_] = sent_sids(app)
    forget_delivery(app, sid)
    report = {**payload("status_delivered"), "MessageSid": sid, "SmsSid": sid,
              "MessageStatus": "queued", "ErrorCode": "\x00"}
    with no_logged_traceback(caplog):
        response = post_signed(app.test_client(), "/twilio/status", encode(list(report.items())))
    assert (response.status_code, response.get_data()) == (403, b"not a Twilio request")
    assert delivery(app, sid) == (None, None)
    report["ErrorCode"] = "30003"
    response = post_signed(app.test_client(), "/twilio/status", encode(list(report.items())))
    assert response.status_code == 204 and delivery(app, sid) == ("queued", "30003")


def delivery(app, sid: str) -> tuple[str | None, str | None]:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return conn.execute(select(MessageRow.delivery_status, MessageRow.last_error).where(
            MessageRow.provider_id == sid)).one()._tuple()


# --- Slack --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slack_app(seeded, slack):
    return slack_lane_app(seeded, slack)


def click_body(value="1", **changes) -> str:
    payload = {"type": "block_actions", "team": {"id": fake_slack.TEAM_ID},
               "user": {"id": "U0CSM", "name": "dana.kim"},
               "actions": [{"action_id": "schedule_call", "block_id": "escalation-1",
                            "value": value, "type": "button"}], **changes}
    return "payload=" + quote_plus(json.dumps(payload))


UNSIGNED = [  # bolt read the body before the signature, and the timestamp with int()
    ("a body that is no JSON", "{", URLENCODED, {}),
    ("a JSON body that is no object", "[1]", "application/json", {}),
    ("a payload that is no JSON", "payload=%7B", URLENCODED, {}),
    ("a timestamp that is a word", "command=/x", URLENCODED,
     {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=1"}),
    # (found by the CI budget in the first version of the fix: hmac.compare_digest's TypeError)
    ("a signature that is not ASCII", "command=/x", URLENCODED,
     {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": "v0=\u00e9"}),
]


@pytest.mark.parametrize("what, body, content_type, headers", UNSIGNED,
                         ids=[row[0] for row in UNSIGNED])
def test_an_unsigned_slack_request_is_a_401_not_a_500(slack_app, caplog, what, body,
                                                      content_type, headers):
    if headers.get("X-Slack-Request-Timestamp") == "now":
        headers = {**headers, "X-Slack-Request-Timestamp": str(int(time.time()))}
    with no_logged_traceback(caplog):
        response = slack_app.test_client().post(
            "/slack/events", data=body, headers={"Content-Type": content_type, **headers})
    assert (response.status_code, response.get_json()) == (401, {"error": "invalid request"})


SIGNED_BUT_NOT_SLACKS = [  # bolt's middleware took Slack's shapes for granted
    ("an event that is a string", json.dumps({"type": "event_callback", "event": ""}),
     "application/json"),
    ("a container that is a string", click_body(container="x"), URLENCODED),
    ("a user that is a list", click_body(user=[1]), URLENCODED),
    ("a click without actions", click_body(actions=[]), URLENCODED),
    ("a click whose action has no action_id", click_body(actions=[{"value": "1"}]), URLENCODED),
    ("a NUL in a slash command", form([("command", "/upgrade-chat"), ("text", "a\x00b")]),
     URLENCODED),
]


@pytest.mark.parametrize("what, body, content_type", SIGNED_BUT_NOT_SLACKS,
                         ids=[row[0] for row in SIGNED_BUT_NOT_SLACKS])
def test_a_signed_request_without_slacks_shapes_is_a_400_not_a_500(slack_app, caplog, what, body,
                                                                   content_type):
    with no_logged_traceback(caplog):
        response = slack_post(slack_app.test_client(), body, content_type)
    assert response.status_code == 400 and response.get_json()["error"] == "malformed"


LISTENER_INPUT = [  # our listeners read Slack's values without checking them
    ("an escalation id past any integer column", click_body(value="9" * 30), URLENCODED),
    ("a user that is a bare id", click_body(user="U0CSM"), URLENCODED),
    ("a slash command whose text is a number",
     json.dumps({"command": "/upgrade-chat", "text": 5, "user_id": ["U0CSM"]}),
     "application/json"),
]


@pytest.mark.parametrize("what, body, content_type", LISTENER_INPUT,
                         ids=[row[0] for row in LISTENER_INPUT])
def test_slacks_values_of_another_type_are_answered_not_a_500(slack_app, caplog, what, body,
                                                              content_type):
    with no_logged_traceback(caplog):
        response = slack_post(slack_app.test_client(), body, content_type)
    assert response.status_code == 200, response.get_data()


# --- the audit trail ----------------------------------------------------------------------------

def test_a_request_naming_an_id_the_trail_cannot_keep_is_on_the_record_by_its_pseudonym(
        app, slack_app, caplog):
    """An account id over 300 characters (the trail's column), or with a NUL, was logged as
    'audit event not written' on PostgreSQL and left off the record: now it is recorded under
    its pseudonym, as a contact's id is."""
    long_id = "a" * 400
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with no_logged_traceback(caplog):
        assert app.test_client().get(f"/api/v1/accounts/{long_id}",
                                     headers=headers).status_code == 404
        assert app.test_client().get("/api/v1/accounts/a%00b", headers=headers).status_code == 400
        command = form([("command", "/upgrade-chat"), ("text", "\u00bd" * 301),
                        ("user_id", "U" * 250)])
        assert slack_post(slack_app.test_client(), command, URLENCODED).status_code == 200
    recorded = audit_object_ids(app)
    assert {pseudonym(long_id), pseudonym("a\x00b"), pseudonym("\u00bd" * 301)} <= recorded


def audit_object_ids(app) -> set[str]:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return set(conn.scalars(select(AuditEventRow.object_id)))


# --- contacts replaced --------------------------------------------------------------------------

def test_contacts_who_sent_the_same_message_id_can_be_replaced(app):
    """Two contacts of an account relayed messages with the same id on one channel (their ids
    are their own: the widget's and an integrator's ids repeat across people). A PUT that
    dropped both was a 409 'retry it' for ever: their messages, left with no contact, collided
    in the unique index kept for senders who never were contacts. Now the PUT goes through and
    the messages stay."""
    client = app.test_client()
    people = [{"external_id": f"dup-{n}", "name": f"P{n}", "role": "billing"} for n in (1, 2)]
    body = {"name": "Dup Co", "plan": "starter", "timezone": "UTC", "billing_day": 1,
            "contacts": people}
    assert client.put("/api/v1/accounts/dup-co", json=body, headers=AUTH_HEADERS).status_code == 201
    for person in people:
        r = client.post(f"/api/v1/conversations/{person['external_id']}/messages",
                        json={"channel": "web", "text": "hello", "id": "w-1"}, headers=AUTH_HEADERS)
        assert r.status_code == 200, r.get_json()
    before = message_count(app)
    r = client.put("/api/v1/accounts/dup-co", json={**body, "contacts": []}, headers=AUTH_HEADERS)
    assert r.status_code == 200, r.get_json()
    assert message_count(app) == before
    again = {**body, "contacts": people[:1]}  # a contact listed again is a new contact
    r = client.put("/api/v1/accounts/dup-co", json=again, headers=AUTH_HEADERS)
    assert r.status_code == 200
    r = client.post("/api/v1/conversations/dup-1/messages",
                    json={"channel": "web", "text": "hello", "id": "w-1"}, headers=AUTH_HEADERS)
    assert r.status_code == 200 and not r.get_json()["duplicate"]


AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def message_count(app) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return len(conn.execute(select(MessageRow.id)).all())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    return postgres.create_database(request.getfixturevalue("pg_admin_url"),
                                    "upgrade_chat_fuzz_migrate")


def test_0010_keeps_strangers_messages_unique_and_leaves_removed_contacts_messages_out(
        empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, "0009")
        row = {"channel": "sms", "direction": "in", "kind": "inbound", "body": "hello?",
               "status": "received", "at": NOW, "attempts": 0, "provider_id": "SM1"}
        with engine.begin() as conn:
            account = conn.execute(insert(AccountRow).returning(AccountRow.id), {
                "external_id": "a", "name": "A", "plan": "starter", "vertical": "generic",
                "timezone": "UTC", "billing_day": 1, "created_at": NOW, "updated_at": NOW,
                "plan_since": NOW, "open_escalations": 0}).scalar_one()
            thread = conn.execute(insert(ThreadRow).returning(ThreadRow.id), {
                "account_id": account, "current_plan": "starter", "target_plan": "growth",
                "direction": "up", "state": "offered", "opened_at": NOW,
                "updated_at": NOW}).scalar_one()
            conn.execute(insert(MessageRow), row)  # a stranger's, as 0004..0009 kept it
            conn.execute(insert(MessageRow), {**row, "thread_id": thread, "provider_id": "SM2"})
        migrate.upgrade(engine)
        with engine.connect() as conn:
            kinds = conn.execute(select(MessageRow.provider_id, MessageRow.kind)
                                 .order_by(MessageRow.id)).all()
        assert [tuple(k) for k in kinds] == [("SM1", "unmatched"), ("SM2", "inbound")]
        with engine.begin() as conn:  # a removed contact's message with the same id: kept
            conn.execute(insert(MessageRow), {**row, "thread_id": thread})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a stranger's again: not
            conn.execute(insert(MessageRow), {**row, "kind": "unmatched"})
    finally:
        engine.dispose()


# --- usage --------------------------------------------------------------------------------------

def test_an_event_time_with_an_offset_past_15_59_is_stored_in_utc_not_a_500(app):
    """Python reads offsets up to ±23:59, PostgreSQL up to ±15:59: a batch's times went to
    PostgreSQL with their own offset (the bulk insert's JSON) and "-21:41" was a 500 there."""
    event = {"id": "offset-2141", "account": "acme-clinic", "metric": "messages", "quantity": 1,
             "at": "2026-11-25T03:19:11-21:41"}
    r = app.test_client().post("/api/v1/usage", json={"events": [event]}, headers=AUTH_HEADERS)
    assert r.status_code == 200 and r.get_json()["accepted"] == 1, r.get_json()
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        at = conn.scalar(select(UsageEventRow.at).where(UsageEventRow.event_id == "offset-2141"))
    assert at == datetime(2026, 11, 26, 1, 0, 11, tzinfo=timezone.utc)
