"""POST /api/v1/conversations/<contact>/messages sends nothing to the buyer unless asked, on
SQLite and PostgreSQL.

An integrator relays what a buyer wrote and gets the replies back to deliver itself: without
"deliver" (or with false) the replies are stored `relayed`, and no channel of ours sends or shows
them (not the phone dispatcher, not the web chat widget, not the sandbox phone). With "deliver":
true they are queued on the message's channel: SMS and WhatsApp go through the outbound
dispatcher (Twilio, or the sandbox), web chat through the widget's next poll.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from channels import webchat
from storage.outbox import DispatchStats as DeliveryStats
from storage.models import MessageRow
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, error_of, event
from tests.support.local_pages import signed_in

SECRET = "web-secret"
ACME, DANA, USER = "acme", "acme-dana", "u-dana"
PHONE = "+13125550142"
QUESTION = "how much would I be charged today?"


@pytest.fixture
def app(make_app):
    return make_app(CONTROL_SHARE="0", WEB_CHAT_SECRET=SECRET, BUSINESS_NAME="Acme Billing")


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def setup_account(api, **fields):
    """Dana, billing, reachable by SMS, by WhatsApp (the operator's number is her opt-in) and in
    the product (web chat)."""
    dana = contact(DANA, name="Dana", role="billing", phone=PHONE, web_user_id=USER, **fields)
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[dana]))
    assert r.status_code == 201, r.get_json()


def cross_and_send_the_opening(api, app):
    """4,800 messages: Starter crosses toward Growth; the dispatcher sends the opening."""
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    assert dispatch(app).sent == 1


def dispatch(app) -> DeliveryStats:
    """One pass of the SMS/WhatsApp dispatcher (sandbox: stored as sent, with an SB… id)."""
    return app.extensions["upgrade_chat"].dispatcher.dispatch_due()


def post(api, text, msg_id, channel="sms", who=DANA, **extra):
    return api.post(f"/conversations/{who}/messages",
                    json={"channel": channel, "text": text, "id": msg_id, **extra})


def say(api, text, msg_id, channel="sms", **extra) -> dict:
    r = post(api, text, msg_id, channel, **extra)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def replies_stored(app) -> list[tuple[str, str, str]]:
    """(channel, status, body) of every reply row, oldest first."""
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(MessageRow.channel, MessageRow.status, MessageRow.body)
            .where(MessageRow.direction == "out", MessageRow.kind == "reply")
            .order_by(MessageRow.id))]


def sent_by_us(app) -> list[str]:
    """Bodies a channel of ours handed to a provider (sandbox ids start with SB)."""
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return list(conn.scalars(select(MessageRow.body).where(
            MessageRow.direction == "out", MessageRow.provider_id.is_not(None))
            .order_by(MessageRow.id)))


def widget_shows(app) -> list[tuple[str, str]]:
    """What the buyer's web chat widget shows on a poll: (direction, body)."""
    headers = {"X-User-Id": USER, "X-Account": ACME,
               "X-User-Hash": webchat.user_hash(SECRET, USER)}
    r = app.test_client().get("/webchat/v1/thread", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return [(m["direction"], m["body"]) for m in r.get_json()["messages"]]


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "web"])
@pytest.mark.parametrize("extra", [{}, {"deliver": False}], ids=["no-deliver", "deliver-false"])
def test_a_relayed_message_is_answered_in_the_response_and_sent_to_the_buyer_nowhere(
        app, api, channel, extra):
    setup_account(api, whatsapp=PHONE)
    cross_and_send_the_opening(api, app)
    [opening] = sent_by_us(app)
    answer = say(api, QUESTION, "in-1", channel, **extra)
    assert "$105.00" in answer["replies"][0] and answer["state"] == "offered"

    assert dispatch(app) == DeliveryStats()  # nothing for the phone dispatcher
    assert sent_by_us(app) == [opening]
    shown = widget_shows(app)  # the widget shows what the buyer wrote, not our answer
    assert ("out", answer["replies"][0]) not in shown and ("in", QUESTION) in shown
    assert replies_stored(app) == [(channel, "relayed", answer["replies"][0])]
    view = api.get(f"/accounts/{ACME}/thread").get_json()
    assert [m["status"] for m in view["messages"] if m["kind"] == "reply"] == ["relayed"]


def test_the_sandbox_phone_marks_a_relayed_reply_as_not_sent(app, api):
    setup_account(api)
    cross_and_send_the_opening(api, app)
    say(api, QUESTION, "in-1")
    page = signed_in(app).get("/sandbox/phone").get_data(as_text=True)
    assert page.count('data-status="relayed"') == 1
    assert "relayed: returned to the API caller, not sent" in " ".join(page.split())


def test_a_relayed_reply_that_carries_the_opening_stands_for_it(app, api, clock):
    """At night the opening waits in the outbox; a relayed message gets the case in its reply,
    the queued opening is cancelled (the integrator delivered the case) and never goes out."""
    clock.now = clock.now.replace(hour=5)  # 23:00 in Chicago
    setup_account(api)
    events = [event(f"m{i}", ACME, "messages", 600, ago(clock.now, days=7 - i)) for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    answer = say(api, QUESTION, "in-1")
    assert answer["state"] == "offered" and answer["replies"][0].startswith("Acme Billing:")
    clock.now = clock.now.replace(hour=16)  # the opening's not_before has passed
    assert dispatch(app) == DeliveryStats(cancelled=1)  # its outbox job settles, sending nothing
    assert sent_by_us(app) == []


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_deliver_true_queues_the_replies_and_the_dispatcher_sends_them(app, api, channel):
    setup_account(api, whatsapp=PHONE)
    cross_and_send_the_opening(api, app)
    answer = say(api, QUESTION, "in-1", channel, deliver=True)
    assert "$105.00" in answer["replies"][0]
    assert replies_stored(app) == [(channel, "queued", answer["replies"][0])]
    assert ("out", answer["replies"][0]) not in widget_shows(app)  # not sent yet

    assert dispatch(app) == DeliveryStats(sent=1)
    assert sent_by_us(app)[1:] == answer["replies"]
    assert replies_stored(app) == [(channel, "sent", answer["replies"][0])]
    assert ("out", answer["replies"][0]) in widget_shows(app)  # the thread's history, once sent


def test_deliver_true_on_web_chat_is_delivered_by_the_widgets_next_poll(app, api):
    setup_account(api)
    cross_and_send_the_opening(api, app)
    answer = say(api, QUESTION, "in-1", "web", deliver=True)
    assert replies_stored(app) == [("web", "queued", answer["replies"][0])]
    assert dispatch(app) == DeliveryStats()  # web chat is not the phone dispatcher's
    assert ("out", answer["replies"][0]) in widget_shows(app)
    assert replies_stored(app) == [("web", "sent", answer["replies"][0])]


def test_deliver_true_reaches_a_buyer_without_a_thread_in_the_widget(app, api):
    """No case applies, so no thread: the answer belongs to no thread and is still delivered."""
    setup_account(api)
    answer = say(api, "what plan am I on?", "in-1", "web", deliver=True)
    assert answer["thread_id"] is None and answer["replies"]
    assert ("out", answer["replies"][0]) in widget_shows(app)
    assert [status for _, status, _ in replies_stored(app)] == ["sent"]


def test_a_repeated_id_with_deliver_true_queues_nothing_twice(app, api):
    setup_account(api)
    cross_and_send_the_opening(api, app)
    first = say(api, QUESTION, "in-1", deliver=True)
    again = say(api, QUESTION, "in-1", deliver=True)
    assert again["duplicate"] is True and again["replies"] == first["replies"]
    assert dispatch(app) == DeliveryStats(sent=1)
    late = say(api, QUESTION, "in-1")  # a retry without deliver changes nothing either
    assert late["duplicate"] is True and replies_stored(app) == [("sms", "sent", first["replies"][0])]


@pytest.mark.parametrize("value", ["yes", 1, 0, [], {}], ids=["string", "one", "zero", "array",
                                                              "object"])
def test_deliver_must_be_true_or_false(app, api, value):
    setup_account(api)
    r = post(api, QUESTION, "in-1", deliver=value)
    error = error_of(r)
    assert (r.status_code, error["code"], error["field"]) == (400, "malformed", "deliver")
    assert "true or false" in error["message"]
    assert replies_stored(app) == []  # nothing was recorded


def test_the_service_cannot_deliver_on_voice_and_says_so(app, api):
    setup_account(api)
    r = post(api, QUESTION, "in-1", "voice", deliver=True)
    error = error_of(r)
    assert (r.status_code, error["code"], error["field"]) == (422, "cannot_deliver", "deliver")
    assert "voice" in error["message"]
    assert replies_stored(app) == []
    assert say(api, QUESTION, "in-1", "voice")["replies"]  # relayed, it is answered
