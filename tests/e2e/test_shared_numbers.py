"""A phone number shared by contacts of several accounts, end to end on SQLite and PostgreSQL:
really signed Twilio webhooks, the demo accounts, and the rule of core.routing (docs/
architecture.md, "Which account a message belongs to").

The scenario is the one the README's curl session used to create: its example contact (Pat of
Demo Co) had the phone (212) 555-1234, which is also the demo's Sam Ortiz of Harbor Realty, whose
down-tier awaited his confirmation. A "confirm" typed on that phone after Demo Co's opening went
to Sam (the first contact with the number) and confirmed Harbor's down-tier.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from channels import webchat
from channels.twilio_messaging import InboundMessage, process_inbound
from core import handlers
from storage.models import AccountRow, MessageRow, PlanChangeRow, ThreadRow
from tests.conftest import Api
from tests.e2e.test_twilio_inbound import BASE, TOKEN, Twilio, new_sid, replies, run_jobs
from tests.support.concurrency import at_once

SHARED = "+12125551234"  # Sam Ortiz of Harbor Realty in the demo data
DEMO_CO, HARBOR = "demo-co", "harbor-realty"
QUESTION = ("This number gets messages about more than one account: Demo Co and Harbor Realty. "
            "Which business is this about? Reply with its name.")
SECRET = "s3cret"


@pytest.fixture
def app(make_app):
    return make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0", DEMO=True,
                    BUSINESS_NAME="Acme Billing", SUPPORT_CONTACT="help@acme.example",
                    WEB_CHAT_SECRET=SECRET)


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


@pytest.fixture
def twilio(app) -> Twilio:
    return Twilio(app.test_client())


def say(twilio, body: str, sid: str | None = None, medium: str = "sms") -> list[str]:
    return replies(twilio.text(body, sid, medium=medium, number=SHARED))


def readme_demo_co(api, **fields) -> None:
    """The README's curl session: Demo Co with Pat on (212) 555-1234, and the usage that crosses
    Starter's 4-seat threshold; the scheduler's next pass sends the opening."""
    body = {"name": "Demo Co", "plan": "starter", "vertical": "salon",
            "timezone": "America/New_York", "billing_day": 5,
            "contacts": [{"external_id": "demo-co-pat", "name": "Pat", "role": "billing",
                          "phone": "(212) 555-1234", **fields}]}
    assert api.put(f"/accounts/{DEMO_CO}", json=body).status_code == 201
    r = api.post("/usage", json={"events": [
        {"id": "evt-1", "account": DEMO_CO, "metric": "seats", "quantity": 4,
         "at": "2026-11-26T09:00:00Z"},
        {"id": "evt-2", "account": DEMO_CO, "metric": "messages", "quantity": 900,
         "at": "2026-11-25T10:00:00Z"}]})
    assert r.status_code == 200 and r.get_json()["signals"], r.get_json()
    run_jobs(api.client.application)


def readme_scenario(api, twilio) -> None:
    """Harbor's down-tier awaits Sam's confirmation; then Demo Co's opening reaches the phone."""
    run_jobs(api.client.application)  # the demo's openings go out
    assert state(api, HARBOR) == "offered"
    [step] = say(twilio, "yes")  # only Sam has the number yet
    assert step.startswith("To confirm: Starter")
    readme_demo_co(api)
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "offered")


def state(api, account_id: str) -> str:
    return api.get(f"/accounts/{account_id}/thread").get_json()["state"]


def db(app):
    return app.extensions["upgrade_chat"].engine


def plan_changes(app) -> list[tuple[str, str, str]]:
    with db(app).connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(AccountRow.external_id, PlanChangeRow.to_plan, PlanChangeRow.status)
            .join(AccountRow, AccountRow.id == PlanChangeRow.account_id)
            .order_by(PlanChangeRow.id))]


def thread_of(app, sid: str) -> str | None:
    """The account whose thread holds the inbound message `sid` (None: outside any thread)."""
    with db(app).connect() as conn:
        return conn.scalar(
            select(AccountRow.external_id)
            .join(ThreadRow, ThreadRow.account_id == AccountRow.id)
            .join(MessageRow, MessageRow.thread_id == ThreadRow.id)
            .where(MessageRow.provider_id == sid, MessageRow.direction == "in"))


def count_messages(app, *where) -> int:
    with db(app).connect() as conn:
        return conn.scalar(select(func.count()).select_from(MessageRow).where(*where))


def consent(app) -> dict[str, list[tuple[str, str, str]]]:
    """Each contact's consent events (action, channel, source) after the demo load, and whether
    they are opted out now."""
    with db(app).connect() as conn:
        rows = conn.execute(text(
            "SELECT c.external_id, e.action, e.channel, e.source FROM consent_events e "
            "JOIN contacts c ON c.id = e.contact_id WHERE e.source = 'buyer' ORDER BY e.id"))
        events: dict[str, list] = {}
        for ext, *rest in rows:
            events.setdefault(ext, []).append(tuple(rest))
        return events


def opted_out(app, contact_id: str) -> bool:
    with db(app).connect() as conn:
        return conn.scalar(text("SELECT opted_out_at FROM contacts WHERE external_id = :c"),
                           {"c": contact_id}) is not None


# --- the README's scenario ----------------------------------------------------------------------

def test_confirm_from_the_readme_phone_asks_which_business_and_confirms_nothing(api, twilio,
                                                                                app):
    readme_scenario(api, twilio)
    sid = new_sid()
    assert say(twilio, "confirm", sid) == [QUESTION]
    assert plan_changes(app) == []
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "offered")
    # Nothing is lost: the message is kept (outside any thread, unrouted), with the question.
    with db(app).connect() as conn:
        [kept] = conn.execute(select(MessageRow.__table__).where(MessageRow.provider_id == sid))
        [asked] = conn.execute(select(MessageRow.__table__)
                               .where(MessageRow.in_reply_to == kept.id))
    assert (kept.thread_id, kept.kind, kept.body) == (None, "unrouted", "confirm")
    assert (asked.thread_id, asked.kind, asked.body, asked.status) == \
        (None, "unrouted", QUESTION, "sent")
    assert say(twilio, "yes") == [QUESTION]  # still nobody named: still nothing moves
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "offered")


ACK_DEMO_CO = "Thanks, this is about Demo Co. Please send your message again."


@pytest.mark.parametrize("naming", ["Demo Co", "it's demo co", "About DEMO CO, please."])
def test_naming_demo_co_routes_there_and_then_confirm_confirms_demo_co_only(api, twilio, app,
                                                                            naming):
    """The answer to "which business?" is acknowledged in that business's thread, never read as
    a message to it ("Demo Co" alone reads as a request for a demo, a person)."""
    readme_scenario(api, twilio)
    assert say(twilio, "confirm") == [QUESTION]
    assert say(twilio, naming) == [ACK_DEMO_CO]
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "offered")
    [step] = say(twilio, "yes")
    assert step.startswith("To confirm: Growth at $499.00 a month")
    [done] = say(twilio, "confirm")
    assert done.startswith("Done: you are on Growth now")
    assert plan_changes(app) == [(DEMO_CO, "growth", "done")]
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "upgraded")
    thread = api.get(f"/accounts/{DEMO_CO}/thread").get_json()
    assert [m["body"] for m in thread["messages"] if m["direction"] == "in"] == \
        [naming, "yes", "confirm"]


def test_naming_harbor_routes_there_and_then_confirm_confirms_harbors_down_tier_only(
        api, twilio, app):
    readme_scenario(api, twilio)
    assert say(twilio, "confirm") == [QUESTION]
    assert say(twilio, "Harbor") == [
        "Thanks, this is about Harbor Realty. Please send your message again."]
    [done] = say(twilio, "confirm")
    assert done.startswith("Done: you move to Starter on")
    assert plan_changes(app) == [(HARBOR, "starter", "pending")]
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("upgraded", "offered")
    # The conversation stays with Harbor until Demo Co writes again or the buyer names it.
    sid = new_sid()
    assert say(twilio, "thanks!", sid)
    assert thread_of(app, sid) == HARBOR and state(api, DEMO_CO) == "offered"
    assert say(twilio, "demo co") == [ACK_DEMO_CO]
    [step] = say(twilio, "yes")
    assert step.startswith("To confirm: Growth")
    assert plan_changes(app) == [(HARBOR, "starter", "pending")]


@pytest.mark.parametrize("text, business", [
    ("how much would harbor realty charge me today?", HARBOR),
    ("confirm Demo Co", DEMO_CO),
    ("what does growth include for demo co?", DEMO_CO),
    ("Harbor Realty: no thanks", HARBOR),
    ("harbor, confirm", HARBOR),  # one word of the name: acknowledged, not acted on
])
def test_a_message_that_names_a_business_goes_to_that_business_only(api, twilio, app, text,
                                                                    business):
    """Read as the message it is in that business's thread, or acknowledged there (when one
    word of the name is all it has, or the name changes how it reads: "confirm Demo Co" is a
    demo request to the rules); either way the other business's offer never moves, and nothing
    is confirmed."""
    readme_scenario(api, twilio)
    sid = new_sid()
    [answer] = say(twilio, text, sid)
    assert answer != QUESTION
    assert thread_of(app, sid) == business
    other = HARBOR if business == DEMO_CO else DEMO_CO
    assert state(api, other) == {HARBOR: "awaiting_confirmation", DEMO_CO: "offered"}[other]
    assert plan_changes(app) == []
    # The conversation goes on there: a question is answered in that business's words.
    sid = new_sid()
    assert say(twilio, "what does the plan include?", sid)
    assert thread_of(app, sid) == business


# --- one live thread, one finished ---------------------------------------------------------------

def test_one_live_thread_and_one_finished_routes_to_the_live_one_that_wrote_last(api, twilio,
                                                                                 app):
    run_jobs(app)
    assert say(twilio, "yes")[0].startswith("To confirm: Starter")
    assert say(twilio, "no thanks, not now")  # Harbor's offer declined: finished
    assert state(api, HARBOR) == "declined"
    readme_demo_co(api)  # Demo Co's opening is the last thing the phone got
    [step] = say(twilio, "yes")
    assert step.startswith("To confirm: Growth")
    [done] = say(twilio, "confirm")
    assert done.startswith("Done: you are on Growth now")
    assert plan_changes(app) == [(DEMO_CO, "growth", "done")]
    assert state(api, HARBOR) == "declined"


def test_one_live_thread_when_the_finished_ones_opening_came_last_asks(api, twilio, app, clock):
    """Demo Co's offer is live; Harbor's opening went out after it and Harbor's thread has since
    closed without an answer: a "yes" may mean either, so we ask."""
    readme_demo_co(api)  # both openings go out; Harbor's a minute after Demo Co's
    with db(app).begin() as conn:
        harbor = select(AccountRow.id).where(AccountRow.external_id == HARBOR).scalar_subquery()
        conn.execute(update(MessageRow).where(
            MessageRow.kind == "opening",
            MessageRow.thread_id.in_(select(ThreadRow.id).where(ThreadRow.account_id == harbor)))
            .values(sent_at=clock.now + timedelta(minutes=1)))
        # Harbor's offer then closed unanswered (an operator's plan change, say).
        conn.execute(update(ThreadRow).where(ThreadRow.account_id == harbor)
                     .values(state="expired"))
    assert say(twilio, "yes") == [QUESTION]
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("expired", "offered")


# --- retries ------------------------------------------------------------------------------------

def test_a_retry_of_the_asked_message_is_a_duplicate_with_the_same_reply(api, twilio, app):
    readme_scenario(api, twilio)
    sid = new_sid()
    assert say(twilio, "confirm", sid) == [QUESTION]
    before = count_messages(app)
    assert say(twilio, "confirm", sid) == []  # Twilio's retry: answered once
    rt = app.extensions["upgrade_chat"]
    answer = handlers.handle_inbound(rt.uow(), rt.catalog, rt.settings,
                                   handlers.Inbound("sms", "confirm", sid, address=SHARED), rt.now())
    assert answer.duplicate and answer.replies == (QUESTION,)
    assert count_messages(app) == before
    assert plan_changes(app) == []
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "offered")


def test_concurrent_deliveries_of_the_asked_message_are_stored_and_answered_once(api, app,
                                                                                 twilio):
    readme_scenario(api, twilio)
    sid = new_sid()
    answers = at_once(10, lambda: Twilio(app.test_client()),
                      lambda client: replies(client.text("confirm", sid, number=SHARED)))
    assert sorted(answers) == [[]] * 9 + [[QUESTION]]
    assert count_messages(app, MessageRow.provider_id == sid) == 1
    assert plan_changes(app) == []


def test_a_spooled_message_replayed_later_gets_its_question_queued_and_sent(api, twilio, app):
    """Replayed from the spool there is no webhook answer: the question is queued, and the
    dispatcher sends it to the shared number."""
    readme_scenario(api, twilio)
    rt = app.extensions["upgrade_chat"]
    sid = new_sid()
    message = InboundMessage("sms", SHARED, "confirm", sid)
    assert process_inbound(rt, message, replayed=True) == [QUESTION]
    with db(app).connect() as conn:
        status = select(MessageRow.status).where(MessageRow.body == QUESTION)
        assert conn.scalar(status) == "queued"
    run_jobs(app)
    with db(app).connect() as conn:
        assert conn.scalar(status) == "sent"
    assert process_inbound(rt, message, replayed=True) == []  # replayed twice: once
    assert plan_changes(app) == []


# --- STOP and START ---------------------------------------------------------------------------

def test_stop_from_a_shared_number_opts_out_every_contact_with_it_and_start_brings_all_back(
        api, twilio, app):
    readme_scenario(api, twilio)
    [stopped] = say(twilio, "STOP")
    assert "unsubscribed" in stopped
    assert opted_out(app, "harbor-sam") and opted_out(app, "demo-co-pat")
    assert not opted_out(app, "acme-dana")  # another number
    assert consent(app) == {"harbor-sam": [("revoke", "sms", "buyer")],
                            "demo-co-pat": [("revoke", "sms", "buyer")]}
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("opted_out", "opted_out")
    assert plan_changes(app) == []
    assert count_messages(app, MessageRow.direction == "out",
                          MessageRow.body == stopped) == 1  # one confirmation, sent once
    [started] = say(twilio, "START")
    assert "subscribed" in started and "again" in started
    assert not opted_out(app, "harbor-sam") and not opted_out(app, "demo-co-pat")
    assert [e[0] for e in consent(app)["harbor-sam"]] == ["revoke", "grant"]
    assert [e[0] for e in consent(app)["demo-co-pat"]] == ["revoke", "grant"]


def test_help_from_a_shared_number_gets_the_help_text_even_when_we_would_ask(api, twilio, app):
    readme_scenario(api, twilio)
    sid = new_sid()
    [help_text] = say(twilio, "HELP", sid)
    assert "Acme Billing" in help_text and "STOP" in help_text
    assert (state(api, HARBOR), state(api, DEMO_CO)) == ("awaiting_confirmation", "offered")
    # Kept outside any thread: no offer's clock or channel moved on a guess.
    assert count_messages(app, MessageRow.provider_id == sid, MessageRow.thread_id.is_(None),
                          MessageRow.kind == "unrouted") == 1


# --- WhatsApp -----------------------------------------------------------------------------------

def test_whatsapp_a_shared_number_asks_and_naming_routes(api, twilio, app):
    """Both contacts have the number on WhatsApp (and as their phone); Harbor's thread awaits a
    confirmation given on WhatsApp, Demo Co's opening went out on WhatsApp."""
    r = api.get(f"/accounts/{HARBOR}").get_json()
    sam = dict(r["contacts"][0], whatsapp=SHARED)
    body = {k: r[k] for k in ("name", "plan", "vertical", "timezone", "billing_day")}
    assert api.put(f"/accounts/{HARBOR}", json={**body, "contacts": [sam]}).status_code == 200
    run_jobs(app)
    [step] = say(twilio, "yes", medium="whatsapp")
    assert step.startswith("To confirm: Starter")
    readme_demo_co(api, whatsapp="(212) 555-1234")
    with db(app).connect() as conn:  # Demo Co's opening went out on WhatsApp
        assert conn.scalar(text(
            "SELECT m.channel FROM messages m JOIN contacts c ON c.id = m.contact_id "
            "WHERE m.kind = 'opening' AND c.external_id = 'demo-co-pat'")) == "whatsapp"
    assert say(twilio, "confirm", medium="whatsapp") == [QUESTION]
    assert say(twilio, "confirm") == [QUESTION]  # SMS too: nobody wrote there
    assert plan_changes(app) == []
    assert say(twilio, "Demo Co", medium="whatsapp") == [
        "Thanks, this is about Demo Co. Please send your message again."]
    assert say(twilio, "yes", medium="whatsapp")[0].startswith("To confirm: Growth")
    assert say(twilio, "confirm", medium="whatsapp")[0].startswith("Done: you are on Growth")
    assert plan_changes(app) == [(DEMO_CO, "growth", "done")]
    assert state(api, HARBOR) == "awaiting_confirmation"
    [stopped] = say(twilio, "stop", medium="whatsapp")
    assert opted_out(app, "harbor-sam") and opted_out(app, "demo-co-pat")
    assert consent(app)["harbor-sam"][-1] == ("revoke", "whatsapp", "buyer")
    assert consent(app)["demo-co-pat"][-1] == ("revoke", "whatsapp", "buyer")


# --- web chat: the widget names the account ---------------------------------------------------

def test_web_chat_identities_are_account_scoped_even_when_user_ids_repeat(api, app):
    """The widget's tag names the account (X-Account): a user id that is a contact in two
    accounts reaches the thread of the account named, never the other's."""
    run_jobs(app)
    r = api.get(f"/accounts/{HARBOR}").get_json()
    sam = dict(r["contacts"][0], web_user_id="u-pat")
    body = {k: r[k] for k in ("name", "plan", "vertical", "timezone", "billing_day")}
    assert api.put(f"/accounts/{HARBOR}", json={**body, "contacts": [sam]}).status_code == 200
    readme_demo_co(api, web_user_id="u-pat")
    headers = {"X-User-Id": "u-pat", "X-User-Hash": webchat.user_hash(SECRET, "u-pat")}
    client = app.test_client()

    def post(account_id, text, msg_id):
        r = client.post("/webchat/v1/messages", headers={**headers, "X-Account": account_id},
                        json={"text": text, "id": msg_id})
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    assert post(HARBOR, "yes", "w1")["state"] == "awaiting_confirmation"
    demo = post(DEMO_CO, "confirm", "w2")  # Demo Co's offer: its confirmation step, no more
    assert demo["state"] == "awaiting_confirmation" and demo["replies"][0].startswith(
        "To confirm: Growth")
    assert plan_changes(app) == []
    assert post(DEMO_CO, "confirm", "w3")["state"] == "upgraded"
    assert plan_changes(app) == [(DEMO_CO, "growth", "done")]
    assert state(api, HARBOR) == "awaiting_confirmation"
    poll = client.get("/webchat/v1/thread", headers={**headers, "X-Account": HARBOR}).get_json()
    assert poll["state"] == "awaiting_confirmation"
    assert all("Growth now" not in m["body"] for m in poll["messages"])
