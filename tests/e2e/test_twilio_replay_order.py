"""Messages replayed from the inbound spool keep the time they arrived, and never act on what
the buyer saw or said after it: a "yes" kept during an outage never completes a confirmation step
shown later, an old START never undoes a later STOP. Run on both databases: what an outage leaves
behind is written here as the webhook writes it (spool_entry, with the time the message arrived);
tests/e2e/test_twilio_spool.py stops PostgreSQL for real.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from channels.twilio_messaging import InboundMessage, spool_entry
from storage.models import MessageRow
from tests.e2e.test_twilio_inbound import (DANA_PHONE, cross_messages, db, new_sid, opted_out,
                                           replies, setup_account, thread)
from tests.e2e.test_twilio_spool import api, app, jobs, replies_sent, twilio  # noqa: F401
from web.spool import Spool


@pytest.fixture
def spooled(app, clock):
    """spooled(body, minutes_ago): a message the webhook kept `minutes_ago` minutes ago."""
    spool = Spool(app.config["SPOOL_DIR"])

    def write(body: str, minutes_ago: int, sid: str | None = None) -> str:
        sid = sid or new_sid()
        at = clock.now - timedelta(minutes=minutes_ago)
        spool.write(spool_entry(InboundMessage("sms", DANA_PHONE, body, sid), at))
        return sid
    return write


def plan_changes(app) -> int:
    with db(app).connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM plan_changes"))


def inbound_order(app) -> list[str]:
    """The buyer's messages in the thread, in the order the thread shows them (time, then id)."""
    with db(app).connect() as conn:
        return list(conn.scalars(select(MessageRow.body).where(
            MessageRow.direction == "in", MessageRow.thread_id.is_not(None))
            .order_by(MessageRow.at, MessageRow.id)))


def test_a_replayed_yes_never_confirms_a_step_shown_after_it_arrived(app, api, twilio, clock,
                                                                      spooled):
    setup_account(api)
    cross_messages(api)
    clock.now += timedelta(minutes=30)
    spooled("yes", minutes_ago=10)  # kept during the outage, before the step below existed
    assert replies(twilio.text("yes")) and thread(api)["state"] == "awaiting_confirmation"
    clock.now += timedelta(minutes=1)
    assert jobs(app).exit_code == 0  # the spool is replayed after the live "yes"
    assert thread(api)["state"] == "awaiting_confirmation"  # still waiting for the buyer
    assert plan_changes(app) == 0
    assert inbound_order(app) == ["yes", "yes"]
    with db(app).connect() as conn:  # the replayed one in its place: 10 minutes ago, first
        first = conn.execute(select(MessageRow.at, MessageRow.provider_id).where(
            MessageRow.direction == "in").order_by(MessageRow.at)).first()
    assert first.at.replace(tzinfo=None) == (clock.now - timedelta(minutes=11)).replace(tzinfo=None)
    assert len([b for b, *_ in replies_sent(app) if "CONFIRM" in b]) == 1  # one step shown


def test_a_replayed_no_never_declines_a_step_the_buyer_asked_for_later(app, api, twilio, clock,
                                                                       spooled):
    setup_account(api)
    cross_messages(api)
    clock.now += timedelta(minutes=30)
    spooled("no thanks", minutes_ago=10)
    twilio.text("yes")
    clock.now += timedelta(minutes=1)
    assert jobs(app).exit_code == 0
    assert thread(api)["state"] == "awaiting_confirmation"


def test_a_replayed_yes_to_a_step_shown_before_it_arrived_confirms(app, api, twilio, clock,
                                                                   spooled):
    setup_account(api)
    cross_messages(api)
    clock.now += timedelta(minutes=5)
    twilio.text("yes")  # the step, shown before the outage
    clock.now += timedelta(minutes=30)
    spooled("CONFIRM", minutes_ago=10)  # the buyer's answer to it, kept during the outage
    assert jobs(app).exit_code == 0
    assert thread(api)["state"] == "upgraded" and plan_changes(app) == 1


def test_a_replayed_question_is_answered_even_when_later_messages_came_first(app, api, twilio,
                                                                             clock, spooled):
    setup_account(api)
    cross_messages(api)
    clock.now += timedelta(minutes=30)
    spooled("how much is it?", minutes_ago=10)
    twilio.text("yes")
    clock.now += timedelta(minutes=1)
    assert jobs(app).exit_code == 0
    assert any(b.startswith("Growth is $499.00 a month") for b, *_ in replies_sent(app))
    assert thread(api)["state"] == "awaiting_confirmation"


def test_a_replayed_start_never_undoes_a_later_stop_and_a_replayed_stop_still_counts(
        app, api, twilio, clock, spooled):
    setup_account(api)
    cross_messages(api)
    clock.now += timedelta(minutes=30)
    spooled("START", minutes_ago=10)
    twilio.text("STOP")  # the buyer's later word
    clock.now += timedelta(minutes=1)
    assert jobs(app).exit_code == 0
    assert opted_out(app)  # the old START did not subscribe them again
    spooled("STOP", minutes_ago=0)
    twilio.text("START")
    clock.now += timedelta(minutes=1)
    spooled("STOP", minutes_ago=0)  # a STOP after the START: it counts
    assert jobs(app).exit_code == 0
    assert opted_out(app)
