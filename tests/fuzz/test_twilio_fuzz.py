"""Twilio's webhooks, fuzzed past the signature: forms of every shape (values with NULs, lone
surrogates, bytes that are no UTF-8, huge values; keys repeated, missing, added), each signed
with the app's auth token by the real RequestValidator over exactly the form the app will read,
so every one reaches the parser. Properties: TwiML with a <Response> or a documented 4xx, never
a 5xx, nothing logged with a traceback, and a known buyer's message always stored."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from flask import Request
from hypothesis import given, strategies as st
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder

from channels.twilio_messaging import MAX_FORM_BYTES
from storage.models import MessageRow
from tests.fuzz.conftest import (BASE, PHONES, TWILIO_TOKEN, assert_no_trace, budget,
                                 no_logged_traceback)
from tests.fuzz.strategies import CHARACTERS, huge, mostly, text

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "twilio"
FALLBACK = "something went wrong on our side"


def payload(name: str) -> dict[str, str]:
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def app(seeded):
    return seeded()


# --- forms --------------------------------------------------------------------------------------

HEX32 = st.binary(min_size=16, max_size=16).map(bytes.hex)
MESSAGE_SID = HEX32.map(lambda h: "SM" + h)
# A value is text (sent as UTF-8, lone surrogates as their bytes) or raw bytes, any at all.
VALUE = st.one_of(text(), text(), st.binary(max_size=24))
KEY = st.one_of(st.sampled_from(["Body", "From", "To", "NumMedia", "MediaUrl0", "OptOutType",
                                 "ProfileName", "WaId", "ErrorCode", "MessageStatus", ""]),
                st.text(CHARACTERS, max_size=12), st.binary(max_size=8))
# Keys whose loss, change or repetition breaks the shapes Twilio sends (channels.twilio_messaging
# .sent_by_twilio): such a form may be refused (403 "not a Twilio request").
SHAPE_KEYS = {"MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid", "From",
              "NumMedia"}


def _encode(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return quote_plus(value)
    return quote_plus(value, encoding="utf-8", errors="surrogatepass")


def encode(pairs: list[tuple[str | bytes, str | bytes]]) -> bytes:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs).encode("ascii")


def as_read(path: str, body: bytes):
    """The form exactly as the app will read it (werkzeug's parser, on the same bytes)."""
    environ = EnvironBuilder(path=path, method="POST", data=body,
                             content_type="application/x-www-form-urlencoded").get_environ()
    return Request(environ).form


def post_signed(client, path: str, body: bytes):
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(BASE + path, as_read(path, body))
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": signature})


@st.composite
def forms(draw, base: dict[str, str], sid: str, fields: dict):
    """`base` with `fields` (name: strategy, or None to drop) drawn over it, some keys dropped,
    some added or repeated; returns (pairs, whether the Twilio shapes are intact)."""
    params: dict[str, str | bytes] = {**base, "MessageSid": sid, "SmsSid": sid,
                                      "SmsMessageSid": sid}
    for name, strategy in fields.items():
        value = draw(strategy)
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    keys = st.sampled_from(sorted(params))
    dropped = draw(mostly(st.just(set()), st.sets(keys, max_size=2)))
    pairs = [(k, v) for k, v in params.items() if k not in dropped]
    extra = draw(st.lists(st.tuples(KEY, VALUE), max_size=3))
    repeated = draw(mostly(st.just([]), st.lists(
        keys.flatmap(lambda k: st.tuples(st.just(k), VALUE)), max_size=2)))
    pairs += extra + repeated
    pairs = draw(st.permutations(pairs))
    touched = dropped | {k for k, _ in extra + repeated}
    intact = not (touched & SHAPE_KEYS) and not any(
        isinstance(k, str) and k.endswith("Sid") for k in touched)
    return pairs, intact


def phone_or_anything():
    return mostly(st.sampled_from(PHONES).flatmap(lambda p: st.sampled_from([p, "whatsapp:" + p])),
                  text(), st.binary(max_size=16), tenths=7)


def looks_like_twiml(response) -> list[str]:
    assert response.mimetype == "application/xml", response.get_data()
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response" and all(child.tag == "Message" for child in root)
    return [m.text or "" for m in root]


def stored_inbound(app, sid: str) -> list[MessageRow]:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return list(conn.execute(select(MessageRow).where(
            MessageRow.provider_id == sid, MessageRow.direction == "in")))


# --- /twilio/messaging --------------------------------------------------------------------------

INBOUND = {
    "From": phone_or_anything(),
    "Body": st.one_of(text(), huge(60_000, 70_000), st.binary(max_size=40)),
    "NumMedia": mostly(st.just("0"), st.integers(0, 999).map(str), text(), st.none()),
    "OptOutType": st.one_of(st.none(), st.sampled_from(["STOP", "START", "HELP", "stop", ""]),
                            text()),
    "MediaUrl0": st.one_of(st.none(), text()),
}


@pytest.mark.parametrize("medium", ["sms_inbound", "whatsapp_inbound"])
@given(sid=MESSAGE_SID, data=st.data())
@budget()
def test_a_signed_message_of_any_shape_gets_twiml_or_a_documented_refusal(app, caplog, medium,
                                                                          sid, data):
    pairs, intact = data.draw(forms(payload(medium), sid, INBOUND))
    body = encode(pairs)
    with no_logged_traceback(caplog):
        response = post_signed(app.test_client(), "/twilio/messaging", body)
    assert_no_trace(response.get_data(as_text=True))
    if len(body) > MAX_FORM_BYTES:
        assert (response.status_code, response.get_data()) == (413, b"request too large")
        return
    form = as_read("/twilio/messaging", body)
    # Twilio always sends a From and a count of media (docs/architecture.md, Security notes)
    intact = (intact and bool(form.get("From"))
              and re.fullmatch("[0-9]{1,3}", form.get("NumMedia", "")) is not None)
    if response.status_code == 403:  # signed: refused only for a broken shape
        assert not intact and response.get_data() == b"not a Twilio request"
        return
    assert response.status_code == 200, response.get_data()
    replies = looks_like_twiml(response)
    assert not any(FALLBACK in r for r in replies)
    if form.get("From", "").removeprefix("whatsapp:") in PHONES:
        assert stored_inbound(app, form["MessageSid"]), "a known buyer's message was lost"


# --- /twilio/status -----------------------------------------------------------------------------

STATUSES = ["queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "received",
            "accepted", "canceled"]


def sent_sids(app) -> list[str]:
    """The provider ids of the messages the app has sent (the demo's openings, its replies)."""
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return sorted(conn.scalars(select(MessageRow.provider_id).where(
            MessageRow.direction == "out", MessageRow.provider_id.is_not(None))))


def forget_delivery(app, sid: str) -> None:
    with app.extensions["upgrade_chat"].engine.begin() as conn:
        conn.execute(update(MessageRow).where(MessageRow.provider_id == sid).values(
            delivery_status=None, last_error=None))


@given(data=st.data())
@budget()
def test_a_signed_delivery_report_of_any_shape_is_recorded_or_refused_never_a_500(app, caplog,
                                                                                  data):
    sids = sent_sids(app)
    assert sids, "the demo's openings went out: reports have messages to name"
    sid = data.draw(mostly(st.sampled_from(sids), MESSAGE_SID, tenths=7))
    if sid in sids and data.draw(st.booleans()):
        forget_delivery(app, sid)  # as just sent: any report moves it on and is stored
    pairs, intact = data.draw(forms(payload("status_delivered"), sid, {
        "MessageStatus": mostly(st.sampled_from(STATUSES), text(), st.none(), tenths=6),
        "SmsStatus": st.one_of(st.sampled_from(STATUSES), text(), st.none()),
        "ErrorCode": st.one_of(st.none(), st.sampled_from(["21610", "30003", "30008", "63016"]),
                               st.integers(0, 10**30).map(str), text()),
        "ErrorMessage": st.one_of(st.none(), text()),
    }))
    body = encode(pairs)
    with no_logged_traceback(caplog):
        response = post_signed(app.test_client(), "/twilio/status", body)
    assert_no_trace(response.get_data(as_text=True))
    code = as_read("/twilio/status", body).get("ErrorCode")
    intact = intact and (not code or re.fullmatch("[0-9]{1,9}", code))  # Twilio's are numbers
    if len(body) > MAX_FORM_BYTES:
        assert (response.status_code, response.get_data()) == (413, b"request too large")
    elif response.status_code == 403:
        assert not intact and response.get_data() == b"not a Twilio request"
    else:
        assert (response.status_code, response.get_data()) == (204, b"")


@pytest.mark.parametrize("path", ["/twilio/messaging", "/twilio/status"])
@given(body=st.one_of(st.binary(max_size=300), st.builds(
           lambda pairs: encode(pairs), st.lists(st.tuples(KEY, VALUE), max_size=6))),
       signature=st.one_of(st.none(), text(), st.just("0" * 28 + "="),
                           st.binary(min_size=20, max_size=20).map(
                               lambda b: base64.b64encode(b).decode())))
@budget(0.5)
def test_a_request_twilio_did_not_sign_is_a_403_that_touches_nothing(app, caplog, path, body,
                                                                    signature):
    before = stored_count(app)
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    headers = {k: v for k, v in headers.items() if not set(v) & set("\r\n")}
    with no_logged_traceback(caplog):
        response = app.test_client().post(path, data=body, headers=headers,
                                          content_type="application/x-www-form-urlencoded")
    if len(body) > MAX_FORM_BYTES:
        assert response.status_code == 413
    else:
        assert response.status_code == 403, response.get_data()
        assert response.get_data() in (b"invalid signature",)
    assert stored_count(app) == before


def stored_count(app) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return len(conn.execute(select(MessageRow.id)).all())
