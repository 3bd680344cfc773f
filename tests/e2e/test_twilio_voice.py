"""The voice channel: a buyer calls in and has the conversation by keypad or speech, signed like
every Twilio webhook; the same exactly-once upgrade as every channel; valid TwiML always; a
stranger hears nothing about any account. Real twilio signatures, TwiML parsed as XML, both
databases."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import text

from tests.e2e.test_twilio_inbound import (BASE, DANA_PHONE, TOKEN, Twilio, cross_messages,
                                           db, setup_account, thread)
from tests.conftest import Api

ACCOUNT_SID = "AC" + "1" * 32


@pytest.fixture
def app(make_app):
    return make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0",
                    BUSINESS_NAME="Acme Billing", SUPPORT_CONTACT="help@acme.example")


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


class Call:
    """One phone call, as Twilio's voice webhooks make it."""

    def __init__(self, app, caller: str = DANA_PHONE) -> None:
        self.twilio = Twilio(app.test_client())
        self.sid = "CA" + uuid.uuid4().hex
        self.caller = caller
        self.next = "/twilio/voice"

    def params(self, **extra: str) -> dict[str, str]:
        return {"AccountSid": ACCOUNT_SID, "CallSid": self.sid, "From": self.caller,
                "To": "+15005550006", "CallStatus": "in-progress", "Direction": "inbound",
                "ApiVersion": "2010-04-01", **extra}

    def post(self, target: str, **extra: str) -> ET.Element:
        r = self.twilio.post(target, self.params(**extra))
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.mimetype == "application/xml"
        root = ET.fromstring(r.get_data(as_text=True))
        assert root.tag == "Response"
        gather = root.find("Gather")
        self.last_target = target
        self.next = gather.get("action") if gather is not None else None
        return root

    def answer(self) -> ET.Element:
        return self.post("/twilio/voice")

    def press(self, digits: str) -> ET.Element:
        assert self.next, "the call has ended"
        return self.post(self.next, Digits=digits)

    def say(self, words: str) -> ET.Element:
        assert self.next, "the call has ended"
        return self.post(self.next, SpeechResult=words, Confidence="0.9")

    def silence(self) -> ET.Element:
        assert self.next, "the call has ended"
        return self.post(self.next)


@pytest.fixture
def offer(api):
    """Dana with a Starter -> Growth offer (sent by SMS)."""
    setup_account(api)
    cross_messages(api)


@pytest.fixture
def call(app, offer) -> Call:
    """Dana calling about her offer: answered, the greeting heard."""
    c = Call(app)
    c.greeting = c.answer()
    return c


def spoken(root: ET.Element) -> str:
    return " ".join(s.text or "" for s in root.iter("Say"))


def hung_up(root: ET.Element) -> bool:
    return root.find("Hangup") is not None and root.find("Gather") is None


def plan_changes(app) -> int:
    with db(app).connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM plan_changes"))


def test_a_call_without_twilios_signature_is_refused_and_nothing_stored(app, api):
    setup_account(api)
    cross_messages(api)
    call = Call(app)
    r = call.twilio.post("/twilio/voice", call.params(), token="not-the-token")
    assert r.status_code == 403
    r = call.twilio.post("/twilio/voice/gather?turn=1", call.params(Digits="1"),
                         token="not-the-token")
    assert r.status_code == 403
    forged = dict(call.params(), CallSid="CAnot-a-call-sid")
    assert call.twilio.post("/twilio/voice", forged).status_code == 403
    with db(app).connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM messages WHERE channel = 'voice'")) == 0


def test_a_caller_with_an_offer_upgrades_by_pressing_1_twice_exactly_once(app, api):
    setup_account(api)
    cross_messages(api)
    call = Call(app)
    greeting = call.answer()
    said = spoken(greeting)
    assert said.startswith("Acme Billing") or "Acme Billing" in said.split(".")[0]
    assert "$499.00" in said and "Press 1" in said and "press 9" in said.lower()
    gather = greeting.find("Gather")
    assert "dtmf" in gather.get("input") and "speech" in gather.get("input")
    step = call.press("1")  # yes: the confirmation step, read in full
    assert "To confirm: Growth at $499.00 a month" in spoken(step)
    assert "charged today" in spoken(step) and "Press 1 to upgrade" in spoken(step)
    assert "step=confirm" in call.next
    assert thread(api)["state"] == "awaiting_confirmation" and plan_changes(app) == 0
    confirm_target = call.next
    done = call.press("1")  # 1 again: confirmed
    assert hung_up(done) and plan_changes(app) == 1
    assert thread(api)["state"] == "upgraded"
    again = call.post(confirm_target, Digits="1")  # Twilio retrying that request
    assert spoken(again) == spoken(done) and hung_up(again) and plan_changes(app) == 1


def test_a_caller_who_already_has_the_step_hears_it_before_1_confirms(app, api):
    setup_account(api)
    cross_messages(api)
    Twilio(app.test_client()).text("yes")  # the step, by SMS
    call = Call(app)
    greeting = call.answer()
    assert "To confirm: Growth" in spoken(greeting) and "step=confirm" in call.next
    assert hung_up(call.press("1")) and plan_changes(app) == 1


def test_3_declines_then_the_reason_is_asked_and_kept_then_goodbye(app, api, call):
    declined = call.press("3")
    assert thread(api)["state"] == "declined" and plan_changes(app) == 0
    assert not hung_up(declined) and spoken(declined)  # the reason, asked
    bye = call.say("it is too expensive for us right now")
    assert hung_up(bye)
    with db(app).connect() as conn:
        assert conn.scalar(text("SELECT decline_reason FROM threads")) == "price"


def test_9_stops_calls_and_texts(app, api, call):
    assert hung_up(call.press("9"))
    assert thread(api)["state"] == "opted_out"
    with db(app).connect() as conn:
        assert conn.scalar(text("SELECT opted_out_at FROM contacts")) is not None


def test_a_spoken_yes_reads_the_step_and_a_spoken_stop_opts_out(app, api, call):
    step = call.say("yeah let's do it")
    assert "To confirm: Growth" in spoken(step)
    stopped = call.say("stop calling me")
    assert hung_up(stopped)
    assert thread(api)["state"] == "opted_out" and plan_changes(app) == 0
    with db(app).connect() as conn:
        assert conn.scalar(text("SELECT opted_out_at FROM contacts")) is not None


def test_pressing_2_asks_for_a_person(app, api, call):
    person = call.press("2")
    assert spoken(person)
    assert thread(api)["state"] == "escalated"
    with db(app).connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM escalations")) == 1


def test_silence_is_asked_again_twice_then_a_goodbye_with_how_to_reach_a_person(app, api, call):
    first, second = call.silence(), call.silence()
    assert "did not hear" in spoken(first) and "did not hear" in spoken(second)
    bye = call.silence()
    assert hung_up(bye) and "help@acme.example" in spoken(bye)
    assert thread(api)["state"] == "offered"


def test_a_stranger_or_a_caller_with_no_offer_hears_no_account_data(app, api):
    stranger = Call(app, caller="+13125550199")
    root = stranger.answer()
    assert hung_up(root) and "Acme Billing" in spoken(root) and "$" not in spoken(root)
    setup_account(api)  # Dana, no crossing: no offer
    root = Call(app).answer()
    assert hung_up(root) and "$" not in spoken(root) and "Starter" not in spoken(root)


def test_a_number_two_accounts_contacts_share_hears_no_account_named(app, api):
    """Dana's number is also the bookkeeper's of another account with an offer: the call cannot
    tell whose conversation it is, so it names no account and no figure, and says why."""
    from tests.e2e.helpers import account, contact
    setup_account(api)
    cross_messages(api)
    body = account(plan="starter", timezone="America/Chicago", billing_day=5, name="Other Co",
                   contacts=[contact("other-books", name="Books", role="billing",
                                     phone=DANA_PHONE)])
    assert api.put("/accounts/other", json=body).status_code in (200, 201)
    root = Call(app).answer()
    said = spoken(root)
    assert hung_up(root) and "more than one account" in said
    assert "$" not in said and "Other Co" not in said and "Growth" not in said


def test_a_withheld_number_is_answered_politely(app, api):
    setup_account(api)
    cross_messages(api)
    root = Call(app, caller="anonymous").answer()
    assert hung_up(root) and "$" not in spoken(root)


def test_whatever_fails_twilio_gets_valid_twiml(app, api, monkeypatch):
    setup_account(api)
    cross_messages(api)
    runtime = app.extensions["upgrade_chat"]

    def broken(*args, **kwargs):
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(runtime, "uow", broken)
    root = Call(app).answer()
    assert hung_up(root) and "Sorry, something went wrong" in spoken(root)


def test_the_api_still_relays_voice_text_in_the_keypads_words(app, api):
    setup_account(api)
    cross_messages(api)
    r = api.post("/conversations/acme-dana/messages", json={"channel": "voice", "text": "yes"})
    assert r.status_code == 200, r.get_json()
    assert "Press 1 to upgrade" in r.get_json()["replies"][0]
