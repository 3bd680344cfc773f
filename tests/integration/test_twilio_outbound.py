"""Outbound SMS and WhatsApp on real SQLite and PostgreSQL, through the one outbox and twilio's real
Client against a local fake of Twilio's Messages API: consent at claim time, backoff, permanent
errors, the WhatsApp window and templates, leases and concurrent dispatchers."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from channels.twilio_outbound import SandboxSender, TwilioMessagingSender
from channels import registered
from core.delivery import MESSAGE_KIND, RETRY, MessageJobs, queue_message
from core.guardrails import GuardrailPolicy
from core.jobs import PermanentFailure
from storage.models import (AccountRow, ConsentEventRow, ContactRow, MessageRow, OutboxRow,
                            ThreadRow)
from storage.outbox import DispatchStats, OutboxDispatcher
from storage.uow import SqlUnitOfWork
from tests.conftest import NOW, Api
from tests.e2e.helpers import account, ago, batch, contact
from tests.e2e.helpers import event as usage_event
from tests.support.fake_twilio import AUTH_TOKEN, HANG, serving, twilio_error

PHONE = "+13125550142"  # Chicago
WHATSAPP = "+447700900123"
SMS_FROM = "+15005550006"
WHATSAPP_FROM = "+14155238886"
TEMPLATE = "HX" + "a" * 32
CALLBACK = "https://chat.example.com/twilio/status"
BASE_DELAY = timedelta(seconds=15)
LEASE = timedelta(minutes=5)


@pytest.fixture
def fake():
    with serving() as f:
        yield f


@pytest.fixture
def dispatcher(engine, fake, clock):
    """Build the outbox's dispatcher with a "message" sender that talks to the fake (and the
    messages' retry schedule); keyword arguments override settings."""

    def build(*, template: str | None = TEMPLATE, whatsapp_from: str | None = WHATSAPP_FROM,
              sender=None, **settings):
        if sender is None:
            sender = TwilioMessagingSender(fake.client(timeout=0.5), sms_from=SMS_FROM,
                                           whatsapp_from=whatsapp_from,
                                           status_callback_url=CALLBACK,
                                           whatsapp_template_sid=template)
        jobs = MessageJobs(sender, registered(), GuardrailPolicy())  # as the app wires it
        return OutboxDispatcher(engine, {MESSAGE_KIND: jobs}, clock, **{
            "max_attempts": RETRY.max_attempts, "base_delay": BASE_DELAY,
            "max_delay": RETRY.max_delay, "lease": LEASE, **settings})

    return build


# --- rows, set up directly ---------------------------------------------------------------------

def seed(engine, *, phone: str | None = PHONE, whatsapp: str | None = None,
         whatsapp_opt_in: bool = False, whatsapp_inbound_at=None, state: str = "offered",
         name: str = "acme") -> tuple[int, int]:
    """An account with one billing contact and a live thread to Growth: (contact id, thread id)."""
    with Session(engine) as s, s.begin():
        acct = AccountRow(external_id=name, name="Acme", plan="starter", vertical="generic",
                          timezone="America/Chicago", billing_day=5,
                          plan_since=NOW - timedelta(days=90), open_escalations=0,
                          created_at=NOW, updated_at=NOW)
        s.add(acct)
        s.flush()
        opt_in = NOW - timedelta(days=30) if whatsapp_opt_in else None
        person = ContactRow(account_id=acct.id, external_id=f"{name}-dana", position=0,
                            role="billing", phone=phone, whatsapp=whatsapp,
                            whatsapp_opt_in_at=opt_in, whatsapp_inbound_at=whatsapp_inbound_at)
        s.add(person)
        s.flush()
        thread = ThreadRow(account_id=acct.id, contact_id=person.id, current_plan="starter",
                           target_plan="growth", direction="up", state=state, last_channel="sms",
                           opened_at=NOW, updated_at=NOW)
        s.add(thread)
        s.flush()
        return person.id, thread.id


def queue(engine, contact_id: int, thread_id: int | None, body: str, *, channel: str = "sms",
          kind: str = "opening", not_before=None) -> int:
    """Queue an outbound message as the use cases do (core.delivery.queue_message: the row and,
    on a pushed channel, its outbox job)."""
    with SqlUnitOfWork(engine) as uow:
        message_id = queue_message(uow, thread_id=thread_id, contact_id=contact_id,
                                   channel=registered().require(channel), kind=kind, body=body,
                                   now=NOW,
                                   not_before=not_before)
        uow.commit()
    return message_id


def message(engine, message_id: int) -> MessageRow:
    with Session(engine) as s:
        return s.get(MessageRow, message_id)


def job(engine, message_id: int) -> OutboxRow:
    """The message's outbox job."""
    with Session(engine) as s:
        return s.scalars(select(OutboxRow).where(OutboxRow.key == f"message:{message_id}")).one()


def thread_state(engine, thread_id: int) -> str:
    with Session(engine) as s:
        return s.get(ThreadRow, thread_id).state


# --- rows, set up through the app ----------------------------------------------------------------

def crossing(make_app, clock) -> Api:
    """The §1 buyer (Starter, Chicago, Dana reachable by SMS) goes over 4,500 messages at the
    clock's time; the app queues the opening on SMS."""
    api = Api(make_app(CONTROL_SHARE="0").test_client())
    body = account(plan="starter", timezone="America/Chicago", billing_day=5,
                   contacts=[contact("acme-dana", name="Dana", role="billing", phone=PHONE)])
    assert api.put("/accounts/acme", json=body).status_code == 201
    events = [usage_event(f"m{i}", "acme", "messages", 600, ago(clock.now, days=7 - i))
              for i in range(8)]
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()
    return api


def the_opening(api: Api) -> dict:
    [opening] = [m for m in api.get("/accounts/acme/thread").get_json()["messages"]
                 if m["kind"] == "opening"]
    return opening


def opening_row(engine) -> MessageRow:
    with Session(engine) as s:
        return s.scalars(select(MessageRow).where(MessageRow.kind == "opening")).one()


# --- SMS -----------------------------------------------------------------------------------------

def test_a_queued_sms_opening_goes_to_twilio_with_its_number_sender_and_text(
        engine, make_app, clock, fake, dispatcher):
    api = crossing(make_app, clock)
    body = the_opening(api)["body"]
    assert api.get("/accounts/acme/thread").get_json()["state"] == "open"  # not sent yet

    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    assert api.get("/accounts/acme/thread").get_json()["state"] == "offered"

    [sent] = fake.requests
    assert sent.authorized and sent.account_sid == fake.account_sid
    assert (sent.to, sent.from_, sent.body) == (PHONE, SMS_FROM, body)
    assert sent.status_callback == CALLBACK and sent.content_sid is None
    row = opening_row(engine)
    assert (row.status, row.delivery_status, row.sent_at) == ("sent", "queued", NOW)
    assert row.attempts == 1
    assert row.provider_id.startswith("SM") and len(row.provider_id) == 34
    assert api.get("/accounts/acme/thread").get_json()["state"] == "offered"  # was offered already
    assert dispatcher().dispatch_due() == DispatchStats()
    assert fake.count() == 1


def test_a_deferred_opening_is_not_sent_before_it_is_due_and_then_offers_the_thread(
        engine, make_app, clock, fake, dispatcher):
    clock.now = NOW - timedelta(hours=12)  # 21:00 in Chicago: quiet hours defer the opening
    api = crossing(make_app, clock)
    not_before = opening_row(engine).not_before
    assert not_before is not None and not_before > clock.now
    assert api.get("/accounts/acme/thread").get_json()["state"] == "open"

    assert dispatcher().dispatch_due() == DispatchStats()
    clock.now = not_before - timedelta(seconds=1)
    assert dispatcher().dispatch_due() == DispatchStats()
    assert fake.count() == 0

    clock.now = not_before
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    assert [r.to for r in fake.requests] == [PHONE]
    assert api.get("/accounts/acme/thread").get_json()["state"] == "offered"


def test_a_queued_reply_in_an_open_thread_is_sent_without_moving_the_thread(
        engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, state="open")
    queue(engine, contact_id, thread_id, "A reply.", kind="reply")
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    assert thread_state(engine, thread_id) == "open"


def test_two_server_errors_then_success_send_once_and_the_retries_wait_their_backoff(
        engine, clock, fake, dispatcher):
    contact_id, thread_id = seed(engine)
    msg_id = queue(engine, contact_id, thread_id, "Growth would save you $30.00.")
    fake.answer(500, 502)
    d = dispatcher()

    assert d.dispatch_due() == DispatchStats(retried=1)
    row = message(engine, msg_id)
    assert (row.status, row.attempts, job(engine, msg_id).next_attempt_at) == (
        "queued", 1, NOW + BASE_DELAY)
    assert row.last_error == "twilio error 20500 (HTTP 500)"
    assert job(engine, msg_id).last_error == row.last_error
    clock.now = NOW + BASE_DELAY - timedelta(seconds=1)
    assert d.dispatch_due() == DispatchStats() and fake.count() == 1

    clock.now = NOW + BASE_DELAY
    assert d.dispatch_due() == DispatchStats(retried=1)
    second_try = clock.now + 2 * BASE_DELAY  # doubled
    assert job(engine, msg_id).next_attempt_at == second_try
    clock.now = second_try - timedelta(seconds=1)
    assert d.dispatch_due() == DispatchStats() and fake.count() == 2

    clock.now = second_try
    assert d.dispatch_due() == DispatchStats(sent=1)
    assert fake.bodies() == {"Growth would save you $30.00.": 3}
    row = message(engine, msg_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert (job(engine, msg_id).status, job(engine, msg_id).attempts) == ("sent", 3)
    clock.now += timedelta(hours=1)
    assert d.dispatch_due() == DispatchStats() and fake.count() == 3


def test_an_opening_retried_into_quiet_hours_waits_for_the_morning_without_an_attempt(
        engine, clock, fake, dispatcher):
    contact_id, thread_id = seed(engine, state="open")
    msg_id = queue(engine, contact_id, thread_id, "Growth would save you $30.00.")
    clock.now = NOW + timedelta(hours=10, minutes=50)  # 19:50 in Chicago
    fake.answer(500)
    d = dispatcher()
    assert d.dispatch_due() == DispatchStats(retried=1)

    # Its retry was due 15 s later, but the scheduler was down until 20:00:05 (or the provider
    # kept asking us to wait): not a time to text anyone.
    clock.now = NOW + timedelta(hours=11, seconds=5)
    assert d.dispatch_due() == DispatchStats(later=1) and fake.count() == 1
    morning = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)  # 09:00 in Chicago
    row = job(engine, msg_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, morning)
    assert "quiet hours" in row.last_error
    assert message(engine, msg_id).status == "queued"

    clock.now = morning - timedelta(seconds=1)
    assert d.dispatch_due() == DispatchStats() and fake.count() == 1
    clock.now = morning
    assert d.dispatch_due() == DispatchStats(sent=1)
    assert (message(engine, msg_id).status, message(engine, msg_id).attempts) == ("sent", 2)
    assert thread_state(engine, thread_id) == "offered"


def test_an_opening_claimed_minutes_before_the_window_closes_waits_for_the_morning(
        engine, clock, fake, dispatcher):
    """A claimed send may go out up to a lease later: one claimed at 19:57 could land at 20:01."""
    contact_id, thread_id = seed(engine, state="open")
    queue(engine, contact_id, thread_id, "Growth would save you $30.00.")
    clock.now = NOW + timedelta(hours=10, minutes=57)  # 19:57 in Chicago
    assert dispatcher().dispatch_due() == DispatchStats(later=1) and fake.count() == 0
    clock.now = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)  # 09:00 the next day
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)


def test_a_reply_goes_out_when_it_is_due_even_at_night(engine, clock, fake, dispatcher):
    """The buyer wrote at 23:00 and is waiting for the answer: quiet hours hold our own texts."""
    contact_id, thread_id = seed(engine)
    clock.now = NOW + timedelta(hours=14)  # 23:00 in Chicago
    queue(engine, contact_id, thread_id, "Growth is $499 a month.", kind="reply")
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)


def test_a_message_that_keeps_failing_fails_for_good_after_max_attempts(
        engine, clock, fake, dispatcher):
    contact_id, thread_id = seed(engine)
    msg_id = queue(engine, contact_id, thread_id, "Hello")
    fake.answer(500, 502, 500)
    d = dispatcher(max_attempts=3)
    assert d.dispatch_due() == DispatchStats(retried=1)
    clock.now += timedelta(minutes=1)
    assert d.dispatch_due() == DispatchStats(retried=1)
    clock.now += timedelta(minutes=1)
    assert d.dispatch_due() == DispatchStats(failed=1)
    assert (message(engine, msg_id).status, fake.count()) == ("failed", 3)


def test_a_timeout_is_retried_and_the_message_then_sent(engine, clock, fake, dispatcher):
    contact_id, thread_id = seed(engine)
    msg_id = queue(engine, contact_id, thread_id, "Hello")
    fake.answer(HANG)
    d = dispatcher()
    assert d.dispatch_due() == DispatchStats(retried=1)
    assert message(engine, msg_id).last_error == "ReadTimeout"
    clock.now += BASE_DELAY
    assert d.dispatch_due() == DispatchStats(sent=1)
    assert fake.count() == 2


def test_an_unsubscribed_recipient_fails_at_once_and_the_contact_is_opted_out(
        engine, clock, fake, dispatcher):
    contact_id, thread_id = seed(engine)
    first = queue(engine, contact_id, thread_id, "The case.")
    fake.answer(twilio_error(21610, message="Attempt to send to unsubscribed recipient"))
    d = dispatcher()
    assert d.dispatch_due() == DispatchStats(failed=1)

    row = message(engine, first)
    assert row.status == "failed" and "21610" in row.last_error
    with Session(engine) as s:
        assert s.get(ContactRow, contact_id).opted_out_at == NOW
        [consent] = s.scalars(select(ConsentEventRow)).all()
        assert (consent.action, consent.channel, consent.source) == ("revoke", "sms", "carrier")
    assert thread_state(engine, thread_id) == "opted_out"

    later = queue(engine, contact_id, None, "Anything else.", kind="reply")
    clock.now += timedelta(hours=1)
    assert d.dispatch_due() == DispatchStats(cancelled=1)
    assert message(engine, later).status == "cancelled"
    assert fake.count() == 1


@pytest.mark.parametrize("answer, stats", [
    (twilio_error(21211, message="The 'To' number is not a valid phone number."),
     DispatchStats(failed=1)),
    (twilio_error(21602, message="Message body is required."), DispatchStats(failed=1)),
    (twilio_error(20429, status=429, message="Too Many Requests"), DispatchStats(held=1)),
    (503, DispatchStats(held=1)),
    (502, DispatchStats(retried=1)),
], ids=["invalid-number", "other-4xx", "429", "503", "502"])
def test_client_errors_fail_without_a_retry_server_errors_are_retried_and_a_wait_holds(
        engine, clock, fake, dispatcher, answer, stats):
    contact_id, thread_id = seed(engine)
    msg_id = queue(engine, contact_id, thread_id, "Hello")
    fake.answer(answer)
    d = dispatcher()
    assert d.dispatch_due() == stats
    clock.now += timedelta(hours=1)
    d.dispatch_due()
    expected = ("failed", 1) if stats.failed else ("sent", 2)
    assert (message(engine, msg_id).status, fake.count()) == expected
    # A wait Twilio asked for is not an attempt of the message: it counts only the one sent.
    assert message(engine, msg_id).attempts == (1 if stats.held else expected[1])


def test_a_ten_minute_outage_answering_503_and_429_loses_no_message(
        engine, clock, fake, dispatcher):
    """Twilio down for 10 minutes (503 and 429 in turn, Retry-After 30 s) while the scheduler
    passes every 10 s: nothing fails, and every message goes out once it is back (bench/faults.py
    outage found the messages failed for good after 6 attempts, about 8 minutes in)."""
    contact_id, thread_id = seed(engine)
    ids = [queue(engine, contact_id, thread_id, f"Message {i}", kind="reply") for i in range(3)]
    up = NOW + timedelta(minutes=10)
    turn = [0]

    def outage(request):
        if clock.now >= up:
            return 201
        turn[0] += 1
        status, code = (503, 20503) if turn[0] % 2 else (429, 20429)
        return twilio_error(code, status=status, retry_after=30)

    fake.responder = outage
    d = dispatcher()
    while clock.now < up + timedelta(minutes=2):
        d.dispatch_due()
        clock.now += timedelta(seconds=10)
    assert [message(engine, i).status for i in ids] == ["sent"] * 3
    created = Counter(r.body for r in fake.log() if r.answer == 201)
    assert created == {f"Message {i}": 1 for i in range(3)}  # each sent once


def test_no_request_goes_to_twilio_before_its_retry_after_ran_out(engine, clock, fake,
                                                                  dispatcher):
    """A 429 or 503 with Retry-After is about the account: no message of the batch, nor any
    other, is tried again before it runs out."""
    contact_id, thread_id = seed(engine)
    queue(engine, contact_id, thread_id, "First", kind="reply")
    fake.answer(twilio_error(20429, status=429, message="Too Many Requests", retry_after=60))
    d = dispatcher()
    d.dispatch_due()
    assert fake.count() == 1
    later = queue(engine, contact_id, thread_id, "Queued after the refusal", kind="reply")
    for _ in range(5):  # the scheduler's passes within the minute
        clock.now += timedelta(seconds=10)
        d.dispatch_due()
    assert fake.count() == 1
    clock.now = NOW + timedelta(seconds=60)
    d.dispatch_due()
    assert sorted(fake.bodies()) == ["First", "Queued after the refusal"]
    assert message(engine, later).status == "sent"


@pytest.mark.parametrize("refusal, code", [
    ("wrong-token", 20003),
    (twilio_error(20005, status=403, message="Account not active"), 20005),
], ids=["401-wrong-token", "20005-inactive"])
def test_a_refused_account_holds_every_message_untried_and_they_go_out_once_it_is_fixed(
        engine, clock, fake, dispatcher, caplog, refusal, code):
    contact_id, thread_id = seed(engine)
    ids = [queue(engine, contact_id, thread_id, f"Message {i}", kind="reply") for i in range(3)]
    d = dispatcher(max_attempts=2)
    if refusal == "wrong-token":
        fake.auth_token = "rotated"  # Twilio no longer accepts our token: HTTP 401, code 20003
    for _ in range(3):  # more refusals than max_attempts, and still nothing fails
        if refusal != "wrong-token":
            fake.answer(refusal)
        assert d.dispatch_due() == DispatchStats(held=3)  # one request, then the batch stops
        assert d.dispatch_due() == DispatchStats()  # held: not due again for 5 minutes
        clock.now += timedelta(minutes=5)
    assert fake.count() == 3
    assert [(message(engine, i).status, message(engine, i).attempts) for i in ids] == [
        ("queued", 0)] * 3
    assert f"Twilio refused the account (twilio error {code}" in caplog.text

    fake.auth_token = AUTH_TOKEN  # the operator fixed it (for 20005: the script is empty)
    assert d.dispatch_due() == DispatchStats(sent=3)
    assert [message(engine, i).status for i in ids] == ["sent"] * 3


def test_a_stop_after_the_prompt_was_queued_cancels_it_and_nothing_reaches_twilio(
        engine, make_app, clock, fake, dispatcher):
    clock.now = NOW - timedelta(hours=12)  # deferred to the morning by quiet hours
    api = crossing(make_app, clock)
    r = api.post("/conversations/acme-dana/messages",
                 json={"channel": "sms", "text": "STOP", "id": "SM-stop"})
    assert r.status_code == 200 and r.get_json()["state"] == "opted_out"
    clock.now = opening_row(engine).not_before

    assert dispatcher().dispatch_due() == DispatchStats(cancelled=1)
    assert fake.count() == 0
    row = opening_row(engine)
    assert (row.status, row.last_error, row.provider_id) == ("cancelled", "opted out", None)


def test_an_opening_whose_thread_closed_meanwhile_is_cancelled(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, state="escalated")
    msg_id = queue(engine, contact_id, thread_id, "The case.")
    assert dispatcher().dispatch_due() == DispatchStats(cancelled=1)
    assert (message(engine, msg_id).last_error, fake.count()) == ("thread closed", 0)


@pytest.mark.parametrize("channel, numbers", [
    ("sms", {"phone": None, "whatsapp": WHATSAPP, "whatsapp_opt_in": True}),
    ("whatsapp", {"phone": None, "whatsapp": None, "whatsapp_opt_in": True}),
])
def test_a_message_to_a_contact_without_a_number_for_its_channel_fails_unsent(
        engine, clock, fake, dispatcher, channel, numbers):
    contact_id, thread_id = seed(engine, **numbers)
    msg_id = queue(engine, contact_id, thread_id, "The case.", channel=channel)
    assert dispatcher().dispatch_due() == DispatchStats(failed=1)
    row = message(engine, msg_id)
    assert (row.status, row.last_error) == ("failed", f"the contact has no number for {channel}")
    assert (job(engine, msg_id).status, job(engine, msg_id).attempts) == ("failed", 0)
    clock.now += timedelta(hours=1)
    assert dispatcher().dispatch_due() == DispatchStats() and fake.count() == 0


def test_an_app_with_twilio_api_url_sends_through_that_server(engine, make_app, clock, fake):
    """TWILIO_API_URL points the service's own Twilio client elsewhere (a fake Twilio, for the
    tests and bench/faults.py): the scheduler's pass sends the queued opening there."""
    from cli import run_jobs

    app = make_app(CONTROL_SHARE="0", TWILIO_ACCOUNT_SID=fake.account_sid,
                   TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM,
                   PUBLIC_BASE_URL="https://chat.example.com", TWILIO_API_URL=fake.base_url)
    api = Api(app.test_client())
    body = account(plan="starter", timezone="America/Chicago", billing_day=5,
                   contacts=[contact("acme-dana", name="Dana", role="billing", phone=PHONE)])
    assert api.put("/accounts/acme", json=body).status_code == 201
    events = [usage_event(f"m{i}", "acme", "messages", 600, ago(clock.now, days=7 - i))
              for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    with app.app_context():
        assert "outbox: 1 sent" in run_jobs(app.extensions["upgrade_chat"])
    [sent] = fake.requests
    assert sent.authorized and (sent.to, sent.from_) == (PHONE, SMS_FROM)
    assert sent.status_callback == CALLBACK
    assert opening_row(engine).provider_id.startswith("SM")


def test_the_sandbox_sender_marks_messages_sent_without_any_request(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, state="open")
    msg_id = queue(engine, contact_id, thread_id, "The case.")
    assert dispatcher(sender=SandboxSender()).dispatch_due() == DispatchStats(sent=1)
    row = message(engine, msg_id)
    assert row.status == "sent" and row.provider_id.startswith("SB") and len(row.provider_id) == 34
    assert thread_state(engine, thread_id) == "offered"
    assert fake.count() == 0


# --- WhatsApp ------------------------------------------------------------------------------------

def test_whatsapp_inside_the_24_hour_window_goes_as_free_text(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, whatsapp=WHATSAPP, whatsapp_opt_in=True,
                                 whatsapp_inbound_at=NOW - timedelta(hours=23))
    queue(engine, contact_id, thread_id, "Growth unlocks workflows.", channel="whatsapp")
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    [sent] = fake.requests
    assert (sent.to, sent.from_) == (f"whatsapp:{WHATSAPP}", f"whatsapp:{WHATSAPP_FROM}")
    assert (sent.body, sent.content_sid, sent.content_variables) == (
        "Growth unlocks workflows.", None, None)


def test_whatsapp_outside_the_window_goes_as_the_approved_template(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, whatsapp=WHATSAPP, whatsapp_opt_in=True,
                                 whatsapp_inbound_at=NOW - timedelta(hours=25))
    queue(engine, contact_id, thread_id, "Growth unlocks\nworkflows.", channel="whatsapp")
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    [sent] = fake.requests
    assert sent.to == f"whatsapp:{WHATSAPP}" and sent.body is None
    assert sent.content_sid == TEMPLATE
    assert json.loads(sent.content_variables) == {"1": "Growth unlocks workflows."}


def test_whatsapp_outside_the_window_without_a_template_fails_and_sends_nothing(
        engine, clock, fake, dispatcher):
    contact_id, thread_id = seed(engine, whatsapp=WHATSAPP, whatsapp_opt_in=True)  # never wrote
    msg_id = queue(engine, contact_id, thread_id, "The case.", channel="whatsapp")
    d = dispatcher(template=None)
    assert d.dispatch_due() == DispatchStats(failed=1)
    assert "no approved WhatsApp template" in message(engine, msg_id).last_error
    clock.now += timedelta(hours=1)
    assert d.dispatch_due() == DispatchStats()
    assert fake.count() == 0


def test_whatsapp_without_an_opt_in_is_cancelled(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, whatsapp=WHATSAPP, whatsapp_opt_in=False,
                                 whatsapp_inbound_at=NOW - timedelta(hours=1))
    msg_id = queue(engine, contact_id, thread_id, "The case.", channel="whatsapp")
    assert dispatcher().dispatch_due() == DispatchStats(cancelled=1)
    assert (message(engine, msg_id).last_error, fake.count()) == ("no whatsapp opt-in", 0)


def test_a_web_chat_message_gets_no_job_and_is_left_to_the_widget(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, whatsapp=WHATSAPP, whatsapp_opt_in=True)
    web = queue(engine, contact_id, thread_id, "On the web.", channel="web")
    wa = queue(engine, contact_id, thread_id, "On WhatsApp.", channel="whatsapp", kind="reply")
    with Session(engine) as s:
        assert [(j.kind, j.key, j.payload) for j in s.scalars(select(OutboxRow))] == [
            ("message", f"message:{wa}", {"message_id": wa})]
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    assert (message(engine, web).status, message(engine, wa).status) == ("queued", "sent")
    assert [r.to for r in fake.requests] == [f"whatsapp:{WHATSAPP}"]


def test_a_queued_message_job_is_due_when_the_message_is(engine, fake, dispatcher, clock):
    contact_id, thread_id = seed(engine)
    later = NOW + timedelta(hours=3)
    msg_id = queue(engine, contact_id, thread_id, "Good morning.", not_before=later)
    row = job(engine, msg_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.created_at) == (
        "pending", 0, later, NOW)
    assert dispatcher().dispatch_due() == DispatchStats()
    clock.now = later
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)


# --- leases and concurrency ----------------------------------------------------------------------

def test_a_late_outcome_after_the_lease_was_taken_over_is_not_recorded(
        engine, fake, dispatcher, clock):
    contact_id, thread_id = seed(engine)
    msg_id = queue(engine, contact_id, thread_id, "Hello")
    fake.answer(500)
    taking_over = dispatcher()

    class SlowThenRejected:
        def send(self, msg):
            # While this send drags on past its lease, another dispatcher takes the message and
            # tries it (that it can, on SQLite and PostgreSQL, shows no lock is held meanwhile);
            # Twilio answers that one with a 500, to be retried.
            clock.now += LEASE
            assert taking_over.dispatch_due() == DispatchStats(retried=1)
            raise PermanentFailure("twilio error 21211 (HTTP 400): invalid 'To' number")

    assert dispatcher(sender=SlowThenRejected()).dispatch_due() == DispatchStats()
    # The stale claim's failure is not recorded: the message waits for the other one's retry.
    row, pending = message(engine, msg_id), job(engine, msg_id)
    assert (row.status, row.attempts, row.last_error) == (
        "queued", 2, "twilio error 20500 (HTTP 500)")
    assert (pending.status, pending.attempts, pending.next_attempt_at) == (
        "pending", 2, clock.now + 2 * BASE_DELAY)
    clock.now += 2 * BASE_DELAY
    assert taking_over.dispatch_due() == DispatchStats(sent=1)
    assert message(engine, msg_id).status == "sent" and fake.count() == 2


def test_an_opening_cancelled_while_in_flight_is_recorded_as_sent_and_offers_the_thread(
        engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, state="open")
    msg_id = queue(engine, contact_id, thread_id, "The case.")

    class CancelledMeanwhile(SandboxSender):
        def send(self, msg):
            # The buyer wrote in and their reply carried the case: the queued opening is
            # cancelled while this request is already out.
            with Session(engine) as s, s.begin():
                s.get(MessageRow, msg.id).status = "cancelled"
            return super().send(msg)

    assert dispatcher(sender=CancelledMeanwhile()).dispatch_due() == DispatchStats(sent=1)
    row = message(engine, msg_id)
    assert row.status == "sent" and row.provider_id.startswith("SB")  # it went out all the same
    assert thread_state(engine, thread_id) == "offered"


def test_an_opening_cancelled_before_its_claim_is_never_sent(engine, fake, dispatcher):
    contact_id, thread_id = seed(engine, state="open")
    msg_id = queue(engine, contact_id, thread_id, "The case.")
    with Session(engine) as s, s.begin():
        s.get(MessageRow, msg_id).status = "cancelled"  # a reply carried the case
    assert dispatcher().dispatch_due() == DispatchStats(cancelled=1)
    assert (job(engine, msg_id).status, message(engine, msg_id).status) == (
        "cancelled", "cancelled")
    assert fake.count() == 0 and thread_state(engine, thread_id) == "open"


def test_a_message_whose_dispatcher_dies_every_time_fails_after_max_attempts(
        engine, fake, dispatcher, clock):
    class Died(BaseException):
        """What a killed process looks like to the dispatcher: nothing after the send runs."""

    class Dying:
        def send(self, msg):
            raise Died()

    contact_id, thread_id = seed(engine)
    msg_id = queue(engine, contact_id, thread_id, "Hello")
    for _ in range(2):
        with pytest.raises(Died):
            dispatcher(sender=Dying(), max_attempts=2).dispatch_due()
        clock.now += LEASE
    assert dispatcher(max_attempts=2).dispatch_due() == DispatchStats(failed=1)
    row = message(engine, msg_id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert "no outcome recorded for the last" in row.last_error
    assert job(engine, msg_id).status == "failed" and fake.count() == 0


def test_two_dispatchers_at_once_send_each_of_20_messages_exactly_once(
        engine, fake, dispatcher):
    contact_id, thread_id = seed(engine)
    for i in range(20):
        queue(engine, contact_id, thread_id, f"message {i}", kind="reply")
    totals: list[DispatchStats] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    @event.listens_for(engine, "after_cursor_execute")
    def linger_after_claiming(conn, cursor, statement, parameters, context, executemany):
        # Widen the gap between selecting due messages and leasing them, so the other
        # dispatcher's claim runs inside it: a claim that did not lock its rows would double-send.
        if statement.startswith("SELECT") and "ORDER BY outbox.next_attempt_at" in statement:
            time.sleep(0.02)

    def run(d):
        try:
            start.wait()
            while (stats := d.dispatch_due(limit=3)) != DispatchStats():
                totals.append(stats)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(dispatcher(),)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert not errors
    assert sum(s.sent for s in totals) == 20
    assert fake.bodies() == {f"message {i}": 1 for i in range(20)}
    with Session(engine) as s:
        rows = s.scalars(select(MessageRow).where(MessageRow.direction == "out")).all()
        assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
        assert len({r.provider_id for r in rows}) == 20


def test_logs_carry_ids_and_codes_never_bodies_or_numbers(engine, clock, fake, dispatcher,
                                                          caplog):
    contact_id, thread_id = seed(engine)
    queue(engine, contact_id, thread_id, "Secret figures $529.00")
    queue(engine, contact_id, thread_id, "Second secret", kind="reply")
    fake.answer(twilio_error(21211, message=f"The 'To' number {PHONE} is not a valid number."), 500)
    caplog.set_level(logging.DEBUG, logger="channels.twilio_outbound")
    for logger in ("storage.outbox", "storage.delivery", "core.delivery"):
        caplog.set_level(logging.DEBUG, logger=logger)
    dispatcher().dispatch_due()
    clock.now += timedelta(minutes=1)
    dispatcher().dispatch_due()
    text = caplog.text
    assert "21211" in text and "20500" in text
    for secret in (PHONE, PHONE[2:], "Secret", "$529.00"):
        assert secret not in text
    with Session(engine) as s:
        assert all(PHONE[2:] not in (r.last_error or "") for r in s.scalars(select(MessageRow)))
