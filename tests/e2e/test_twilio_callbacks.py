"""Calls the buyer asks for, end to end on SQLite and PostgreSQL: "call me" by SMS books a call
(at the time named, in the buyer's zone, or the next allowed minute; never in quiet hours, never
to a number that opted out), the outbox places it through twilio's real Client against the local
fake of Twilio's Calls API, and Twilio's webhooks for the call (answered, status, answering
machine, the machine's message, the gate's and the conversation's gathers) are really signed and
drive it to its end: one plan change at most, a retry after no answer, a text when we could not
reach the buyer. The clock is the test's; TwiML is parsed as XML."""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from storage.outbox import DispatchStats
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, event
from tests.e2e.test_twilio_inbound import (ACME, BASE, DANA, DANA_PHONE, TOKEN, Twilio,
                                           cross_messages, db, replies, run_jobs, setup_account,
                                           thread)
from tests.e2e.test_twilio_voice import Call, hung_up, plan_changes, spoken
from tests.support.concurrency import at_once
from tests.support.fake_twilio import serving, twilio_error

ACCOUNT_SID = "AC" + "2" * 32
SMS_FROM = "+15005550006"
VOICE_FROM = "+15005550007"
CHICAGO = ZoneInfo("America/Chicago")
NOON = datetime(2026, 11, 26, 18, 0, tzinfo=timezone.utc)  # 12:00 PM in Chicago, a Thursday


def local(*args: int) -> datetime:
    """A Chicago wall-clock time, as UTC."""
    return datetime(*args, tzinfo=CHICAGO).astimezone(timezone.utc)


@pytest.fixture
def fake():
    with serving(ACCOUNT_SID, TOKEN) as f:
        yield f


@pytest.fixture
def build(make_app, fake, clock):
    """An app with a Twilio account whose API is the fake, on the test's clock (noon, Chicago)."""
    clock.now = NOON

    def build(**config):
        return make_app(**{
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_SMS_FROM": SMS_FROM, "TWILIO_VOICE_FROM": VOICE_FROM,
            "PUBLIC_BASE_URL": BASE, "TWILIO_API_URL": fake.base_url, "CONTROL_SHARE": "0",
            "BUSINESS_NAME": "Acme Billing", "SUPPORT_CONTACT": "help@acme.example", **config})

    return build


@pytest.fixture
def app(build):
    return build()


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


@pytest.fixture
def offer(api, fake):
    """Dana (Chicago) with a Starter -> Growth offer, sent by SMS (through the fake)."""
    setup_account(api, whatsapp=None)
    cross_messages(api)
    assert [(r.to, r.from_) for r in fake.log()] == [(DANA_PHONE, SMS_FROM)]


# --- helpers ------------------------------------------------------------------------------------

def sms(app, body: str) -> list[str]:
    """Dana texts `body`; Twilio's TwiML answer."""
    return replies(Twilio(app.test_client()).text(body))


def dispatch(app) -> DispatchStats:
    return app.extensions["upgrade_chat"].dispatcher.dispatch_due()


def calls(api) -> list[dict]:
    return thread(api)["calls"]


def the_call(api) -> dict:
    [call] = calls(api)
    return call


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def count(app, sql: str, **params) -> int:
    with db(app).connect() as conn:
        return conn.scalar(text(sql), params)


def missed_texts(app) -> int:
    return count(app, "SELECT count(*) FROM messages WHERE kind = 'call_missed'")


def tried_texts_sent(fake) -> list[str]:
    """The texts saying we tried to call that went out through the fake's Messages API."""
    return [r.body for r in fake.log() if r.body and "tried to call" in r.body
            and r.to == DANA_PHONE and r.from_ == SMS_FROM]


def calls_table(app) -> list[tuple]:
    with db(app).connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, status, provider_id, scheduled_for, attempt, note FROM calls ORDER BY id"))]


def url(path: str) -> str:
    return BASE + path


class Leg(Call):
    """A call we placed to Dana, as Twilio's webhooks for it make it (Direction outbound-api:
    the buyer is the `To`)."""

    def __init__(self, app, call_id: int, sid: str) -> None:
        super().__init__(app, caller=DANA_PHONE)
        self.call_id, self.sid = call_id, sid

    def params(self, **extra: str) -> dict[str, str]:
        return {"AccountSid": ACCOUNT_SID, "CallSid": self.sid, "From": VOICE_FROM,
                "To": DANA_PHONE, "CallStatus": "in-progress", "Direction": "outbound-api",
                "ApiVersion": "2010-04-01", **extra}

    def answer(self) -> ET.Element:
        return self.post(f"/twilio/voice/answered?call={self.call_id}")

    def report(self, status: str, **extra: str):
        r = self.twilio.post(f"/twilio/voice/status?call={self.call_id}",
                             self.params(CallStatus=status, **extra))
        assert r.status_code == 204, r.get_data(as_text=True)
        return r

    def amd(self, answered_by: str):
        # Twilio's asynchronous AMD callback carries only these: no From, To or CallStatus.
        r = self.twilio.post(f"/twilio/voice/amd?call={self.call_id}",
                             {"AccountSid": ACCOUNT_SID, "CallSid": self.sid,
                              "AnsweredBy": answered_by, "MachineDetectionDuration": "2100"})
        assert r.status_code == 204, r.get_data(as_text=True)
        return r


def placed_leg(app, api, fake) -> Leg:
    """Dispatch the due call and return the placed call's leg."""
    before = len(fake.placed())
    assert dispatch(app).sent == 1
    placed = fake.placed()
    assert len(placed) == before + 1
    call = [c for c in calls(api) if c["provider_id"] == placed[-1].sid]
    assert len(call) == 1 and call[0]["status"] == "ringing"
    return Leg(app, call[0]["id"], placed[-1].sid)


def ringing(app, api, fake) -> Leg:
    """Dana asked for a call now; it was placed."""
    assert "will ring you" in sms(app, "call me")[-1]
    return placed_leg(app, api, fake)


def at_the_case(leg: Leg) -> ET.Element:
    """Past the gate: Dana pressed 1 and hears her case."""
    gate = leg.answer()
    assert "step=gate" in leg.next
    assert spoken(gate)
    return leg.press("1")


# --- booking and placing ------------------------------------------------------------------------

def test_call_me_by_sms_books_a_call_and_dispatch_places_exactly_one(app, api, fake, offer):
    [answer] = sms(app, "can you call me?")
    assert "Acme Billing" in answer and "12:00 PM" in answer
    call = the_call(api)
    assert (call["status"], call["reason"], call["attempt"], call["provider_id"]) == \
        ("scheduled", "callback", 1, None)
    assert at(call["scheduled_for"]) == NOON
    assert dispatch(app) == DispatchStats(sent=1)
    [placed] = fake.placed()
    cid = call["id"]
    assert (placed.to, placed.from_, placed.method) == (DANA_PHONE, VOICE_FROM, "POST")
    assert placed.url == url(f"/twilio/voice/answered?call={cid}")
    assert placed.status_callback == url(f"/twilio/voice/status?call={cid}")
    assert {"answered", "completed"} <= set(placed.status_callback_events)
    assert placed.machine_detection == "DetectMessageEnd" and placed.async_amd == "true"
    assert placed.async_amd_status_callback == url(f"/twilio/voice/amd?call={cid}")
    assert placed.authorized and placed.account_sid == ACCOUNT_SID
    call = the_call(api)
    assert (call["status"], call["provider_id"]) == ("ringing", placed.sid)
    assert dispatch(app) == DispatchStats() and len(fake.calls) == 1  # placed once


def test_call_me_tomorrow_after_3_is_the_buyers_3_pm_and_nothing_rings_before(
        app, api, fake, clock, offer):
    [answer] = sms(app, "call me tomorrow after 3")
    assert "3:00 PM" in answer and "Fri Nov 27" in answer
    call = the_call(api)
    assert at(call["scheduled_for"]) == local(2026, 11, 27, 15, 0)
    assert at(call["requested_for"]) == local(2026, 11, 27, 15, 0)
    assert dispatch(app) == DispatchStats() and fake.calls == []
    clock.now = local(2026, 11, 27, 14, 50)
    assert dispatch(app) == DispatchStats() and fake.calls == []
    clock.now = local(2026, 11, 27, 15, 0)
    assert dispatch(app) == DispatchStats(sent=1)
    assert [c.to for c in fake.placed()] == [DANA_PHONE]


def test_call_me_late_at_night_is_booked_for_9_am_and_nothing_rings_before(
        app, api, fake, clock, offer):
    clock.now = local(2026, 11, 26, 23, 0)
    [answer] = sms(app, "call me")
    assert "9:00 AM" in answer and "Fri Nov 27" in answer
    assert at(the_call(api)["scheduled_for"]) == local(2026, 11, 27, 9, 0)
    for moment in (local(2026, 11, 26, 23, 30), local(2026, 11, 27, 8, 59)):
        clock.now = moment
        dispatch(app)
        assert fake.calls == []
    clock.now = local(2026, 11, 27, 9, 0)
    assert dispatch(app).sent == 1 and len(fake.placed()) == 1


@pytest.mark.parametrize("eve, asked_for", [
    ((2026, 10, 31, 12, 0), (2026, 11, 1, 15, 0)),  # the night the clocks go back
    ((2027, 3, 13, 12, 0), (2027, 3, 14, 15, 0)),  # the night they go forward
])
def test_tomorrow_after_3_is_3_pm_on_the_far_side_of_a_dst_change(
        app, api, fake, clock, eve, asked_for):
    clock.now = local(*eve)
    setup_account(api, whatsapp=None)
    events = [event(f"m{i}", ACME, "messages", 600, ago(clock.now, days=7 - i)) for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    run_jobs(app)
    answer = sms(app, "call me tomorrow after 3")[-1]
    assert "3:00 PM" in answer
    assert at(the_call(api)["scheduled_for"]) == local(*asked_for)


def test_a_time_in_quiet_hours_is_moved_to_the_next_allowed_minute_and_the_reply_says_so(
        app, api, fake, clock, offer):
    [answer] = sms(app, "call me tonight at 10pm")
    assert "We only call between 9:00 AM and 8:00 PM" in answer and "9:00 AM" in answer
    call = the_call(api)
    assert at(call["scheduled_for"]) == local(2026, 11, 27, 9, 0)
    assert at(call["requested_for"]) == local(2026, 11, 26, 22, 0)
    clock.now = local(2026, 11, 26, 22, 0)
    dispatch(app)
    assert fake.calls == []


def test_a_new_time_moves_the_waiting_call_and_it_rings_once_at_the_new_time(
        app, api, fake, clock, offer):
    sms(app, "call me tomorrow after 3")
    answer = sms(app, "actually call me tomorrow at 10am")[-1]
    assert "10:00 AM" in answer
    call = the_call(api)
    assert at(call["scheduled_for"]) == local(2026, 11, 27, 10, 0)
    clock.now = local(2026, 11, 27, 10, 0)
    assert dispatch(app).sent == 1
    clock.now = local(2026, 11, 27, 15, 0)  # the old time: its job finds nothing to place
    assert dispatch(app).sent == 0
    assert len(fake.calls) == 1 and the_call(api)["status"] == "ringing"


def test_a_call_whose_job_is_claimed_late_in_quiet_hours_waits_for_the_morning(
        app, api, fake, clock, offer):
    sms(app, "call me today at 7:55pm")
    assert at(the_call(api)["scheduled_for"]) == local(2026, 11, 26, 19, 55)
    clock.now = local(2026, 11, 26, 20, 5)  # the scheduler was down until after 8 PM
    dispatch(app)
    assert fake.calls == []
    call = the_call(api)
    assert call["status"] == "scheduled"
    assert at(call["scheduled_for"]) == local(2026, 11, 27, 9, 0)
    clock.now = local(2026, 11, 27, 8, 59)
    dispatch(app)
    assert fake.calls == []
    clock.now = local(2026, 11, 27, 9, 0)
    assert dispatch(app).sent == 1 and len(fake.placed()) == 1


def test_quiet_hours_hold_in_the_numbers_zone_when_the_account_is_elsewhere(
        app, api, fake, clock):
    """A New York account, Dana's Chicago number: 9:30 in New York is 8:30 in Chicago."""
    body = account(plan="starter", timezone="America/New_York", billing_day=5,
                   contacts=[contact(DANA, name="Dana", role="billing", phone=DANA_PHONE)])
    assert api.put(f"/accounts/{ACME}", json=body).status_code in (200, 201)
    cross_messages(api)
    clock.now = datetime(2026, 11, 27, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    sms(app, "call me")
    assert at(the_call(api)["scheduled_for"]) == local(2026, 11, 27, 9, 0)
    dispatch(app)
    assert fake.calls == []
    clock.now = local(2026, 11, 27, 9, 0)
    assert dispatch(app).sent == 1


# --- consent and the thread's end cancel calls --------------------------------------------------

def test_a_number_that_opted_out_gets_no_call_and_is_told_so(app, api, fake, clock, offer):
    sms(app, "STOP")
    [answer] = sms(app, "call me")
    assert "opted out" in answer and "will not call" in answer
    assert calls(api) == []
    clock.now = NOON + timedelta(days=1)
    dispatch(app)
    assert fake.calls == []


def test_stop_after_booking_cancels_the_waiting_call(app, api, fake, clock, offer):
    sms(app, "call me tomorrow after 3")
    sms(app, "STOP")
    assert the_call(api)["status"] == "cancelled"
    clock.now = local(2026, 11, 27, 15, 0)
    dispatch(app)
    assert fake.calls == [] and the_call(api)["status"] == "cancelled"


def test_an_upgrade_by_sms_before_the_calls_time_cancels_it(app, api, fake, clock, offer):
    sms(app, "call me tomorrow after 3")
    sms(app, "yes")
    [done] = sms(app, "confirm")
    assert done.startswith("Done") and thread(api)["state"] == "upgraded"
    assert the_call(api)["status"] == "cancelled"
    clock.now = local(2026, 11, 27, 15, 0)
    dispatch(app)
    assert fake.calls == [] and the_call(api)["status"] == "cancelled"


def test_stop_while_the_call_rings_means_no_retry_and_no_text(app, api, fake, clock, offer):
    leg = ringing(app, api, fake)
    sms(app, "STOP")
    leg.report("no-answer")
    assert [c["status"] for c in calls(api)] == ["no_answer"]
    assert missed_texts(app) == 0
    clock.now += timedelta(days=1)
    dispatch(app)
    assert len(fake.calls) == 1 and tried_texts_sent(fake) == []


# --- the answered call --------------------------------------------------------------------------

def test_the_answered_call_says_no_figure_before_the_gate_then_upgrades_once(
        app, api, fake, offer):
    leg = ringing(app, api, fake)
    gate = leg.answer()
    gather = gate.find("Gather")
    assert gather is not None and "dtmf" in gather.get("input")
    said = spoken(gate)
    assert "Acme Billing" in said and "Press 1" in said
    assert "$" not in said and "Growth" not in said and "Starter" not in said
    assert "step=gate" in leg.next and f"call={leg.call_id}" in leg.next
    assert the_call(api)["status"] == "in_progress"
    case = leg.press("1")  # a person is there: the case, in figures
    assert "$499.00" in spoken(case) and "Press 1" in spoken(case)
    step = leg.press("1")
    assert "To confirm: Growth at $499.00 a month" in spoken(step)
    assert "charged today" in spoken(step) and re.search(r"\$\d+\.\d\d", spoken(step))
    assert "step=confirm" in leg.next and plan_changes(app) == 0
    done = leg.press("1")
    assert hung_up(done) and plan_changes(app) == 1
    assert thread(api)["state"] == "upgraded"
    leg.report("completed")
    assert the_call(api)["status"] == "completed"


def test_silence_at_the_gate_is_asked_once_then_a_goodbye_with_no_figures(app, api, fake, offer):
    leg = ringing(app, api, fake)
    leg.answer()
    again = leg.silence()
    assert "step=gate" in leg.next and "$" not in spoken(again)
    bye = leg.silence()
    assert hung_up(bye) and "$" not in spoken(bye) and "help@acme.example" in spoken(bye)


def test_9_at_the_gate_stops_calls_and_texts_without_a_word_about_the_account(
        app, api, fake, offer):
    leg = ringing(app, api, fake)
    leg.answer()
    bye = leg.press("9")
    assert hung_up(bye) and "$" not in spoken(bye)
    assert api.get(f"/accounts/{ACME}/thread").get_json()["state"] == "opted_out"
    assert "will not call" in sms(app, "call me")[-1]


def test_a_twilio_retry_of_the_same_gather_turn_acts_once(app, api, fake, offer):
    leg = ringing(app, api, fake)
    at_the_case(leg)
    yes_target = leg.next
    first = leg.post(yes_target, Digits="1")
    again = leg.post(yes_target, Digits="1")  # the same CallSid and turn: a retry by Twilio
    assert spoken(again) == spoken(first)
    confirm_target = leg.next
    done = leg.post(confirm_target, Digits="1")
    repeat = leg.post(confirm_target, Digits="1")
    assert hung_up(done) and hung_up(repeat) and spoken(repeat) == spoken(done)
    assert plan_changes(app) == 1
    assert count(app, "SELECT count(*) FROM messages WHERE channel = 'voice' AND "
                      "direction = 'in'") == 2  # one per turn


def test_the_calls_confirming_1_racing_an_sms_confirm_upgrades_once(build, fake, offer_race):
    voice_app, sms_app, leg, confirm_target = offer_race
    voice = Twilio(voice_app.test_client())
    texting = Twilio(sms_app.test_client())
    lock = threading.Lock()
    actions = [lambda: voice.post(confirm_target, leg.params(Digits="1")),
               lambda: texting.text("confirm")]

    def prepare():
        with lock:
            return actions.pop()

    answers = at_once(2, prepare, lambda act: act())
    assert all(r.status_code == 200 for r in answers)
    assert plan_changes(voice_app) == 1
    assert count(voice_app, "SELECT count(*) FROM outbox WHERE kind = 'billing_webhook'") == 1
    assert thread(Api(voice_app.test_client()))["state"] == "upgraded"


@pytest.fixture
def offer_race(build, fake):
    """Two apps (two workers) on one database, with a billing webhook; Dana's placed call at
    its confirmation step, and the step's signed target."""
    billing = {"BILLING_WEBHOOK_URL": "http://127.0.0.1:9/billing",
               "BILLING_WEBHOOK_SECRET": "billing-secret-0123456789"}
    voice_app, sms_app = build(**billing), build(**billing)
    api = Api(voice_app.test_client())
    setup_account(api, whatsapp=None)
    cross_messages(api)
    leg = ringing(voice_app, api, fake)
    at_the_case(leg)
    step = leg.press("1")
    assert "To confirm" in spoken(step) and "step=confirm" in leg.next
    return voice_app, sms_app, leg, leg.next


# --- answering machines -------------------------------------------------------------------------

def test_a_machine_is_recorded_redirected_to_a_message_with_no_figures_and_texted(
        app, api, fake, offer):
    leg = ringing(app, api, fake)
    leg.amd("machine_end_beep")
    assert the_call(api)["status"] == "machine"
    [update] = fake.updates()
    assert update.call_sid == leg.sid and update.authorized
    assert update.url == url(f"/twilio/voice/machine?call={leg.call_id}")
    message = leg.post(f"/twilio/voice/machine?call={leg.call_id}")
    assert hung_up(message)
    said = spoken(message)
    assert "Acme Billing" in said and "$" not in said and not re.search(r"\d", said)
    assert missed_texts(app) == 1
    dispatch(app)
    assert len(tried_texts_sent(fake)) == 1
    leg.amd("machine_end_beep")  # Twilio repeating its callback
    leg.report("completed")
    assert len(fake.updates()) == 1 and missed_texts(app) == 1
    assert the_call(api)["status"] == "machine"
    assert len(fake.placed()) == 1  # no retry after a machine


def test_a_hipaa_account_s_machine_hears_nothing_about_the_account(app, api, fake):
    body = account(plan="starter", vertical="healthcare", timezone="America/Chicago",
                   billing_day=5, contacts=[contact(DANA, name="Dana", role="billing",
                                                    phone=DANA_PHONE)])
    assert api.put(f"/accounts/{ACME}", json=body).status_code in (200, 201)
    cross_messages(api)
    leg = ringing(app, api, fake)
    leg.amd("machine_start")
    assert [u.url for u in fake.updates()] == [url(f"/twilio/voice/machine?call={leg.call_id}")]
    said = spoken(leg.post(f"/twilio/voice/machine?call={leg.call_id}"))
    assert "Acme Billing" in said
    for word in ("$", "plan", "Growth", "Starter", "patient", "account"):
        assert word not in said, word


def test_a_human_answer_changes_nothing_bad(app, api, fake, offer):
    leg = ringing(app, api, fake)
    leg.amd("human")
    assert the_call(api)["status"] == "in_progress"
    assert fake.updates() == [] and missed_texts(app) == 0
    case = at_the_case(leg)
    assert "$499.00" in spoken(case)


# --- status callbacks ---------------------------------------------------------------------------

def test_no_answer_is_retried_once_30_minutes_later_then_a_text_says_we_tried(
        app, api, fake, clock, offer):
    first = ringing(app, api, fake)
    clock.now = NOON + timedelta(minutes=1)
    first.report("no-answer")
    first.report("no-answer")  # Twilio retrying the callback: acts once
    original, retry = calls(api)
    assert original["status"] == "no_answer"
    assert (retry["status"], retry["reason"], retry["attempt"]) == ("scheduled", "retry", 2)
    due = at(retry["scheduled_for"])
    assert due >= clock.now + timedelta(minutes=30)
    assert 9 <= due.astimezone(CHICAGO).hour < 20
    assert missed_texts(app) == 0
    assert dispatch(app) == DispatchStats()  # not yet
    clock.now = due
    second = placed_leg(app, api, fake)
    assert second.call_id == retry["id"] and second.sid != first.sid
    second.report("no-answer")
    assert [c["status"] for c in calls(api)] == ["no_answer", "no_answer"]
    assert missed_texts(app) == 1
    second.report("no-answer")
    clock.now += timedelta(days=1)
    dispatch(app)
    assert len(fake.calls) == 2 and len(calls(api)) == 2 and missed_texts(app) == 1
    [sent] = tried_texts_sent(fake)
    assert "$" not in sent and "STOP" in sent


def test_no_answer_late_in_the_day_is_retried_at_9_the_next_morning(
        app, api, fake, clock, offer):
    clock.now = local(2026, 11, 26, 19, 45)
    leg = ringing(app, api, fake)
    leg.report("busy")
    retry = calls(api)[1]
    assert at(retry["scheduled_for"]) == local(2026, 11, 27, 9, 0)


def test_a_status_callback_for_another_call_sid_changes_nothing(app, api, fake, offer):
    leg = ringing(app, api, fake)
    before = calls_table(app)
    stranger = Leg(app, leg.call_id, "CA" + "f" * 32)
    stranger.report("no-answer")
    stranger.report("completed")
    stranger.amd("machine_end_beep")
    assert calls_table(app) == before and the_call(api)["status"] == "ringing"
    assert fake.updates() == [] and missed_texts(app) == 0


def test_a_late_ringing_report_never_moves_an_ended_call_back(app, api, fake, offer):
    leg = ringing(app, api, fake)
    leg.report("in-progress")
    leg.report("completed")
    leg.report("ringing")
    leg.report("in-progress")
    assert the_call(api)["status"] == "completed" and len(calls(api)) == 1


# --- signatures ---------------------------------------------------------------------------------

ROUTES = ("/twilio/voice/answered?call={id}", "/twilio/voice/status?call={id}",
          "/twilio/voice/amd?call={id}", "/twilio/voice/machine?call={id}",
          "/twilio/voice/gather?turn=0&step=gate&call={id}",
          "/twilio/voice/gather?turn=1&call={id}")


@pytest.mark.parametrize("token", ["not-the-token", None])
def test_every_call_route_refuses_an_unsigned_or_wrongly_signed_request(
        app, api, fake, offer, token):
    leg = ringing(app, api, fake)
    before = calls_table(app)
    messages = count(app, "SELECT count(*) FROM messages")
    for route in ROUTES:
        path = route.format(id=leg.call_id)
        for extra in ({"CallStatus": "no-answer"}, {"AnsweredBy": "machine_end_beep"},
                      {"Digits": "1"}):
            r = leg.twilio.post(path, leg.params(**extra), token=token)
            assert r.status_code == 403, (path, r.status_code)
    # Signed for another URL (the signature of a different call's route) is wrong too.
    signed_elsewhere = Twilio(app.test_client())
    params = leg.params(AnsweredBy="machine_end_beep")
    signature = RequestValidator(TOKEN).compute_signature(
        url(f"/twilio/voice/amd?call={leg.call_id + 1}"), params)
    r = signed_elsewhere.post(f"/twilio/voice/amd?call={leg.call_id}", params,
                              signature=signature)
    assert r.status_code == 403
    assert calls_table(app) == before
    assert count(app, "SELECT count(*) FROM messages") == messages
    assert fake.updates() == [] and len(fake.calls) == 1


# --- the Calls API's errors ---------------------------------------------------------------------

def test_a_429_with_retry_after_holds_the_call_and_it_is_placed_after_the_wait(
        app, api, fake, clock, offer):
    fake.answer_calls(twilio_error(20429, 429, "Too Many Requests", retry_after=120))
    sms(app, "call me")
    assert dispatch(app) == DispatchStats(held=1)
    assert the_call(api)["status"] == "scheduled" and fake.placed() == []
    clock.now = NOON + timedelta(seconds=60)
    assert dispatch(app) == DispatchStats() and len(fake.calls) == 1  # still waiting
    clock.now = NOON + timedelta(seconds=121)
    assert dispatch(app) == DispatchStats(sent=1)
    [placed] = fake.placed()
    assert len(fake.calls) == 2
    call = the_call(api)
    assert (call["status"], call["provider_id"]) == ("ringing", placed.sid)


def test_a_400_from_the_calls_api_fails_the_call(app, api, fake, clock, offer):
    fake.answer_calls(twilio_error(21211, 400, "Invalid 'To' Phone Number"))
    sms(app, "call me")
    assert dispatch(app) == DispatchStats(failed=1)
    call = the_call(api)
    assert call["status"] == "failed" and call["provider_id"] is None
    assert "21211" in (call["note"] or "")
    clock.now = NOON + timedelta(hours=1)
    assert dispatch(app) == DispatchStats() and fake.placed() == []
