"""The web chat channel end to end through the test client, on SQLite and PostgreSQL: a signed
identity or nothing, the web opening delivered on the buyer's next visit, Upgrade and Confirm
through the same engine, a cursor, and a thread started by SMS continued in the widget."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event, func, select

from channels import webchat
from core import handlers
from storage.models import ContactRow, EscalationRow, PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, error_of, event
from tests.support.local_pages import signed_in

SECRET = "s3cret"
ACME, DANA, USER = "acme-clinic", "acme-dana", "u-dana"
PHONE = "+13125550142"


def web_app(make_app, **config):
    """The app with a web chat secret (create_app registers the web chat routes)."""
    return make_app(CONTROL_SHARE="0", WEB_CHAT_SECRET=SECRET, **config)


@pytest.fixture
def app(make_app):
    return web_app(make_app)


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


class Widget:
    """What embed.js does, through the test client: signed polls and posts."""

    def __init__(self, client, user=USER, account_id=ACME, user_hash=None) -> None:
        self.client = client
        self.headers = {"X-User-Id": user, "X-Account": account_id,
                        "X-User-Hash": user_hash if user_hash is not None
                        else webchat.user_hash(SECRET, user)}
        self.cursor = 0

    def poll(self, after=None):
        after = self.cursor if after is None else after
        r = self.client.get(f"/webchat/v1/thread?after={after}", headers=self.headers)
        if r.status_code == 200:
            self.cursor = r.get_json()["cursor"]
        return r

    def say(self, text, msg_id):
        return self.client.post("/webchat/v1/messages", headers=self.headers,
                                json={"text": text, "id": msg_id})


def setup_account(api, phone=None):
    c = contact(DANA, name="Dana", role="billing", web_user_id=USER)
    if phone:
        c["phone"] = phone
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[c], vertical="healthcare"))
    assert r.status_code == 201, r.get_json()


def cross(api, prefix="m"):
    """4,800 messages over 8 days: Starter crosses 4,500 toward Growth."""
    events = [event(f"{prefix}{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def thread_of(api):
    return api.get(f"/accounts/{ACME}/thread").get_json()


def plan_changes(app):
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(PlanChangeRow))


def web_active_at(app):
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        return conn.scalar(select(ContactRow.web_active_at).where(ContactRow.external_id == DANA))


@pytest.mark.parametrize("headers", [
    {},
    {"X-User-Id": USER, "X-Account": ACME},
    {"X-User-Id": USER, "X-Account": ACME, "X-User-Hash": "0" * 64},
    {"X-User-Id": USER, "X-Account": ACME, "X-User-Hash": webchat.user_hash("wrong", USER)},
    {"X-User-Id": "u-mallory", "X-Account": ACME, "X-User-Hash": webchat.user_hash(SECRET, USER)},
], ids=["nothing", "no-hash", "forged-hash", "other-secret", "hash-of-another-user"])
def test_a_missing_or_forged_hash_gets_a_403_and_no_data(app, api, headers):
    setup_account(api)
    cross(api)
    client = app.test_client()
    for r in (client.get("/webchat/v1/thread", headers=headers),
              client.post("/webchat/v1/messages", headers=headers, json={"text": "yes", "id": "x"})):
        assert r.status_code == 403
        assert error_of(r)["code"] == "forbidden"
    assert web_active_at(app) is None  # nothing was touched
    assert thread_of(api)["state"] == "open"
    assert len(thread_of(api)["messages"]) == 1  # the queued opening only, no inbound "yes"


def test_a_signed_user_who_is_no_contact_of_the_account_gets_a_403(app, api):
    setup_account(api)
    other = api.put("/accounts/other", json=account(contacts=[contact("o-1", web_user_id="u-o")]))
    assert other.status_code == 201
    for user, acct in (("u-stranger", ACME), (USER, "other"), ("u-o", ACME)):
        r = Widget(app.test_client(), user=user, account_id=acct).poll()
        assert r.status_code == 403, (user, acct)
        assert error_of(r)["code"] == "forbidden"
        assert "messages" not in r.get_json()


def test_an_identity_in_the_query_string_is_refused_where_access_logs_would_keep_it(app, api):
    setup_account(api)
    h = webchat.user_hash(SECRET, USER)
    client = app.test_client()
    r = client.get(f"/webchat/v1/thread?user_id={USER}&account={ACME}&user_hash={h}")
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert "headers" in error_of(r)["message"]
    # Even beside valid headers: the hash in the URL is refused, nothing is read or written.
    widget = Widget(client)
    r = client.post("/webchat/v1/messages?user_hash=" + h, headers=widget.headers,
                    json={"text": "hi", "id": "w-1"})
    assert r.status_code == 403
    assert Widget(client).poll().get_json()["messages"] == []


def test_without_a_configured_secret_every_request_is_refused(make_app):
    # With a Twilio account (not the sandbox, which generates a secret of its own) and no
    # WEB_CHAT_SECRET: web chat is off.
    app = make_app(CONTROL_SHARE="0", TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN="t",
                   TWILIO_SMS_FROM="+15005550006", PUBLIC_BASE_URL="https://chat.example.com")
    assert not app.config["WEB_CHAT_SECRET"]
    r = Widget(app.test_client()).poll()
    assert r.status_code == 403
    assert error_of(r)["code"] == "forbidden"


def test_a_web_only_contact_gets_the_opening_on_the_first_poll_and_the_widget_opens(app, api):
    setup_account(api)
    cross(api)
    detail = thread_of(api)
    assert detail["state"] == "open"
    assert detail["last_channel"] == "web"
    assert [m["status"] for m in detail["messages"]] == ["queued"]

    widget = Widget(app.test_client())
    data = widget.poll().get_json()
    assert data["open"] is True
    assert data["state"] == "offered"
    assert [m["kind"] for m in data["messages"]] == ["opening"]
    assert data["messages"][0]["channel"] == "web"
    assert data["opening_id"] == data["messages"][0]["id"]
    card = data["case"]
    assert card["current_plan"] == "starter" and card["target_plan"] == "growth"
    assert card["cost_current"] == "529.00" and card["cost_target"] == "499.00"
    assert card["claims_saving"] is True and card["monthly_saving"] == "30.00"
    assert card["prorated_charge_today"] == "105.00"
    assert card["thresholds_crossed"] == [{"metric": "messages", "value": 4800, "threshold": 4500}]
    assert card["unlocks"] == ["workflows", "api_access"]
    assert card["unlock_names"] == ["workflows", "API access"]  # as the opening words them
    assert "workflows and API access" in data["messages"][0]["body"]
    # The card's words, built on the server: as conditional as the message, in its vertical's words.
    assert card["title"] == "Starter → Growth"
    assert card["summary"] == "Growth would have cost $30.00 less"
    assert card["lines"] == [
        "At your last 30 days of usage, Growth would have cost $499.00 instead of $529.00 "
        "($30.00 less).",
        "Upgrading today costs $105.00 for the rest of this billing period.",
        "Growth includes 10 staff seats, workflows and API access."]
    assert "would have cost $499.00 instead of $529.00" in data["messages"][0]["body"]
    assert card["crossed"] == ["4,800 patient messages in the last 30 days"]
    assert "4,800 patient messages in the last 30 days" in data["messages"][0]["body"]
    assert card["buttons"] == {"offered": "Upgrade to Growth",
                               "awaiting_confirmation": "Confirm upgrade to Growth"}
    assert (card["gives_up"], card["gives_up_names"]) == ([], [])
    assert not any("save" in text.lower() for text in card_texts(card))
    assert thread_of(api)["state"] == "offered"
    assert [m["status"] for m in thread_of(api)["messages"]] == ["sent"]
    assert web_active_at(app) is not None

    again = widget.poll().get_json()
    assert again["messages"] == [] and again["open"] is False
    assert again["cursor"] == data["cursor"]
    assert again["case"] == card


def card_texts(card) -> list[str]:
    """Every sentence the widget shows from a card."""
    return [card["title"], card["summary"], *card["lines"], *card["crossed"],
            *card["buttons"].values()]


def test_a_down_tier_card_says_what_the_lower_plan_does_not_include_and_its_buttons_say_move(app, api):
    """Scale -> Growth for a healthcare account: the card names what Growth lacks in the
    vertical's words (catalog.feature_name), charges nothing today, and no button says Upgrade."""
    c = contact(DANA, name="Dana", role="billing", web_user_id=USER)
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[c], vertical="healthcare", plan="scale",
                                                  plan_since=ago(days=60)))
    assert r.status_code == 201, r.get_json()
    r = api.post("/usage", json=batch(event("m-1", ACME, "messages", 900, ago(hours=2)),
                                      event("s-1", ACME, "seats", 2, ago(hours=2))))
    assert [s["direction"] for s in r.get_json()["signals"]] == ["down"]

    widget = Widget(app.test_client())
    data = widget.poll().get_json()
    assert (data["state"], data["open"]) == ("offered", True)
    card = data["case"]
    assert (card["direction"], card["current_plan"], card["target_plan"]) == ("down", "scale", "growth")
    assert card["gives_up"] == ["sso", "hipaa_baa", "audit_export"]
    assert card["gives_up_names"] == ["single sign-on", "a signed BAA for your patient messages",
                                      "audit export for HIPAA reviews"]
    assert card["title"] == "Scale → Growth"
    assert card["summary"] == "Growth would have cost $1,000.00 less"
    assert card["lines"] == [
        "At your last 30 days of usage, Growth would have cost $499.00 instead of $1,499.00 "
        "($1,000.00 less).",
        "Nothing is charged today; the change would take effect at your next billing period, "
        "on Dec 5.",
        "Growth does not include single sign-on, a signed BAA for your patient messages or audit "
        "export for HIPAA reviews."]
    assert card["crossed"] == [] and card["unlocks"] == [] and card["unlock_names"] == []
    assert card["buttons"] == {"offered": "Move to Growth",
                               "awaiting_confirmation": "Confirm move to Growth"}
    texts = card_texts(card)
    assert not any("upgrade" in t.lower() or "save" in t.lower() for t in texts), texts

    # The buttons still send "yes" and "confirm"; the labels follow the state.
    assert widget.say("yes", "w-1").get_json()["state"] == "awaiting_confirmation"
    assert widget.poll().get_json()["case"]["buttons"]["awaiting_confirmation"] == \
        "Confirm move to Growth"


def test_a_card_without_a_saving_states_the_difference_plainly_and_never_says_save(app, api):
    """4 stylist chairs on Starter: Growth costs more at this usage; the card says how much more."""
    c = contact(DANA, name="Dana", role="billing", web_user_id=USER)
    assert api.put(f"/accounts/{ACME}", json=account(contacts=[c], vertical="salon")).status_code == 201
    r = api.post("/usage", json=batch(event("m-1", ACME, "messages", 900, ago(days=3)),
                                      event("s-1", ACME, "seats", 4, ago(hours=2))))
    assert r.status_code == 200, r.get_json()
    card = Widget(app.test_client()).poll().get_json()["case"]
    assert (card["claims_saving"], card["monthly_saving"], card["monthly_difference"]) == \
        (False, None, "310.00")
    assert card["summary"] == "Growth: $310.00 more a month"
    assert card["lines"][0] == ("At your last 30 days of usage, Growth would have cost $499.00 "
                                "instead of $189.00 ($310.00 more a month).")
    assert card["crossed"] == ["4 stylist chairs in use; Starter includes 3"]
    assert card["lines"][2] == "Growth includes 10 stylist chairs, workflows and API access."
    assert not any("save" in t.lower() for t in card_texts(card))


@pytest.mark.parametrize("vertical, usage, met, crossed", [
    ("healthcare", dict(messages=4800, seats=3), ("messages", 4800, 4500),
     "4,800 patient messages in the last 30 days"),
    ("real_estate", dict(messages=900, seats=4), ("seats", 4, 4),
     "4 agent seats in use; Starter includes 3"),
    ("it_msp", dict(messages=900, seats=2, integrations=2), ("integrations", 2, 2),
     "2 PSA and RMM integrations connected, the most Starter allows"),
    ("it_msp", dict(messages=900, seats=2, integrations=3), ("integrations", 3, 2),
     "3 PSA and RMM integrations connected, over the 2 Starter allows"),
    ("it_msp", dict(messages=900, seats=2, features={"workflows": 3}), ("feature:workflows", 3, 3),
     "tried workflows 3 times in the last 30 days; Starter does not include it"),
    ("healthcare", dict(messages=900, seats=2, features={"api_access": 1}), ("feature:api_access", 1, 1),
     "tried API access 1 time in the last 30 days; Starter does not include it"),
])
def test_a_crossing_is_shown_in_the_verticals_words_not_as_metric_and_threshold(
        catalog, vertical, usage, met, crossed):
    from core.case import AccountTerms, build_case
    from core.usage import UsageMatrix
    from tests.e2e.helpers import NOW

    terms = AccountTerms("starter", vertical, "America/Chicago", 5, NOW - timedelta(days=90))
    case = build_case(catalog, terms, UsageMatrix(**usage), catalog.plan("growth"), [met], NOW)
    card = webchat.card_json(case, catalog, vertical)
    assert card["crossed"] == [crossed]
    assert card["thresholds_crossed"] == [dict(zip(("metric", "value", "threshold"), met))]
    internal = ("≥", "feature:", f"{met[0]} {met[1]:,}")  # the old "messages 4,800 ≥ 4,500"
    assert not any(word in t for t in card_texts(card) for word in internal), card_texts(card)


def test_upgrade_then_confirm_upgrades_once_and_a_second_confirm_answers_coherently(app, api):
    setup_account(api)
    cross(api)
    widget = Widget(app.test_client())
    widget.poll()

    r = widget.say("yes", "w-1")
    assert r.status_code == 200
    step = r.get_json()
    assert step["state"] == "awaiting_confirmation"
    assert "105.00" in " ".join(step["replies"])
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "starter"

    done = widget.say("confirm", "w-2").get_json()
    assert done["state"] == "upgraded"
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "growth"
    assert plan_changes(app) == 1

    retry = widget.say("confirm", "w-2").get_json()  # the same click delivered twice
    assert retry["duplicate"] is True and retry["replies"] == done["replies"]
    second = widget.say("confirm", "w-3").get_json()  # a second click
    assert second["replies"] and second["state"] == "upgraded"
    assert plan_changes(app) == 1
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "growth"

    data = widget.poll().get_json()
    assert data["state"] == "upgraded"
    assert data["case"] is None and data["open"] is False
    assert data["current_plan"] == "growth"
    bodies = [(m["direction"], m["body"]) for m in data["messages"]]
    assert ("in", "yes") in bodies and ("in", "confirm") in bodies


def statements_during(app, call):
    """The SQL statements the app's engine runs while `call()` runs."""
    engine = app.extensions["upgrade_chat"].engine
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(" ".join(statement.split()).upper())

    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    return seen


def test_quiet_polls_only_read_and_a_new_opening_still_reaches_an_active_buyer(app, api, clock):
    setup_account(api)
    widget = Widget(app.test_client())
    assert widget.poll().status_code == 200  # the buyer is in the product: touched
    first_seen = web_active_at(app)
    assert first_seen is not None

    clock.now += timedelta(seconds=20)
    writes = [s for s in statements_during(app, widget.poll)
              if s.startswith(("INSERT", "UPDATE", "DELETE")) or "FOR UPDATE" in s]
    assert writes == []  # nothing new: no write, no row lock, no writer lock
    assert web_active_at(app) == first_seen

    cross(api)  # the buyer was seen 20 s ago: the opening waits for web chat
    assert thread_of(api)["last_channel"] == "web"
    clock.now += timedelta(seconds=10)
    data = widget.poll().get_json()
    assert data["open"] is True and [m["kind"] for m in data["messages"]] == ["opening"]
    assert thread_of(api)["state"] == "offered"
    assert web_active_at(app) == first_seen  # delivered without re-touching (30 s < 1 min)

    clock.now += handlers.TOUCH_EVERY
    widget.poll()
    assert web_active_at(app) == clock.now  # a minute on: the activity is written again


def test_the_cursor_returns_only_newer_messages(app, api):
    setup_account(api)
    cross(api)
    widget = Widget(app.test_client())
    first = widget.poll().get_json()
    opening_id = first["messages"][0]["id"]
    widget.say("how much would I be charged today?", "w-1")
    newer = widget.poll().get_json()["messages"]
    assert [m["direction"] for m in newer] == ["in", "out"]
    assert all(m["id"] > opening_id for m in newer)
    assert widget.poll().get_json()["messages"] == []
    everything = widget.poll(after=0).get_json()["messages"]
    assert [m["id"] for m in everything] == [opening_id] + [m["id"] for m in newer]
    assert widget.poll(after=newer[0]["id"]).get_json()["messages"] == newer[1:]
    for after in ("-1", "x", "\u00b2", "1e3", str(2**63)):  # "²" passes str.isdigit()
        bad = widget.client.get(f"/webchat/v1/thread?after={after}", headers=widget.headers)
        assert bad.status_code == 400 and error_of(bad)["field"] == "after", after
    assert widget.poll(after=2**63 - 1).get_json()["messages"] == []


def test_a_thread_started_by_sms_shows_in_the_widget_and_continues_there(app, api):
    setup_account(api, phone=PHONE)
    cross(api)
    assert thread_of(api)["last_channel"] == "sms"  # never seen in the product: SMS
    assert app.test_cli_runner().invoke(args=["jobs", "run"]).exit_code == 0
    r = api.post(f"/conversations/{DANA}/messages",  # answered by SMS, by the service
                 json={"channel": "sms", "text": "how much would I be charged today?", "id": "SM1",
                       "deliver": True})
    assert r.status_code == 200, r.get_json()
    assert "outbox: 1 sent" in app.test_cli_runner().invoke(args=["jobs", "run"]).output

    widget = Widget(app.test_client())
    data = widget.poll().get_json()
    assert [(m["channel"], m["direction"]) for m in data["messages"]] == [
        ("sms", "out"), ("sms", "in"), ("sms", "out")]
    assert data["state"] == "offered"
    assert data["open"] is False  # the buyer already answered the opening by SMS
    assert data["case"]["target_plan"] == "growth"

    step = widget.say("yes", "w-1").get_json()
    assert step["state"] == "awaiting_confirmation"
    assert thread_of(api)["last_channel"] == "web"
    assert widget.poll().get_json()["messages"][0]["channel"] == "web"


def test_a_buyer_who_opted_out_sees_answers_but_the_widget_does_not_open(app, api):
    setup_account(api)
    cross(api)
    widget = Widget(app.test_client())
    assert widget.say("stop messaging me", "w-1").status_code == 200
    data = widget.poll().get_json()
    assert data["opted_out"] is True and data["open"] is False
    assert data["state"] == "opted_out"
    assert [m["direction"] for m in data["messages"]][-2:] == ["in", "out"]


def test_bad_messages_are_400_json(app, api):
    setup_account(api)
    widget = Widget(app.test_client())
    for body in ({}, {"text": ""}, {"text": 5}, {"text": "hi", "id": ["x"]}):
        r = widget.client.post("/webchat/v1/messages", headers=widget.headers, json=body)
        assert r.status_code == 400, body
        assert error_of(r)["code"]


def test_embed_js_is_served_with_cors_and_the_demo_page_signs_dana(app):
    client = app.test_client()
    r = client.get("/embed.js")
    assert r.status_code == 200
    assert r.mimetype == "application/javascript"
    assert "attachShadow" in r.get_data(as_text=True)
    pre = client.options("/webchat/v1/thread", headers={
        "Origin": "https://saas.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-user-id, x-account, x-user-hash"})
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-User-Hash" in pre.headers["Access-Control-Allow-Headers"]

    signed_in(app, client)  # /demo is a local page: opened by the link scripts/serve prints
    page = client.get("/demo")
    assert page.status_code == 200  # tests run in the sandbox (no Twilio account)
    html = page.get_data(as_text=True)
    assert 'data-user-id="u-dana"' in html and 'data-account="acme-clinic"' in html
    assert f'data-user-hash="{webchat.user_hash(SECRET, "u-dana")}"' in html

    # Any demo account's web contact, e.g. the down-tier harbor-realty; nothing else.
    page = client.get("/demo?account=harbor-realty").get_data(as_text=True)
    assert 'data-user-id="u-sam"' in page and 'data-account="harbor-realty"' in page
    assert f'data-user-hash="{webchat.user_hash(SECRET, "u-sam")}"' in page
    assert "Harbor Realty" in page and "Agent seats" in page
    assert client.get("/demo?account=nobody").status_code == 404


def test_a_csms_follow_up_on_a_web_thread_reaches_the_widget(app, api):
    from core import csm

    setup_account(api)
    cross(api)
    widget = Widget(app.test_client())
    widget.poll()
    assert widget.say("can I talk to a person please", "w-1").get_json()["state"] == "escalated"
    [escalation] = thread_of(api)["escalations"]
    assert escalation["reason"] == "human"
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        escalation_id = conn.scalar(select(EscalationRow.id))
    clock = app.extensions["upgrade_chat"].clock
    widget.poll()  # the buyer's message and the bot's answer
    data = widget.poll().get_json()
    assert data["messages"] == []
    rt = app.extensions["upgrade_chat"]
    csm.act(rt.uow, rt.settings.channels, escalation_id, csm.Action.CLAIM, "U1", "Sam Kim",
            "Acme", clock())

    data = widget.poll().get_json()
    [notice] = data["messages"]
    assert (notice["direction"], notice["channel"], notice["kind"]) == ("out", "web", "reply")
    assert "Sam Kim from Acme will follow up" in notice["body"]
    assert data["open"] is False  # a notice, not a prompt: the widget marks it unread instead
    assert thread_of(api)["messages"][-1]["status"] == "sent"
    assert widget.poll().get_json()["messages"] == []  # delivered once


def test_nul_characters_or_deep_nesting_are_a_400_not_a_500(app, api):
    setup_account(api)
    widget = Widget(app.test_client())
    r = widget.client.post("/webchat/v1/messages", headers=widget.headers, json={"text": "h\u0000i"})
    assert r.status_code == 400 and error_of(r)["code"] == "malformed"
    r = widget.client.post("/webchat/v1/messages", headers=widget.headers,
                           data="[" * 200_000, content_type="application/json")
    assert r.status_code == 400
    nul_account = {**widget.headers, "X-Account": "acme-clinic\u0000"}
    r = widget.client.get("/webchat/v1/thread", headers=nul_account)
    assert r.status_code == 400 and error_of(r)["code"] == "malformed"


def test_the_call_me_button_shows_for_a_buyer_with_a_phone_and_books_a_call(app, api):
    """The card offers "Call me" only to a buyer we may call; its text books a call back at the
    next allowed minute, and the reply says when (no CSM is pulled in for it)."""
    setup_account(api)  # web only: no number to call
    cross(api)
    widget = Widget(app.test_client())
    assert "call" not in widget.poll().get_json()["case"]["buttons"]

    api.put(f"/accounts/{ACME}", json=account(contacts=[
        {**contact(DANA, name="Dana", role="billing", web_user_id=USER), "phone": PHONE}],
        vertical="healthcare"))
    card = widget.poll().get_json()["case"]
    assert card["buttons"]["call"] == "Call me"
    answer = widget.say("Please call me", "w-call").get_json()
    assert "will ring you at" in answer["replies"][-1]
    t = thread_of(api)
    [call] = t["calls"]
    assert (call["status"], call["reason"]) == ("scheduled", "callback")
    assert t["escalations"] == []
