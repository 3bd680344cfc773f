"""An erasure racing an SMS from the same buyer (core.erasure, core.handlers): whichever commits
first, nothing of the message is left in the buyer's name. It was there first: erased with the
rest. The erasure was first: the message, which had found the buyer by her number before it
waited for her account's lock, reads her again under the lock, finds no contact, and is kept as
a stranger's.

On PostgreSQL the two writers really overlap: a third connection holds the account's row while
both queue on it in a chosen order. On SQLite a writer holds the whole database from BEGIN, so
a message reads the contact only once it writes; the two are let go at once and either order
must hold.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import select, text

from core.erasure import ERASED
from core.handlers import unknown_sender_reply
from storage.models import ContactRow, MessageRow
from tests.conftest import Api
from tests.e2e.test_erasure import (BUSINESS, DANA, NAME, SECRET_TEXT, dana, put_account,
                                    traces)
from tests.e2e.test_twilio_inbound import (BASE, DANA_PHONE, TOKEN, Twilio, cross_messages, db,
                                           replies)
from tests.support.concurrency import at_once


@pytest.fixture
def app(make_app, tmp_path):
    app = make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0",
                   BUSINESS_NAME=BUSINESS.name, SUPPORT_CONTACT=BUSINESS.support,
                   SPOOL_DIR=str(tmp_path / "spool"))
    api = Api(app.test_client())
    put_account(api, dana())
    cross_messages(api)  # the opening is out: her thread is offered
    return app


def erase(app):
    return Api(app.test_client()).post(f"/contacts/{DANA}/erase")


def text_her(app):
    return Twilio(app.test_client()).text(SECRET_TEXT)


def check_nothing_left(app, erasure, message, *, erasure_first: bool | None = None) -> None:
    """Nothing of the message in her name; `erasure_first` says which went first (None: read it
    from the answer: a stranger's when the erasure was)."""
    assert erasure.status_code == 200, erasure.get_json()
    answer = replies(message)
    if erasure_first is None:
        erasure_first = answer == [unknown_sender_reply(BUSINESS)]
    with db(app).connect() as conn:
        erased_id = conn.scalar(select(ContactRow.id).where(ContactRow.erased_at.is_not(None)))
        bodies = Counter(conn.scalars(select(MessageRow.body).where(
            MessageRow.contact_id == erased_id)))
        strangers = [tuple(r) for r in conn.execute(select(
            MessageRow.thread_id, MessageRow.body).where(MessageRow.contact_id.is_(None)))]
    assert set(bodies) == {ERASED}  # nothing in her name but the marker
    if erasure_first:  # she was gone when the message got the lock: a stranger's message
        assert answer == [unknown_sender_reply(BUSINESS)]
        assert strangers == [(None, SECRET_TEXT)]
        assert traces(app, (SECRET_TEXT, NAME, DANA, DANA_PHONE)) == \
            [("messages", "body", SECRET_TEXT)]
    else:  # the message went first: answered as hers, then erased with the rest
        assert answer and answer != [unknown_sender_reply(BUSINESS)]
        assert strangers == []
        assert bodies[ERASED] >= 3  # the opening, her message, our reply
        assert traces(app, (SECRET_TEXT, NAME, DANA, DANA_PHONE)) == []


# --- PostgreSQL: both orders, forced -------------------------------------------------------------

def _waiting_on_locks(app) -> int:
    with db(app).connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE "
                                "wait_event_type = 'Lock' AND datname = current_database()"))


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("first", ["erasure", "message"])
def test_on_postgresql_either_order_leaves_no_body_in_her_name(app, first):
    results: dict[str, object] = {}
    workers = {"erasure": threading.Thread(target=lambda: results.update(erasure=erase(app))),
               "message": threading.Thread(target=lambda: results.update(message=text_her(app)))}
    second = "message" if first == "erasure" else "erasure"
    holder = db(app).connect()
    held = holder.begin()
    holder.execute(text("SELECT id FROM accounts FOR UPDATE"))
    try:
        workers[first].start()  # it has read her contact and waits for the account
        _until(lambda: _waiting_on_locks(app) == 1, f"the {first} to wait on the account")
        workers[second].start()
        _until(lambda: _waiting_on_locks(app) == 2, f"the {second} to wait behind it")
    finally:
        held.rollback()
        holder.close()
    for worker in workers.values():
        worker.join(30)
    check_nothing_left(app, results["erasure"], results["message"],
                       erasure_first=first == "erasure")


# --- both databases: let go at once ----------------------------------------------------------------

def test_let_go_at_once_whichever_wins_leaves_no_body_in_her_name(app):
    def act(kind):
        return kind, (erase(app) if kind == "erasure" else text_her(app))

    kinds = iter(["erasure", "message"])
    lock = threading.Lock()

    def prepare():
        with lock:
            return next(kinds)

    got = dict(at_once(2, prepare, act))
    check_nothing_left(app, got["erasure"], got["message"])
