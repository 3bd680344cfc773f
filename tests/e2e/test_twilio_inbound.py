"""Twilio messaging inbound, end to end on SQLite and PostgreSQL: really signed webhooks (the
real RequestValidator) from recorded payloads, answered in TwiML; delivery reports recorded."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from twilio.request_validator import RequestValidator

from core.handlers import advances
from storage.models import MessageRow, PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, event
from tests.support.concurrency import at_once

TOKEN = "test-token"
BASE = "https://chat.example.com"
ACME, DANA = "acme", "acme-dana"
DANA_PHONE = "+13125550142"
STRANGER = "+13125550199"
PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "twilio"


@pytest.fixture
def app(make_app):
    app = make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0",
                   BUSINESS_NAME="Acme Billing", SUPPORT_CONTACT="help@acme.example")
    return app


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


class Twilio:
    """Posts webhooks the way Twilio does: a form, signed over our public URL and the params."""

    def __init__(self, client) -> None:
        self.client = client

    def post(self, target: str, params: dict, *, token: str | None = TOKEN,
             signature: str | None = None, headers: dict | None = None):
        if signature is None and token is not None:
            signature = RequestValidator(token).compute_signature(BASE + target, params)
        headers = dict(headers or {})
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(target, data=params, headers=headers)

    def text(self, body: str, sid: str | None = None, *, medium: str = "sms",
             number: str = DANA_PHONE, **extra: str):
        """A buyer's message; a fresh MessageSid unless one is given."""
        params = payload("whatsapp_inbound" if medium == "whatsapp" else "sms_inbound")
        sid = sid or new_sid()
        prefix = "whatsapp:" if medium == "whatsapp" else ""
        params.update(From=prefix + number, Body=body, MessageSid=sid, SmsSid=sid,
                      SmsMessageSid=sid, **extra)
        return self.post("/twilio/messaging", params)

    def status(self, name: str, sid: str, **extra: str):
        params = payload(name)
        params.update(MessageSid=sid, SmsSid=sid, **extra)
        return self.post("/twilio/status", params)


@pytest.fixture
def twilio(app) -> Twilio:
    return Twilio(app.test_client())


def payload(name: str) -> dict[str, str]:
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def replies(response) -> list[str]:
    """The <Message> texts of a TwiML answer, after checking it is one."""
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/xml", response.content_type
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return [m.text or "" for m in root.findall("Message")]


def setup_account(api, **contact_fields):
    """The §1 buyer: Starter, billed on the 5th, in Chicago; Dana (billing) on SMS and WhatsApp."""
    fields = {"phone": DANA_PHONE, "whatsapp": DANA_PHONE, **contact_fields}
    body = account(plan="starter", timezone="America/Chicago", billing_day=5,
                   contacts=[contact(DANA, name="Dana", role="billing", **fields)])
    assert api.put(f"/accounts/{ACME}", json=body).status_code in (200, 201)


def cross_messages(api) -> dict:
    """4,800 messages over the last 30 days: over the 4,500 Starter → Growth threshold."""
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    events.append(event("m-seats", ACME, "seats", 3, ago(days=1)))
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()
    run_jobs(api.client.application)  # the scheduler's next pass sends the queued opening
    return r.get_json()


def run_jobs(app) -> None:
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0, result.output


def cross_seats(api) -> None:
    """A later crossing: a fourth seat."""
    r = api.post("/usage", json=batch(event("seats-4", ACME, "seats", 4, ago(hours=1))))
    assert r.status_code == 200, r.get_json()


def signal_reason(api, metric: str) -> tuple[str, str | None]:
    signals = api.get(f"/accounts/{ACME}/signals").get_json()["signals"]
    [signal] = [s for s in signals if s["metric"] == metric]
    return signal["outcome"], signal["reason"]


def thread(api) -> dict:
    return api.get(f"/accounts/{ACME}/thread").get_json()


def db(app):
    return app.extensions["upgrade_chat"].engine


def count_messages(app, *where) -> int:
    with db(app).connect() as conn:
        return conn.scalar(select(func.count()).select_from(MessageRow).where(*where))


def consent_events(app) -> list[tuple[str, str, str]]:
    with db(app).connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT action, channel, source FROM consent_events ORDER BY id"))]


def opted_out(app) -> bool:
    with db(app).connect() as conn:
        return conn.scalar(text("SELECT opted_out_at FROM contacts WHERE external_id = :c"),
                           {"c": DANA}) is not None


def opening_sid(app) -> str:
    """Twilio's id on the opening the dispatcher sent (the sandbox makes one up); given here as
    the dispatcher would when it has not run."""
    with db(app).begin() as conn:
        sid = conn.scalar(select(MessageRow.provider_id).where(MessageRow.kind == "opening"))
        if sid is None:
            sid = new_sid()
            conn.execute(update(MessageRow).where(MessageRow.kind == "opening")
                         .values(provider_id=sid, status="sent", delivery_status="queued"))
    return sid


def delivery(app, sid: str) -> tuple[str | None, str | None]:
    with db(app).connect() as conn:
        return tuple(conn.execute(select(MessageRow.delivery_status, MessageRow.last_error)
                                  .where(MessageRow.provider_id == sid)).one())


# --- signatures ---------------------------------------------------------------------------------

def test_a_bad_signature_is_refused_on_both_endpoints_and_nothing_is_stored(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    sid = opening_sid(app)
    before = count_messages(app)
    forged = twilio.post("/twilio/messaging", payload("sms_inbound"), token="not-the-token")
    assert forged.status_code == 403 and forged.mimetype == "text/plain"
    params = payload("status_delivered") | {"MessageSid": sid}
    assert twilio.post("/twilio/status", params, token="not-the-token").status_code == 403
    tampered = payload("sms_inbound")
    signature = RequestValidator(TOKEN).compute_signature(BASE + "/twilio/messaging", tampered)
    tampered["Body"] = "confirm"  # signed, then changed on the way
    assert twilio.post("/twilio/messaging", tampered, signature=signature).status_code == 403
    assert count_messages(app) == before
    assert delivery(app, sid) == ("queued", None)


def test_a_request_without_a_signature_is_refused(twilio, app):
    assert twilio.post("/twilio/messaging", payload("sms_inbound"), token=None).status_code == 403
    assert twilio.post("/twilio/status", payload("status_delivered"), token=None).status_code == 403
    assert count_messages(app) == 0


def test_without_an_auth_token_every_request_is_refused(make_app):
    # Reached only by changing the config of a running app: with an account start-up refuses to
    # run without the token, and the sandbox generates its own. The channel still fails closed.
    app = make_app(TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN=TOKEN,
                   TWILIO_SMS_FROM="+15005550006", PUBLIC_BASE_URL=BASE)
    app.config["TWILIO_AUTH_TOKEN"] = None
    twilio = Twilio(app.test_client())
    assert twilio.post("/twilio/messaging", payload("sms_inbound"), token="").status_code == 403
    assert twilio.post("/twilio/messaging", payload("sms_inbound")).status_code == 403


def test_a_signature_over_an_escaped_query_string_validates(api, twilio):
    setup_account(api)
    r = twilio.post("/twilio/messaging?x=a%20b", payload("sms_inbound"))
    assert r.status_code == 200 and replies(r)
    signed_decoded = RequestValidator(TOKEN).compute_signature(
        BASE + "/twilio/messaging?x=a b", payload("sms_inbound"))
    assert twilio.post("/twilio/messaging?x=a%20b", payload("sms_inbound"),
                       signature=signed_decoded).status_code == 403


# --- answering ----------------------------------------------------------------------------------

def test_a_price_question_by_sms_is_answered_with_todays_charge_in_twiml(api, twilio):
    setup_account(api)
    cross_messages(api)
    r = twilio.post("/twilio/messaging", payload("sms_inbound"))
    [answer] = replies(r)
    assert "$105.00" in answer
    t = thread(api)
    assert (t["state"], t["last_channel"]) == ("offered", "sms")


def test_a_repeated_message_sid_gets_empty_twiml_the_second_time_and_is_stored_once(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    assert len(replies(twilio.post("/twilio/messaging", payload("sms_inbound")))) == 1
    assert replies(twilio.post("/twilio/messaging", payload("sms_inbound"))) == []
    sid = payload("sms_inbound")["MessageSid"]
    assert count_messages(app, MessageRow.provider_id == sid, MessageRow.direction == "in") == 1


def test_a_signed_form_without_twilios_ids_is_refused_and_nothing_is_stored(api, twilio, app):
    """Twilio always sends a MessageSid and an AccountSid: a signed form without them is not a
    request Twilio sent (an idempotency token cannot stand in for the message's id)."""
    setup_account(api)
    cross_messages(api)
    params = {k: v for k, v in payload("sms_inbound").items() if not k.endswith("Sid")}
    token = {"I-Twilio-Idempotency-Token": "7c2a9e4b-idem-0001"}
    before = count_messages(app)
    assert twilio.post("/twilio/messaging", params, headers=token).status_code == 403
    assert count_messages(app) == before


def _shifted(params: dict[str, str], key: str, into: str) -> dict[str, str]:
    """`params` with `key` folded into the value of `into`: the same string to sign."""
    shifted = {k: v for k, v in params.items() if k != key}
    shifted[into] = params[into] + key + params[key]
    return shifted


def test_a_captured_start_replayed_with_its_parameters_shifted_is_refused(api, twilio, app):
    """Twilio's signature joins keys and values without separators: a captured START with
    NumMedia folded into its MessageSid signs the same string, and passed both the signature
    and the MessageSid dedupe. Refused now, and the buyer who opted out stays opted out."""
    setup_account(api)
    cross_messages(api)

    def keyword(word: str) -> dict[str, str]:
        sid = new_sid()
        return payload("sms_inbound_opt_out") | {"Body": word, "OptOutType": word,
                                                 "MessageSid": sid, "SmsSid": sid,
                                                 "SmsMessageSid": sid}

    start = keyword("START")  # captured earlier by an attacker
    assert twilio.post("/twilio/messaging", keyword("STOP")).status_code == 200
    assert api.get(f"/accounts/{ACME}/thread").get_json()["state"] == "opted_out"
    before = count_messages(app)
    for key, into in (("NumMedia", "MessageSid"), ("NumMedia", "AccountSid"),
                      ("SmsSid", "MessagingServiceSid")):
        replay = _shifted(start, key, into)
        assert twilio.post("/twilio/messaging", replay).status_code == 403, (key, into)
    assert count_messages(app) == before  # nothing stored, so no consent change either
    assert api.get(f"/accounts/{ACME}/thread").get_json()["state"] == "opted_out"


def test_a_nul_in_a_signed_body_is_dropped_and_the_message_answered(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    response = twilio.text("how much\x00 would it cost?")
    assert response.status_code == 200 and replies(response)
    assert count_messages(app, MessageRow.body == "how much would it cost?") == 1


def test_a_nul_in_a_signed_id_is_refused_not_a_server_error(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    assert twilio.text("hello", "SM\x00" + "a" * 31).status_code == 403
    assert twilio.status("status_delivered", "SM\x00" + "b" * 31).status_code == 403


def test_fifty_concurrent_deliveries_of_one_message_get_exactly_one_reply(api, app):
    setup_account(api)
    cross_messages(api)
    params = payload("sms_inbound")
    answers = at_once(50, lambda: Twilio(app.test_client()),
                      lambda client: replies(client.post("/twilio/messaging", params)))
    assert len(answers) == 50
    answered = [a for a in answers if a]
    assert len(answered) == 1 and "$105.00" in answered[0][0]
    sid = params["MessageSid"]
    assert count_messages(app, MessageRow.provider_id == sid, MessageRow.direction == "in") == 1
    assert count_messages(app, MessageRow.kind == "reply") == 1


def test_stop_confirms_once_and_the_next_crossing_is_suppressed_as_opted_out(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    [confirmation] = replies(twilio.text("STOP"))
    assert "unsubscribed" in confirmation and "START" in confirmation
    assert opted_out(app)
    assert consent_events(app)[-1] == ("revoke", "sms", "buyer")
    cross_seats(api)
    assert signal_reason(api, "seats") == ("suppressed", "opted_out")


def test_an_opt_out_on_whatsapp_stops_sms_prompts_too(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    assert len(replies(twilio.text("stop", medium="whatsapp"))) == 1
    assert consent_events(app)[-1] == ("revoke", "whatsapp", "buyer")
    setup_account(api, whatsapp=None)  # the operator removes WhatsApp: SMS is the best channel now
    cross_seats(api)
    assert signal_reason(api, "seats") == ("suppressed", "opted_out")
    [answer] = replies(twilio.text("how much would I be charged today?"))
    assert answer  # the buyer can still write in on SMS and gets answers


def test_start_subscribes_the_buyer_again(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    replies(twilio.text("STOP"))
    [again] = replies(twilio.text("START"))
    assert "subscribed" in again and "again" in again
    assert not opted_out(app)
    assert [e[0] for e in consent_events(app)][-2:] == ["revoke", "grant"]


def test_help_names_the_business_support_stop_and_rates(api, twilio):
    setup_account(api)
    [help_text] = replies(twilio.text("HELP"))
    for words in ("Acme Billing", "help@acme.example", "STOP", "Msg & data rates may apply"):
        assert words in help_text


def test_twilios_advanced_opt_out_type_opts_out_whatever_the_body_says(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    r = twilio.post("/twilio/messaging", payload("sms_inbound_opt_out"))  # Body "ARRET"
    assert replies(r) == []  # Twilio's Advanced Opt-Out already sent its own confirmation
    assert opted_out(app)
    assert consent_events(app)[-1] == ("revoke", "sms", "buyer")
    cross_seats(api)
    assert signal_reason(api, "seats") == ("suppressed", "opted_out")


def test_a_thread_continues_from_whatsapp_to_sms_and_upgrades_once(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    assert thread(api)["state"] == "offered"
    [step] = replies(twilio.text("yes", medium="whatsapp"))
    assert "Growth at $499.00 a month" in step and "$105.00" in step
    assert thread(api)["state"] == "awaiting_confirmation"
    [done] = replies(twilio.text("confirm"))
    assert done.startswith("Done")
    t = thread(api)
    assert (t["state"], t["last_channel"]) == ("upgraded", "sms")
    assert t["upgrade"]["to_plan"] == "growth" and t["upgrade"]["charge_today"] == "105.00"
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "growth"
    with db(app).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PlanChangeRow)) == 1


def test_a_number_that_belongs_to_nobody_is_answered_politely_and_kept_for_the_operator(
        api, twilio, app, caplog):
    setup_account(api)
    sid = new_sid()
    [answer] = replies(twilio.text("hello, is this billing?", sid, number=STRANGER))
    assert answer == ("Sorry, we could not find your account for this number. "
                      "Please contact support at help@acme.example.")
    assert replies(twilio.text("hello, is this billing?", sid, number=STRANGER)) == []  # a retry
    with db(app).connect() as conn:
        [kept] = conn.execute(select(MessageRow.__table__).where(MessageRow.provider_id == sid)).all()
    assert (kept.contact_id, kept.thread_id, kept.channel, kept.direction, kept.kind,
            kept.status, kept.body) == (None, None, "sms", "in", "unmatched", "received",
                                        "hello, is this billing?")
    assert STRANGER not in caplog.text and "billing?" not in caplog.text


def test_concurrent_deliveries_from_a_number_that_belongs_to_nobody_are_kept_and_answered_once(
        api, app):
    setup_account(api)
    sid = new_sid()
    answers = at_once(20, lambda: Twilio(app.test_client()),
                      lambda client: replies(client.text("hello?", sid, number=STRANGER)))
    assert sorted(len(a) for a in answers) == [0] * 19 + [1]
    assert count_messages(app, MessageRow.provider_id == sid) == 1


def test_an_unreadable_sender_gets_a_polite_answer_and_the_log_has_no_number(twilio, caplog):
    [answer] = replies(twilio.text("hi", number="12"))
    assert "could not find your account" in answer
    assert "unreadable sender" in caplog.text and "'12'" not in caplog.text


def test_an_unexpected_error_still_answers_with_valid_twiml_and_logs_no_personal_data(
        api, twilio, clock, caplog):
    setup_account(api)
    cross_messages(api)
    clock.now = datetime(2026, 11, 26, 15, 0)  # a broken clock (naive): the request fails inside
    [answer] = replies(twilio.text("my secret question"))
    assert "something went wrong" in answer and "help@acme.example" in answer
    assert "twilio inbound message failed" in caplog.text and "Traceback" in caplog.text
    assert DANA_PHONE not in caplog.text and "my secret question" not in caplog.text


# --- delivery reports ---------------------------------------------------------------------------

def test_a_late_sent_report_never_moves_a_delivered_message_backwards(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    sid = opening_sid(app)
    assert twilio.status("status_delivered", sid, MessageStatus="sending",
                         SmsStatus="sending").status_code in (200, 204)
    assert delivery(app, sid) == ("sending", None)
    assert twilio.status("status_delivered", sid).status_code in (200, 204)
    late = twilio.status("status_delivered", sid, MessageStatus="sent", SmsStatus="sent")
    assert late.status_code in (200, 204)
    assert delivery(app, sid) == ("delivered", None)


def test_a_failed_report_with_the_carrier_opt_out_code_opts_the_contact_out(api, twilio, app):
    setup_account(api)
    cross_messages(api)
    sid = opening_sid(app)
    assert twilio.status("status_failed_21610", sid).status_code in (200, 204)
    assert delivery(app, sid) == ("failed", "21610")
    assert opted_out(app)
    assert consent_events(app)[-1] == ("revoke", "whatsapp", "carrier")
    twilio.status("status_failed_21610", sid)  # a repeated report records nothing more
    assert [e for e in consent_events(app) if e[2] == "carrier"] == [("revoke", "whatsapp", "carrier")]
    assert thread(api)["state"] == "opted_out"  # as a STOP would have done
    cross_seats(api)
    assert signal_reason(api, "seats") == ("suppressed", "opted_out")


def test_concurrent_carrier_opt_out_reports_record_one_opt_out(api, app):
    setup_account(api)
    cross_messages(api)
    sid = opening_sid(app)
    codes = at_once(10, lambda: Twilio(app.test_client()),
                    lambda client: client.status("status_failed_21610", sid).status_code)
    assert sorted(codes) == [204] * 10
    assert [e for e in consent_events(app) if e[2] == "carrier"] == [("revoke", "whatsapp", "carrier")]


def test_a_report_for_a_message_we_do_not_know_is_accepted_and_ignored(twilio, app):
    r = twilio.status("status_delivered", new_sid())
    assert r.status_code in (200, 204) and r.data == b""
    assert count_messages(app) == 0


@pytest.mark.parametrize("current, new, moves", [
    (None, "queued", True), ("queued", "sending", True), ("sending", "sent", True),
    ("sent", "delivered", True), ("delivered", "read", True),
    ("delivered", "sent", False), ("read", "delivered", False), ("sent", "queued", False),
    ("sent", "failed", True), ("sending", "undelivered", True),
    ("delivered", "failed", False), ("read", "undelivered", False),
    ("failed", "delivered", False), ("undelivered", "sent", False), ("failed", "undelivered", False),
    ("sent", "receiving", False),
])
def test_delivery_reports_only_move_a_message_forward(current, new, moves):
    assert advances(current, new) is moves


def test_a_form_larger_than_twilio_sends_is_refused_before_it_is_read(api, twilio, app):
    """An 8 MiB form with a bogus signature used to be parsed (seconds of a worker) before the
    signature was checked; Twilio's forms are a few KiB."""
    setup_account(api)
    big = {"Body": "x" * (1024 * 1024), **{k: v for k, v in payload("sms_inbound").items()
                                           if k != "Body"}}
    before = count_messages(app)
    r = twilio.post("/twilio/messaging", big, signature="bogus")
    assert r.status_code == 413
    r = twilio.post("/twilio/messaging", payload("sms_inbound"), token=None)  # no signature
    assert r.status_code == 403
    assert count_messages(app) == before
