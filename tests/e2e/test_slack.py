"""The CSM lane on Slack end to end, on SQLite and PostgreSQL: an escalation is posted once to a
local fake Slack, really signed button clicks and slash commands act once, HIPAA verticals get the
minimum necessary, and without Slack the /sandbox/csm page does the same."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from channels.slack import SlackEscalationSender
from storage.models import EscalationRow, MessageRow
from core.jobs import OutboxJob
from tests.conftest import Api
from tests.e2e.helpers import NOW, account, ago, batch, contact, event
from tests.support import fake_slack
from tests.support.local_pages import signed_in

ACME, DANA = "acme", "acme-dana"
SECRET = "slack-signing-secret"
CHANNEL = "C0CSM"
CSM_ID = "U0CSM"
OPERATOR_URL = "https://ops.example"


@pytest.fixture
def slack():
    with fake_slack.serving() as fake:
        fake.add_user(CSM_ID, "Dana", "Dana Kim")
        yield fake


@pytest.fixture
def app(make_app, slack):
    app = make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme", SLACK_BOT_TOKEN=fake_slack.BOT_TOKEN,
                   SLACK_SIGNING_SECRET=SECRET, SLACK_CHANNEL=CHANNEL,
                   SLACK_API_URL=slack.base_url, OPERATOR_URL=OPERATOR_URL)
    assert "slack" in app.blueprints  # create_app wires the lane when Slack is configured
    return app


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


# --- building the scene -------------------------------------------------------------------------

def escalate(api, vertical="generic", text="can I talk to a real person?"):
    """The §1 buyer crosses 4,500 messages, gets the case by SMS and asks for a person."""
    body = account(plan="starter", vertical=vertical, name="Acme Dental",
                   contacts=[contact(DANA, name="Dana", role="billing", phone="+13125550142")])
    assert api.put(f"/accounts/{ACME}", json=body).status_code == 201
    events = [event(f"m{i}", ACME, "messages", 600, ago(NOW, days=7 - i)) for i in range(8)]
    events.append(event("m-seats", ACME, "seats", 3, ago(NOW, days=1)))
    assert api.post("/usage", json=batch(*events)).status_code == 200
    rt = api.client.application.extensions["upgrade_chat"]
    rt.dispatcher.dispatch_due()  # the opening goes out (sandbox SMS)
    r = api.post(f"/conversations/{DANA}/messages",
                 json={"channel": "sms", "text": "we are over our limit again", "id": "in-0"})
    assert r.status_code == 200
    r = api.post(f"/conversations/{DANA}/messages", json={"channel": "sms", "text": text, "id": "in-1"})
    assert r.get_json()["state"] == "escalated"


def run_outbox(app):
    return app.extensions["upgrade_chat"].dispatcher.dispatch_due()


def escalation_row(app) -> EscalationRow:
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        return conn.execute(select(EscalationRow)).one()


def queued_replies(app) -> list[str]:
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        return list(conn.scalars(select(MessageRow.body).where(
            MessageRow.direction == "out", MessageRow.kind == "reply",
            MessageRow.status == "queued")))


def signed_post(client, body: str, *, secret: str = SECRET, headers: dict | None = None):
    ts = str(int(time.time()))  # bolt checks the timestamp against the real clock
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return client.post("/slack/events", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature, **(headers or {})})


def click(client, action: str, escalation_id: int, message_ts: str, **kw):
    payload = {
        "type": "block_actions", "api_app_id": "A0TEST", "token": "legacy-token",
        "team": {"id": fake_slack.TEAM_ID, "domain": "test"},
        "user": {"id": CSM_ID, "username": "dana.kim", "name": "dana.kim",
                 "team_id": fake_slack.TEAM_ID},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL,
                      "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "csm"},
        "trigger_id": "1.2.3", "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "actions": [{"type": "button", "action_id": action, "block_id": f"escalation-{escalation_id}",
                     "value": str(escalation_id), "action_ts": "1700000001.000001",
                     "text": {"type": "plain_text", "text": action}}],
    }
    return signed_post(client, urlencode({"payload": json.dumps(payload)}), **kw)


def blocks_text(call) -> str:
    return json.dumps(call.args["blocks"]) + call.args.get("text", "")


def buttons(call) -> list[str]:
    return [e["action_id"] for b in call.args["blocks"] if b["type"] == "actions"
            for e in b["elements"]]


# --- tests --------------------------------------------------------------------------------------

def test_a_badly_signed_request_is_refused_by_bolt_and_changes_nothing(api, app, slack):
    escalate(api)
    run_outbox(app)
    row = escalation_row(app)
    ts = row.case["slack"]["ts"]
    r = click(api.client, "claim", row.id, ts, secret="not-the-secret")
    assert r.status_code in (401, 403)
    assert escalation_row(app).status == "open"
    assert slack.calls_to("chat.update") == [] and queued_replies(app) == []


def test_an_escalation_is_posted_once_with_the_case_health_and_buttons(api, app, slack):
    escalate(api)
    assert slack.calls_to("chat.postMessage") == []  # nothing from the request itself
    stats = run_outbox(app)
    assert stats.sent == 1
    [post] = slack.calls_to("chat.postMessage")
    assert post.args["channel"] == CHANNEL and post.token == fake_slack.BOT_TOKEN
    text = blocks_text(post)
    row = escalation_row(app)
    for expected in (ACME, "Acme Dental", "starter", "Generic", "CSAT", "Asked for a person",
                     "Cost now $529.00/mo vs $499.00/mo", "Charge today $105.00",
                     "can I talk to a real person?", "we are over our limit again",
                     f"{OPERATOR_URL}/accounts/{ACME}"):
        assert expected in text, expected
    assert buttons(post) == ["claim", "schedule_call", "resolved"]
    values = {e["value"] for b in post.args["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert values == {str(row.id)}
    assert row.case["slack"] == {"channel": CHANNEL, "ts": "1700000000.000001"}
    assert run_outbox(app).sent == 0
    # A retried job (the outcome was not recorded) finds the post and does not post again.
    sender = SlackEscalationSender.from_config(app.config, app.extensions["upgrade_chat"].uow,
                                               app.extensions["upgrade_chat"].catalog)
    sender(OutboxJob(1, "csm_escalation", f"escalation:{row.id}", {"escalation_id": row.id}, 2))
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_a_hipaa_vertical_gets_only_the_account_id_the_reason_and_a_link(api, app, slack):
    escalate(api, vertical="healthcare")
    run_outbox(app)
    [post] = slack.calls_to("chat.postMessage")
    text = blocks_text(post)
    assert ACME in text and "Asked for a person" in text
    assert f"{OPERATOR_URL}/accounts/{ACME}" in text
    for leaked in ("$", "Acme Dental", "real person", "over our limit", "CSAT", "messages",
                   "starter", "Healthcare"):
        assert leaked not in text, leaked
    assert buttons(post) == ["claim", "schedule_call", "resolved"]


def test_claim_records_the_csm_updates_the_message_and_tells_the_buyer_once(api, app, slack):
    escalate(api)
    run_outbox(app)
    row = escalation_row(app)
    ts = row.case["slack"]["ts"]
    r = click(api.client, "claim", row.id, ts)
    assert r.status_code == 200
    claimed = escalation_row(app)
    assert claimed.status == "claimed"
    assert claimed.case["claimed_by"]["id"] == CSM_ID
    assert claimed.case["claimed_by"]["name"] == "Dana"
    [update] = slack.calls_to("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (CHANNEL, ts)
    assert f"Claimed by <@{CSM_ID}>" in blocks_text(update)
    assert "claim" not in buttons(update)
    assert queued_replies(app) == ["Dana from Acme will follow up with you personally."]
    # Slack retries the same delivery, and a second click comes in: nothing more happens.
    assert click(api.client, "claim", row.id, ts, headers={"X-Slack-Retry-Num": "1",
                                                           "X-Slack-Retry-Reason": "http_timeout"}
                 ).status_code == 200
    assert click(api.client, "claim", row.id, ts).status_code == 200
    assert len(slack.calls_to("chat.update")) == 1
    assert len(queued_replies(app)) == 1
    assert escalation_row(app).case["claimed_by"] == claimed.case["claimed_by"]


def test_schedule_call_and_resolved_update_the_escalation_and_the_message(api, app, slack):
    escalate(api)
    run_outbox(app)
    row = escalation_row(app)
    ts = row.case["slack"]["ts"]
    assert click(api.client, "schedule_call", row.id, ts).status_code == 200
    requested = escalation_row(app).case["call_requested"]
    assert requested["id"] == CSM_ID
    # Who to call, on what number and channel, and from when: 15:00 UTC is 9:00 AM in Chicago,
    # the number's zone, the first minute of the allowed window.
    assert requested["call"] == {
        "contact": "Dana", "number": "+13125550142", "opted_out": False, "last_channel": "sms",
        "at": NOW.isoformat(), "zone": "America/Chicago", "local": "9:00 AM on Thu Nov 26"}
    text = blocks_text(slack.calls_to("chat.update")[-1])
    assert "Call requested by" in text
    assert "Call Dana at +13125550142 (phone, last wrote by SMS) from 9:00 AM on Thu Nov 26 " \
           "their time (America/Chicago)." in text
    assert click(api.client, "resolved", row.id, ts).status_code == 200
    assert escalation_row(app).status == "resolved"
    last = slack.calls_to("chat.update")[-1]
    assert "Resolved by" in blocks_text(last) and buttons(last) == []
    assert click(api.client, "claim", row.id, ts).status_code == 200  # too late: nothing
    assert escalation_row(app).status == "resolved" and len(slack.calls_to("chat.update")) == 2
    assert queued_replies(app) == []


def test_a_call_scheduled_at_night_is_offered_for_the_next_allowed_minute(api, app, slack,
                                                                          clock):
    escalate(api)
    run_outbox(app)
    row = escalation_row(app)
    clock.now = NOW + timedelta(hours=12)  # 3:00 UTC: 9 PM in Chicago, quiet hours
    assert click(api.client, "schedule_call", row.id, row.case["slack"]["ts"]).status_code == 200
    call = escalation_row(app).case["call_requested"]["call"]
    assert (call["at"], call["local"]) == ((NOW + timedelta(days=1)).isoformat(),
                                           "9:00 AM on Fri Nov 27")


def test_a_failed_message_update_after_a_click_is_redrawn_from_the_outbox(api, app, slack, clock):
    escalate(api)
    run_outbox(app)
    row = escalation_row(app)
    ts = row.case["slack"]["ts"]
    slack.fail("chat.update", "ratelimited", status=429)
    assert click(api.client, "claim", row.id, ts).status_code == 200
    assert escalation_row(app).status == "claimed"  # the click acted; only its message lags
    [failed] = slack.calls_to("chat.update")
    slack.fail("chat.update", status=500)  # Slack still down on the first redraw
    assert click(api.client, "claim", row.id, ts).status_code == 200  # a second click: nothing
    assert len(slack.calls_to("chat.update")) == 1

    assert run_outbox(app).retried == 1
    clock.now = NOW + timedelta(minutes=1)
    assert run_outbox(app).sent == 1
    redraw = slack.calls_to("chat.update")[-1]
    assert (redraw.args["channel"], redraw.args["ts"]) == (CHANNEL, ts)
    assert f"Claimed by <@{CSM_ID}>" in blocks_text(redraw) and "claim" not in buttons(redraw)
    clock.now = NOW + timedelta(minutes=10)
    assert run_outbox(app).sent == 0  # redrawn once
    assert len(slack.calls_to("chat.update")) == 3
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_slack_down_means_the_outbox_retries_later_and_posts_once(api, app, slack, clock):
    escalate(api)
    slack.fail("chat.postMessage", status=500)
    slack.fail("chat.postMessage", "ratelimited", status=429)
    assert run_outbox(app).retried == 1
    assert "slack" not in escalation_row(app).case
    clock.now = NOW + timedelta(seconds=11)
    assert run_outbox(app).retried == 1  # rate limited
    assert run_outbox(app).sent == 0  # not due yet
    clock.now = NOW + timedelta(seconds=40)
    assert run_outbox(app).sent == 1
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert escalation_row(app).case["slack"]["ts"] == "1700000000.000001"  # the one success


def test_a_wrong_channel_fails_the_job_at_once(make_app, slack):
    app = make_app(CONTROL_SHARE="0", SLACK_BOT_TOKEN=fake_slack.BOT_TOKEN,
                   SLACK_SIGNING_SECRET=SECRET, SLACK_CHANNEL="C0GONE",
                   SLACK_API_URL=slack.base_url)
    escalate(Api(app.test_client()))
    slack.fail("chat.postMessage", "channel_not_found")
    assert run_outbox(app).failed == 1


def test_the_slash_command_answers_with_usage_case_and_thread(api, app, slack):
    escalate(api)
    body = urlencode({"token": "legacy", "team_id": fake_slack.TEAM_ID, "team_domain": "test",
                      "channel_id": CHANNEL, "channel_name": "csm", "user_id": CSM_ID,
                      "user_name": "dana.kim", "command": "/upgrade-chat", "text": ACME,
                      "api_app_id": "A0TEST", "response_url": "https://hooks.slack.com/commands/x",
                      "trigger_id": "1.2.3"})
    r = signed_post(api.client, body)
    assert r.status_code == 200
    answer = r.get_json()
    assert answer["response_type"] == "ephemeral"
    for expected in ("Acme Dental", "4,800 messages", "$529.00", "Thread: escalated",
                     "Asked for a person (open)"):
        assert expected in answer["text"], expected


def test_the_slash_command_keeps_to_the_minimum_for_hipaa(api, app):
    escalate(api, vertical="healthcare")
    body = urlencode({"team_id": fake_slack.TEAM_ID, "user_id": CSM_ID, "command": "/upgrade-chat",
                      "text": ACME, "channel_id": CHANNEL, "response_url": "https://x"})
    text = signed_post(api.client, body).get_json()["text"]
    assert ACME in text and "Asked for a person" in text and "/accounts/acme" in text
    assert "$" not in text and "messages" not in text and "Acme Dental" not in text


# --- without Slack ------------------------------------------------------------------------------

@pytest.fixture
def sandbox_app(make_app):
    app = make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme")
    assert "sandbox_csm" in app.blueprints  # no Slack credentials: the local page
    return app


def test_without_slack_the_sandbox_page_lists_the_escalation_and_claims_it(sandbox_app):
    api = Api(signed_in(sandbox_app))  # /sandbox/csm: opened by the link scripts/serve prints
    escalate(api)
    assert "slack" not in sandbox_app.blueprints
    assert sandbox_app.extensions["upgrade_chat"].dispatcher.dispatch_due().sent == 1  # logged
    page = api.client.get("/sandbox/csm").get_data(as_text=True)
    row = escalation_row(sandbox_app)
    assert f"Escalation #{row.id}: Asked for a person" in page
    assert "Cost now $529.00/mo" in page and "can I talk to a real person?" in page
    assert 'value="claim"' in page
    r = api.client.post(f"/sandbox/csm/{row.id}", data={"action": "claim", "csm": "Sam"})
    assert r.status_code == 302
    assert escalation_row(sandbox_app).status == "claimed"
    assert queued_replies(sandbox_app) == ["Sam from Acme will follow up with you personally."]
    api.client.post(f"/sandbox/csm/{row.id}", data={"action": "claim", "csm": "Lee"})
    assert len(queued_replies(sandbox_app)) == 1
    page = api.client.get("/sandbox/csm").get_data(as_text=True)
    assert "Claimed by Sam" in page and 'value="claim"' not in page


def test_the_sandbox_page_answers_only_this_machine(sandbox_app):
    r = sandbox_app.test_client().get("/sandbox/csm", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 404


def test_buyer_text_is_not_auto_linked_and_the_account_link_is_encoded(make_app, slack):
    from channels.slack import account_link

    assert account_link("https://ops.example/", "acme/../admin?x=1") == (
        "https://ops.example/accounts/acme%2F..%2Fadmin%3Fx%3D1")
    app = make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme", SLACK_BOT_TOKEN=fake_slack.BOT_TOKEN,
                   SLACK_SIGNING_SECRET=SECRET, SLACK_CHANNEL=CHANNEL,
                   SLACK_API_URL=slack.base_url, OPERATOR_URL=OPERATOR_URL)
    escalate(Api(app.test_client()), text="talk to a person, see http://evil.example/pay @here")
    run_outbox(app)
    [post] = slack.calls_to("chat.postMessage")
    [messages] = [b for b in post.args["blocks"] if b.get("block_id") == "messages"]
    assert messages["text"]["verbatim"] is True
