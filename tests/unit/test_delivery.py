"""What an outbound message may do at claim time (core.delivery.verdict), and the outbox's
backoff (core.jobs.Backoff): pure decisions, from facts as storage reads them."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from channels.twilio_messaging import SMS as SMS_CHANNEL, WHATSAPP as WHATSAPP_CHANNEL
from channels.webchat import WEB
from core.channels import Channels, Delivery
from core.delivery import Send, in_window, verdict
from core.jobs import (AccountRefused, Backoff, PermanentFailure, ProviderBusy, RecipientOptedOut,
                       RetryLater, Settle, describe)
from core.ports import MessageFacts

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
PHONE, WHATSAPP = "+13125550142", "+447700900123"

SMS = MessageFacts(id=1, status="queued", channel="sms", kind="opening", body="The case.",
                   thread_id=7, thread_state="open", account_id=3, contact_id=5, opted_out=False,
                   whatsapp_opt_in_at=None, phone=PHONE, whatsapp=None, whatsapp_inbound_at=None)
WA = replace(SMS, channel="whatsapp", whatsapp_opt_in_at=NOW - timedelta(days=30),
             whatsapp=WHATSAPP)
CHANNELS = Channels([WEB, WHATSAPP_CHANNEL, SMS_CHANNEL])


def decide(facts, now=NOW):
    return verdict(facts, CHANNELS.get(facts.channel), now)


@pytest.mark.parametrize("facts, expected", [
    (SMS, Send(PHONE, False)),
    (replace(SMS, kind="reply", thread_state="declined"), Send(PHONE, False)),  # answers go out
    (replace(SMS, thread_id=None, thread_state=None), Send(PHONE, False)),
    (replace(SMS, thread_state="awaiting_confirmation"), Send(PHONE, False)),
    (WA, Send(WHATSAPP, False)),
    (replace(WA, whatsapp=None), Send(PHONE, False)),  # the phone takes WhatsApp too
    (replace(SMS, status="cancelled"),
     Settle("cancelled", "nothing to send: the message is cancelled")),
    (replace(SMS, contact_id=None), Settle("failed", "no contact to send to")),
    (replace(SMS, opted_out=True), Settle("cancelled", "opted out")),
    (replace(WA, opted_out=True), Settle("cancelled", "opted out")),
    (replace(WA, whatsapp_opt_in_at=None), Settle("cancelled", "no whatsapp opt-in")),
    (replace(SMS, channel="fax"), Settle("failed", "no channel 'fax' is registered to send it")),
    (replace(SMS, thread_state="declined"), Settle("cancelled", "thread closed")),
    (replace(SMS, thread_state="opted_out"), Settle("cancelled", "thread closed")),
    (replace(SMS, phone=None), Settle("failed", "the contact has no number for sms")),
    (replace(WA, phone=None, whatsapp=None),
     Settle("failed", "the contact has no number for whatsapp")),
], ids=["sms", "reply-in-closed-thread", "no-thread", "awaiting", "whatsapp", "wa-on-phone",
        "cancelled-meanwhile", "no-contact", "opted-out", "wa-opted-out", "no-opt-in",
        "unregistered", "declined", "thread-opted-out", "no-phone", "no-numbers"])
def test_the_verdict_at_claim_time(facts, expected):
    assert decide(facts) == expected


def test_consent_outranks_the_number_and_the_thread():
    closed_and_out = replace(SMS, opted_out=True, thread_state="declined", phone=None)
    assert decide(closed_and_out) == Settle("cancelled", "opted out")


@pytest.mark.parametrize("wrote_ago, inside", [
    (timedelta(hours=23, minutes=49, seconds=59), True),
    (timedelta(hours=23, minutes=50), False),  # the window counts as closed 10 minutes early
    (timedelta(hours=25), False),
    (timedelta(0), True),
])
def test_whatsapp_free_text_only_inside_the_window_less_its_margin(wrote_ago, inside):
    facts = replace(WA, whatsapp_inbound_at=NOW - wrote_ago)
    assert in_window(facts, WHATSAPP_CHANNEL, NOW) is inside
    assert decide(facts) == Send(WHATSAPP, inside)
    assert in_window(facts, SMS_CHANNEL, NOW) is False  # SMS has no window


def test_only_phone_messages_are_pushed_web_chat_is_pulled():
    assert {c.name for c in CHANNELS if c.delivery == Delivery.PUSH} == {"sms", "whatsapp"}
    assert WEB.delivery == Delivery.POLL


def test_backoff_doubles_up_to_its_cap_and_stays_in_range():
    policy = Backoff(max_attempts=6, base_delay=timedelta(seconds=15),
                     max_delay=timedelta(minutes=30))
    assert [policy.delay(n) for n in range(1, 10)] == [
        timedelta(seconds=s) for s in (15, 30, 60, 120, 240, 480, 960, 1800, 1800)]
    assert policy.delay(10_000) == timedelta(minutes=30)  # no overflow however many attempts
    for bad in (dict(max_attempts=0), dict(base_delay=timedelta(0)),
                dict(base_delay=timedelta(minutes=2), max_delay=timedelta(minutes=1))):
        with pytest.raises(ValueError):
            Backoff(**bad)


def test_our_errors_are_recorded_as_written_others_by_their_type_alone():
    assert describe(PermanentFailure("twilio error 21211 (HTTP 400)", 21211)) == \
        "twilio error 21211 (HTTP 400)"
    assert describe(RetryLater("ReadTimeout")) == "ReadTimeout"
    # Anything else may quote what it failed on (a number, a body): its type only.
    assert describe(RuntimeError("send to +13125550142 failed")) == \
        "builtins.RuntimeError (details withheld)"
    assert describe(RetryLater("x" * 900)) == "x" * 500
    assert isinstance(RecipientOptedOut("21610", 21610), PermanentFailure)
    assert not isinstance(AccountRefused("401"), PermanentFailure)


def test_twilio_asking_to_wait_is_a_hold_for_its_retry_after_within_the_backoffs_bounds():
    from channels.twilio_outbound import parse_retry_after, twilio_error

    policy = Backoff(max_attempts=6, base_delay=timedelta(seconds=15),
                     max_delay=timedelta(minutes=30))
    for status in (429, 503):
        busy = twilio_error(20000 + status, status, timedelta(seconds=40))
        assert isinstance(busy, ProviderBusy) and not isinstance(busy, PermanentFailure)
        assert busy.wait(policy) == timedelta(seconds=40)
        assert str(busy) == (f"twilio error {20000 + status} (HTTP {status}): Twilio asked us "
                             f"to wait, Retry-After 40 s")
        assert twilio_error(20000 + status, status).wait(policy) == timedelta(seconds=15)
        assert twilio_error(20000 + status, status, timedelta(hours=5)).wait(policy) == \
            timedelta(minutes=30)
    assert isinstance(twilio_error(20500, 500), RetryLater)
    assert not isinstance(twilio_error(20500, 500), ProviderBusy)
    assert isinstance(twilio_error(20003, 401), AccountRefused)

    assert parse_retry_after("120") == timedelta(seconds=120)
    assert parse_retry_after(" 0 ") == timedelta(0)
    assert parse_retry_after("Thu, 26 Nov 2026 15:01:30 GMT", NOW) == timedelta(seconds=90)
    assert parse_retry_after("Thu, 26 Nov 2026 14:00:00 GMT", NOW) == timedelta(0)
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(unreadable) is None
