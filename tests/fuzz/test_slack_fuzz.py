"""/slack/events fuzzed past the signature: button clicks (interactive payloads of any JSON),
slash commands (forms of any content), JSON event bodies and any form at all, each signed with
the app's signing secret as Slack signs (slack_sdk's SignatureVerifier), against the real
slack-bolt app and a local fake Slack Web API. Properties: never a 5xx, no stack trace in the
answer, nothing logged with a traceback."""

from __future__ import annotations

import json
import time
from urllib.parse import quote_plus

import pytest
from hypothesis import given, strategies as st
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from storage.models import EscalationRow
from tests.conftest import API_KEY
from tests.fuzz.conftest import ACCOUNTS, assert_no_trace, budget, no_logged_traceback
from tests.fuzz.strategies import INTEGERS, json_values, mostly, text
from tests.support import fake_slack

SECRET = "fuzz-slack-signing-secret"
CHANNEL = "C0CSM"
CSM = "U0CSM"
ACTIONS = ["claim", "schedule_call", "resolved"]


@pytest.fixture(scope="module")
def slack():
    with fake_slack.serving() as fake:
        fake.add_user(CSM, "Dana", "Dana Kim")
        yield fake


@pytest.fixture(scope="module")
def app(seeded, slack):
    return slack_lane_app(seeded, slack)


def slack_lane_app(seeded, slack):
    """The seeded app with the Slack lane, and an escalation posted to the fake Slack (a demo
    buyer asked for a person)."""
    app = seeded(SLACK_BOT_TOKEN=fake_slack.BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET,
                 SLACK_CHANNEL=CHANNEL, SLACK_API_URL=slack.base_url,
                 OPERATOR_URL="https://ops.example")
    client = app.test_client()
    r = client.post("/api/v1/conversations/acme-dana/messages",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    json={"channel": "sms", "text": "can I talk to a real person?"})
    assert r.status_code == 200 and r.get_json()["state"] == "escalated", r.get_json()
    app.extensions["upgrade_chat"].dispatcher.dispatch_due()
    return app


def escalations(app) -> list[tuple[int, str]]:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        rows = conn.execute(select(EscalationRow.id, EscalationRow.case)).all()
    return [(row.id, (row.case or {}).get("slack", {}).get("ts", "1700000000.000001"))
            for row in rows]


def slack_post(client, body: str, content_type: str, headers=None):
    ts = str(int(time.time()))  # bolt checks the timestamp against the real clock
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
    return client.post("/slack/events", data=body.encode(), headers={
        "Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature, **(headers or {})})


def form(pairs) -> str:
    return "&".join(f"{quote_plus(str(k), errors='surrogatepass')}="
                    f"{quote_plus(str(v), errors='surrogatepass')}" for k, v in pairs)


def anything(leaves: int = 6):
    return mostly(text(), json_values(leaves), tenths=5)


@st.composite
def clicks(draw, escalation_ids: list[tuple[int, str]]):
    """A block_actions payload: Slack's shape with its parts drawn from anything."""
    escalation, ts = draw(st.sampled_from(escalation_ids))
    value = draw(mostly(st.just(str(escalation)), INTEGERS.map(str), INTEGERS, anything(),
                        st.just(None), tenths=5))
    action = {"type": "button", "action_id": draw(mostly(st.sampled_from(ACTIONS), anything())),
              "block_id": f"escalation-{escalation}", "value": value,
              "action_ts": "1700000001.000001", "text": {"type": "plain_text", "text": "x"}}
    payload = {
        "type": "block_actions", "api_app_id": "A0TEST", "token": "legacy-token",
        "team": {"id": fake_slack.TEAM_ID, "domain": "test"},
        "user": draw(mostly(st.just({"id": CSM, "username": "dana.kim", "name": "dana.kim",
                                     "team_id": fake_slack.TEAM_ID}),
                            st.fixed_dictionaries({"id": anything(), "name": anything()}),
                            anything())),
        "container": draw(mostly(st.just({"type": "message", "message_ts": ts,
                                          "channel_id": CHANNEL, "is_ephemeral": False}),
                                 st.fixed_dictionaries({"message_ts": anything(),
                                                        "channel_id": anything()}),
                                 anything())),
        "channel": {"id": CHANNEL, "name": "csm"}, "trigger_id": "1.2.3",
        "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "actions": draw(mostly(st.just([action]), st.lists(anything(4), max_size=3), anything())),
    }
    for key in draw(st.sets(st.sampled_from(sorted(payload)), max_size=2)):
        if draw(st.booleans()):
            del payload[key]
        else:
            payload[key] = draw(st.one_of(st.none(), anything()))
    return form([("payload", json.dumps(payload))])


def commands():
    """A slash command: Slack's form with the command's text, and its other fields, drawn."""
    base = {"token": "legacy", "team_id": fake_slack.TEAM_ID, "team_domain": "test",
            "channel_id": CHANNEL, "channel_name": "csm", "user_id": CSM,
            "user_name": "dana.kim", "api_app_id": "A0TEST",
            "response_url": "https://hooks.slack.com/commands/x", "trigger_id": "1.2.3"}
    return st.tuples(
        mostly(st.just("/upgrade-chat"), text(), tenths=9),
        mostly(st.sampled_from(ACCOUNTS).flatmap(
            lambda a: st.sampled_from([a, f" {a} extra words", a.upper()])), text(), tenths=5),
        st.lists(st.tuples(text(12), text()), max_size=3),
    ).map(lambda t: form([*base.items(), ("command", t[0]), ("text", t[1]), *t[2]]))


URLENCODED = "application/x-www-form-urlencoded"


@given(data=st.data())
@budget()
def test_a_signed_click_command_or_event_of_any_content_is_never_a_500(app, caplog, data):
    kind = data.draw(st.sampled_from(["click", "command", "event", "form"]))
    if kind == "click":
        body, content_type = data.draw(clicks(escalations(app))), URLENCODED
    elif kind == "command":
        body, content_type = data.draw(commands()), URLENCODED
    elif kind == "event":
        event = data.draw(mostly(st.fixed_dictionaries({
            "type": st.sampled_from(["event_callback", "url_verification", "app_rate_limited"]),
            "challenge": anything(), "team_id": anything(), "event": anything()}),
            json_values(), tenths=6))
        body, content_type = json.dumps(event), "application/json"
    else:
        pairs = data.draw(st.lists(st.tuples(text(12), text()), max_size=4))
        body, content_type = form(pairs), URLENCODED
    with no_logged_traceback(caplog):
        response = slack_post(app.test_client(), body, content_type)
    assert response.status_code < 500, response.get_data()
    assert_no_trace(response.get_data(as_text=True))


@given(body=st.one_of(st.binary(max_size=200), text().map(
           lambda t: t.encode("utf-8", errors="surrogatepass"))),
       content_type=st.sampled_from([URLENCODED, "application/json", "text/plain", ""]),
       timestamp=st.one_of(st.none(), st.just("now"), text(), INTEGERS.map(str)),
       signature=st.one_of(st.none(), text(), st.just("v0=" + "0" * 64)))
@budget(0.5)
def test_an_unsigned_or_badly_signed_request_is_a_401_whatever_it_holds(app, caplog, body,
                                                                         content_type, timestamp,
                                                                         signature):
    headers = {"Content-Type": content_type}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = (str(int(time.time())) if timestamp == "now"
                                                else timestamp)
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    headers = {k: v for k, v in headers.items() if "\n" not in v and "\r" not in v}
    with no_logged_traceback(caplog):
        response = app.test_client().post("/slack/events", data=body, headers=headers)
    assert response.status_code == 401, response.get_data()
    assert response.get_json() == {"error": "invalid request"}
