"""Twilio's voice webhooks, fuzzed past the signature: every route of a call (a call coming in,
an answer to a gather, a call we placed answered, its status and answering-machine callbacks,
the machine's message) with forms of every shape and action queries of every shape, each signed
with the app's auth token over exactly the URL and form the app will read. Properties: valid
TwiML (a <Response> of Say, Gather and Hangup only) or the callbacks' 204, or a documented 403
or 413; never a 5xx, nothing logged with a traceback."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from hypothesis import given, strategies as st
from sqlalchemy import select

from channels.twilio_messaging import MAX_FORM_BYTES
from storage.models import CallRow
from tests.conftest import API_KEY
from tests.fuzz.conftest import CONTACT_IDS, assert_no_trace, budget, no_logged_traceback
from tests.fuzz.strategies import mostly, text
from tests.fuzz.test_twilio_fuzz import (HEX32, KEY, VALUE, as_read, encode, phone_or_anything,
                                        post_signed)

ACCOUNT = "AC" + "0" * 32
TWIML_VERBS = {"Say", "Gather", "Hangup"}
CALLBACKS = {"status", "amd"}


@pytest.fixture(scope="module")
def app(seeded):
    """The demo, where every demo buyer asked for a call: some are placed (ringing), some wait
    for their morning, so the callbacks' `call=` names real calls some of the time."""
    app = seeded()
    client = app.test_client()
    for n, contact in enumerate(CONTACT_IDS):
        r = client.post(f"/api/v1/conversations/{contact}/messages",
                        headers={"Authorization": f"Bearer {API_KEY}"},
                        json={"channel": "sms", "text": "please call me", "id": f"fuzz-call-{n}"})
        assert r.status_code == 200, r.get_json()
    app.extensions["upgrade_chat"].dispatcher.dispatch_due()
    return app


@pytest.fixture(scope="module")
def booked(app) -> list[tuple[int, str | None]]:
    """The calls as booked before the examples (a fixed list: the examples' own retries and
    texts must not change what the strategy draws from)."""
    return call_ids(app)


def call_ids(app) -> list[tuple[int, str | None]]:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return [(r.id, r.provider_id) for r in conn.execute(select(CallRow.id,
                                                                   CallRow.provider_id))]


QUERY_VALUE = mostly(st.integers(0, 5).map(str), st.integers(-10, 10**20).map(str), text(),
                     tenths=6)


@st.composite
def targets(draw, calls: list[tuple[int, str | None]]) -> tuple[str, str | None]:
    """A voice route with an action query of any shape; the CallSid of the call it names, if it
    names one that was placed."""
    route = draw(st.sampled_from(["", "/gather", "/answered", "/status", "/amd", "/machine"]))
    query: list[tuple[str, str]] = []
    sid = None
    if calls and draw(st.booleans()):
        call_id, sid = draw(st.sampled_from(calls))
        query.append(("call", str(call_id)))
    for name in draw(st.lists(st.sampled_from(["turn", "step", "silences", "why", "call"]),
                              max_size=4)):
        value = draw(st.one_of(QUERY_VALUE, st.sampled_from(["confirm", "gate", "1"])))
        query.append((name, value))
    encoded = "&".join(f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}"
                       for k, v in query)
    return f"/twilio/voice{route}" + (f"?{encoded}" if encoded else ""), sid


@st.composite
def call_forms(draw, sid: str | None) -> tuple[list, bool]:
    """A voice webhook's form, some keys dropped, added or repeated; whether the shapes Twilio
    sends (a CallSid and an AccountSid in their shapes) are intact."""
    params: dict[str, str | bytes] = {
        "AccountSid": ACCOUNT,
        "CallSid": sid or draw(HEX32.map(lambda h: "CA" + h)),
        "From": draw(phone_or_anything()),
        "To": draw(phone_or_anything()),
        "Direction": draw(mostly(st.sampled_from(["inbound", "outbound-api"]), text())),
        "CallStatus": draw(mostly(st.sampled_from(
            ["queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed",
             "canceled"]), text())),
        "ApiVersion": "2010-04-01",
    }
    for name, strategy in (
            ("Digits", mostly(st.sampled_from(list("0123456789#*")), text(), st.binary(max_size=8),
                              tenths=6)),
            ("SpeechResult", st.one_of(st.sampled_from(["yes", "confirm", "stop", "call me at 4",
                                                        "what does growth cost", ""]), text())),
            ("AnsweredBy", mostly(st.sampled_from(["human", "machine_start", "machine_end_beep",
                                                   "fax", "unknown"]), text())),
            ("Confidence", st.one_of(st.just("0.91"), text()))):
        if draw(st.booleans()):
            params[name] = draw(strategy)
    keys = st.sampled_from(sorted(params))
    dropped = draw(mostly(st.just(set()), st.sets(keys, max_size=2)))
    pairs = [(k, v) for k, v in params.items() if k not in dropped]
    extra = draw(st.lists(st.tuples(KEY, VALUE), max_size=2))
    repeated = draw(mostly(st.just([]), st.lists(
        keys.flatmap(lambda k: st.tuples(st.just(k), VALUE)), max_size=2)))
    pairs = draw(st.permutations(pairs + extra + repeated))
    touched = dropped | {k for k, _ in extra + repeated}
    intact = not any(isinstance(k, str) and k.endswith("Sid") for k in touched)
    return pairs, intact


def twiml_verbs(response) -> list[str]:
    assert response.mimetype == "application/xml", response.get_data()
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response"
    verbs = [child.tag for child in root]
    for gather in root.iter("Gather"):
        assert {c.tag for c in gather} <= {"Say"}
        assert (gather.get("action") or "").startswith("/twilio/voice/gather?")
    assert set(verbs) <= TWIML_VERBS, verbs
    return verbs


@given(data=st.data())
@budget()
def test_a_signed_voice_webhook_of_any_shape_gets_twiml_or_a_documented_answer(app, booked,
                                                                                caplog, data):
    assert booked, "the demo buyers' calls were booked"
    path, sid = data.draw(targets(booked))
    pairs, intact = data.draw(call_forms(sid))
    body = encode(pairs)
    with no_logged_traceback(caplog):
        response = post_signed(app.test_client(), path, body)
    assert_no_trace(response.get_data(as_text=True))
    if len(body) > MAX_FORM_BYTES:
        assert response.status_code == 413
        return
    if response.status_code == 403:  # signed: refused only for a shape Twilio never sends
        form = as_read(path, body)
        callback = path.split("?")[0].rsplit("/", 1)[-1] == "amd"
        assert not intact or (not form.get("From") and not callback), (path, form)
        assert response.get_data() == b"not a Twilio request"
        return
    route = path.split("?")[0].rsplit("/", 1)[-1]
    if route in CALLBACKS:
        assert response.status_code == 204, response.get_data()
        return
    assert response.status_code == 200, response.get_data()
    verbs = twiml_verbs(response)
    assert verbs and ("Gather" in verbs or verbs[-1] == "Hangup"), verbs
