"""The storage side of shared numbers on real SQLite and PostgreSQL: every contact of a number
(`contacts_by_address`) and the facts core.routing decides on (`routing_facts`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from channels.twilio_messaging import SMS, WHATSAPP
from core import services
from core.accounts import Contact
from core.routing import UNROUTED, Candidate, LastWrite
from core.services import AccountInput
from storage.models import MessageRow
from storage.uow import SqlUnitOfWork
from tests.conftest import NOW

X, Y, Z, W = "+12125551234", "+12125550100", "+12125550111", "+12125550122"


def _account(uow, catalog, external_id, name, *contacts):
    services.upsert_account(uow, catalog, AccountInput(
        external_id=external_id, name=name, plan="starter", vertical="generic", timezone="UTC",
        billing_day=1, contacts=contacts, plan_since=NOW - timedelta(days=400)), NOW)


@pytest.fixture
def uow(engine, catalog):
    """Four accounts. On X: Ann (phone; Alpha), Bo (phone, WhatsApp Y; Beta), Cy (phone, a
    colleague of Ann's; Alpha). On WhatsApp X: Di (phone Z; Delta)."""
    uow = SqlUnitOfWork(engine)
    _account(uow, catalog, "alpha", "Alpha Dental", Contact("ann", phone=X, role="billing"),
             Contact("cy", phone=X))
    _account(uow, catalog, "beta", "Beta Salon", Contact("bo", phone=X, whatsapp=Y))
    _account(uow, catalog, "delta", "Delta Realty", Contact("di", phone=Z, whatsapp=X))
    _account(uow, catalog, "omega", "Omega", Contact("ed", phone=W))
    return uow


def ids(contacts):
    return [c.external_id for c in contacts]


def test_contacts_by_address_finds_every_contact_of_a_number_by_medium(uow):
    with uow:
        assert ids(uow.contacts.contacts_by_address(SMS.address, X)) == ["ann", "cy", "bo"]
        # a WhatsApp number wins; without one, the phone
        assert ids(uow.contacts.contacts_by_address(WHATSAPP.address, X)) == ["di"]
        assert ids(uow.contacts.contacts_by_address(WHATSAPP.address, Y)) == ["bo"]
        assert ids(uow.contacts.contacts_by_address(WHATSAPP.address, W)) == ["ed"]
        assert ids(uow.contacts.contacts_by_address(SMS.address, Y)) == []
        assert ids(uow.contacts.contacts_by_address(SMS.address, "+19999999999")) == []


def _thread(uow, contact, state, target="growth", at=NOW):
    return uow.threads.create_thread(contact.account_id, contact.id, "starter", target, "up",
                                     state, "sms", at)


def test_each_candidates_thread_is_the_one_its_messages_land_in(uow):
    with uow:
        ann, cy, bo = uow.contacts.contacts_by_address(SMS.address, X)
        _thread(uow, ann, "declined", at=NOW - timedelta(days=40))
        ann_live = _thread(uow, ann, "offered")  # Ann's own live thread, over her older one
        bo_old = _thread(uow, bo, "expired")  # Bo has only a finished one
        ed = uow.contacts.contacts_by_address(SMS.address, W)[0]  # Ed has no thread at all
        facts = uow.contacts.routing_facts("sms", [ann.id, cy.id, bo.id, ed.id], None)
        assert facts.candidates == (
            Candidate(ann.id, ann.account_id, "Alpha Dental", ann_live.id, True),
            Candidate(cy.id, cy.account_id, "Alpha Dental", ann_live.id, True),  # the account's
            Candidate(bo.id, bo.account_id, "Beta Salon", bo_old.id, False),
            Candidate(ed.id, ed.account_id, "Omega", None, False))
        # The same threads the handler answers in.
        for contact, candidate in zip((ann, cy, bo, ed), facts.candidates):
            found = uow.threads.thread_for_contact(contact, lock=False)
            assert candidate.thread_id == (found.id if found else None)
        assert (facts.last_write, facts.seen_inbound_id) == (None, None)


def test_the_last_write_is_the_latest_message_that_reached_the_number_on_that_medium(uow):
    with uow:
        ann, cy, bo = uow.contacts.contacts_by_address(SMS.address, X)
        ann_thread, bo_thread = _thread(uow, ann, "offered"), _thread(uow, bo, "offered")
        minute = timedelta(minutes=1)

        def out(contact, thread, kind, at, status="sent", channel="sms", **values):
            message_id = uow.messages.add_message(thread_id=thread.id if thread else None,
                                          contact_id=contact.id, channel=channel,
                                          direction="out", kind=kind, body="...", status=status,
                                          now=at)
            if values:
                uow.session.execute(update(MessageRow).where(MessageRow.id == message_id)
                                    .values(**values))
            return message_id

        out(bo, bo_thread, "reply", NOW + 1 * minute)
        # Created first, sent last: an opening deferred by quiet hours goes out later.
        out(ann, ann_thread, "opening", NOW, sent_at=NOW + 2 * minute)
        # None of these reached the buyer on SMS, or is a business's word:
        out(bo, bo_thread, "reply", NOW + 3 * minute, status="queued")
        out(bo, bo_thread, "reply", NOW + 3 * minute, status="cancelled")
        out(bo, bo_thread, "reply", NOW + 3 * minute, status="failed")
        out(bo, bo_thread, "reply", NOW + 3 * minute, delivery_status="undelivered")
        out(bo, None, UNROUTED, NOW + 3 * minute)
        out(bo, bo_thread, "reply", NOW + 3 * minute, channel="whatsapp")
        uow.messages.add_message(thread_id=bo_thread.id, contact_id=bo.id, channel="sms", direction="in",
                         kind="inbound", body="hi", status="received", now=NOW + 4 * minute)
        facts = uow.contacts.routing_facts("sms", [ann.id, cy.id, bo.id], None)
        assert facts.last_write == LastWrite(ann.id, ann_thread.id, "opening")
        out(cy, None, "reply", NOW + 5 * minute, delivery_status="delivered")
        facts = uow.contacts.routing_facts("sms", [ann.id, cy.id, bo.id], None)
        assert facts.last_write == LastWrite(cy.id, None, "reply")
        assert uow.contacts.routing_facts("whatsapp", [bo.id], None).last_write == \
            LastWrite(bo.id, bo_thread.id, "reply")


def test_an_earlier_delivery_of_the_message_to_any_candidate_is_found(uow):
    with uow:
        ann, cy, bo = uow.contacts.contacts_by_address(SMS.address, X)
        first = uow.messages.add_message(thread_id=None, contact_id=bo.id, channel="sms", direction="in",
                                 kind=UNROUTED, body="confirm", status="received", now=NOW,
                                 provider_id="SM1")
        uow.messages.add_message(thread_id=None, contact_id=cy.id, channel="sms", direction="in",
                         kind=UNROUTED, body="confirm", status="received", now=NOW,
                         provider_id="SM1")
        everyone = [ann.id, cy.id, bo.id]
        assert uow.contacts.routing_facts("sms", everyone, "SM1").seen_inbound_id == first
        assert uow.contacts.routing_facts("sms", everyone, "SM2").seen_inbound_id is None
        assert uow.contacts.routing_facts("whatsapp", everyone, "SM1").seen_inbound_id is None
        assert uow.contacts.routing_facts("sms", [ann.id], "SM1").seen_inbound_id is None
        assert uow.contacts.routing_facts("sms", everyone, None).seen_inbound_id is None


def test_unrouted_messages_are_not_shown_in_one_accounts_web_chat(uow):
    with uow:
        ann = uow.contacts.contacts_by_address(SMS.address, X)[0]
        kept = uow.messages.add_message(thread_id=None, contact_id=ann.id, channel="sms",
                                direction="in", kind="inbound", body="hello", status="received",
                                now=NOW)
        uow.messages.add_message(thread_id=None, contact_id=ann.id, channel="sms", direction="out",
                         kind=UNROUTED, body="Which business?", status="sent", now=NOW)
        assert [m.id for m in uow.messages.visible_messages(ann.id, None, 0, 50)] == [kept]


def test_a_lost_race_names_the_error_code_never_the_keys_values(engine, uow):
    """PostgreSQL's DETAIL quotes the key's values (a contact id can be an email); the Conflict
    the API logs says only which error it was."""
    from core.ports import Conflict

    secret = "dana@clinic.example"
    with uow:
        ann = uow.contacts.contacts_by_address(SMS.address, X)[0]
        uow.commit()
    for _ in range(2):
        try:
            with SqlUnitOfWork(engine) as again:
                again.messages.add_message(thread_id=None, contact_id=ann.id, channel="sms",
                                           direction="in", kind="inbound", body="hi",
                                           status="received", now=NOW, provider_id=secret)
                again.commit()
        except Conflict as exc:
            assert secret not in str(exc) and "clinic" not in str(exc)
            assert "23505" in str(exc) or "SQLITE_CONSTRAINT" in str(exc)
            break
    else:
        pytest.fail("the second insert of the same provider id was not a Conflict")
