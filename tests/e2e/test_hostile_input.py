"""Input no client should send, refused with a clear 400 that stores nothing: a lone UTF-16
surrogate (as an escape or as its raw bytes) in any string of a JSON body, and an empty message
id (stored, it made every later empty id from that contact a permanent 409). Both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from storage.models import MessageRow
from tests.e2e.helpers import account, contact, error_of
from tests.e2e.test_webchat import ACME, DANA, SECRET, USER, Widget, setup_account

LONE = "\ud800"


@pytest.fixture
def app(make_app):
    return make_app(WEB_CHAT_SECRET=SECRET)


def stored(app) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(MessageRow))


def raw(client, method, path, body: bytes, headers):
    return client.open(path, method=method, data=body,
                       headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("as_bytes", [False, True], ids=["escape", "raw-bytes"])
@pytest.mark.parametrize("field", ["name", "contacts.0.external_id", "contacts.0.name"])
def test_a_lone_surrogate_in_an_account_is_a_400(app, api, field, as_bytes):
    body = account(contacts=[contact(DANA, name="Dana", role="billing")])
    target = body
    *path, last = field.split(".")
    for step in path:
        target = target[int(step)] if step.isdigit() else target[step]
    target[last] = "Dana " + LONE
    text = json.dumps(body)  # ensure_ascii: the escape "\ud800"
    data = text.encode()
    if as_bytes:  # the raw bytes ED A0 80, which a JSON reader decodes to the lone surrogate
        data = text.replace("\\ud800", "@@").encode().replace(b"@@", b"\xed\xa0\x80")
    r = raw(api.client, "PUT", f"/api/v1/accounts/{ACME}", data, api.headers)
    assert r.status_code == 400 and error_of(r)["code"] == "malformed", r.get_data()
    assert api.get(f"/accounts/{ACME}").status_code == 404  # nothing stored


def test_a_lone_surrogate_in_a_relayed_or_widget_message_is_a_400(app, api):
    setup_account(api)
    before = stored(app)
    r = api.post(f"/conversations/{DANA}/messages",
                 json={"channel": "sms", "text": "hi " + LONE, "id": "m-1"})
    assert r.status_code == 400 and "surrogate" in error_of(r)["message"]
    widget = Widget(app.test_client())
    r = widget.say("hello " + LONE, "w-1")
    assert r.status_code == 400 and "surrogate" in error_of(r)["message"]
    r = widget.say("hello", LONE)
    assert r.status_code == 400
    assert stored(app) == before


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_message_id_is_refused_and_a_message_without_one_still_goes_through(
        app, api, empty):
    setup_account(api)
    before = stored(app)
    r = api.post(f"/conversations/{DANA}/messages",
                 json={"channel": "sms", "text": "what does growth add?", "id": empty})
    assert r.status_code == 400 and error_of(r)["field"] == "id"
    r = Widget(app.test_client()).say("what does growth add?", empty)
    assert r.status_code == 400 and error_of(r)["field"] == "id"
    assert stored(app) == before
    for _ in range(2):  # no id at all: each message is its own, never a duplicate
        r = api.post(f"/conversations/{DANA}/messages",
                     json={"channel": "sms", "text": "what does growth add?"})
        assert r.status_code == 200 and not r.get_json()["duplicate"]
