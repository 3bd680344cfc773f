"""Erasing a buyer (core.erasure), end to end on SQLite and PostgreSQL: by the CLI and the API,
the personal data really gone from every text column of every table, every count kept, the old
number a stranger's afterwards, idempotent, a 404 for an id no contact ever had. The race with
an inbound message from the same buyer is in test_erasure_race.py."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import JSON, String, func, select

from core.audit import pseudonym as audit_pseudonym
from core.erasure import ERASED, pseudonym
from core.handlers import unknown_sender_reply
from core.conversation import Business
from storage.audit import SqlAuditTrail
from storage.models import (Base, ConsentEventRow, ContactRow, EscalationRow, MessageRow,
                            OutboxRow, PlanHistoryRow, SignalRow, ThreadRow)
from tests.conftest import Api
from tests.e2e.helpers import account, contact, error_of
from tests.e2e.test_twilio_inbound import (BASE, DANA_PHONE, TOKEN, Twilio, cross_messages, db,
                                           replies, run_jobs)
from web.spool import REJECTED, Spool

ACME, DANA, LEE = "acme", "dana.whitfield@example.com", "acme-lee"
NAME, EMAIL, WEB_USER = "Dana Whitfield", "dana.w@home.example", "u-dana-7731"
WHATSAPP = "+447911123456"
LEE_PHONE = "+13125550177"
SECRET_TEXT = "Priya in accounts pays, her card ends 4417"
ASIDE = "Lee Okafor here, who is texting Dana?"
BUSINESS = Business("Acme Billing", "help@acme.example")
# What must be gone from every table once Dana is erased (her external id is an email).
DANAS = (NAME, DANA, EMAIL, WEB_USER, DANA_PHONE, WHATSAPP, SECRET_TEXT, ASIDE,
         "can I talk to a person", "what does growth include")


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0",
                    BUSINESS_NAME=BUSINESS.name, SUPPORT_CONTACT=BUSINESS.support,
                    SPOOL_DIR=str(tmp_path / "spool"))


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


@pytest.fixture
def twilio(app) -> Twilio:
    return Twilio(app.test_client())


def dana(**fields):
    return contact(DANA, name=NAME, role="billing", phone=DANA_PHONE, whatsapp=WHATSAPP,
                   email=EMAIL, web_user_id=WEB_USER, **fields)


def lee():
    return contact(LEE, name="Lee Okafor", role="member", phone=LEE_PHONE)


def put_account(api, *contacts) -> dict:
    r = api.put(f"/accounts/{ACME}", json=account(
        plan="starter", timezone="America/Chicago", billing_day=5, contacts=list(contacts)))
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()


def converse(api, twilio, app) -> None:
    """Dana gets the opening (WhatsApp), answers by SMS, her colleague Lee writes into her
    thread, she asks for a person (an escalation), and one relayed reply waits in the outbox."""
    put_account(api, dana(), lee())
    cross_messages(api)
    assert replies(twilio.text(SECRET_TEXT))
    assert replies(twilio.text(ASIDE, number=LEE_PHONE))
    assert replies(twilio.text("can I talk to a person please"))
    r = api.post(f"/conversations/{DANA}/messages",
                 json={"channel": "sms", "text": "what does growth include", "deliver": True})
    assert r.status_code == 200, r.get_json()


def every_text(app) -> list[tuple[str, str, str]]:
    """(table, column, value) of every string, text and JSON value stored, in every table."""
    found = []
    with db(app).connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (String, JSON))]
            for row in conn.execute(select(*columns)):
                for column, value in zip(columns, row):
                    if value is not None:
                        found.append((table.name, column.name,
                                      value if isinstance(value, str) else json.dumps(value)))
    return found


def traces(app, needles=DANAS) -> list[tuple[str, str, str]]:
    return [(t, c, n) for t, c, value in every_text(app) for n in needles
            if n.lower() in value.lower()]


def shape(app) -> dict:
    """What the metrics count: every row that must survive an erasure, without its text."""
    with db(app).connect() as conn:
        def rows(*columns, order):
            return [tuple(r) for r in conn.execute(select(*columns).order_by(order))]
        return {
            "messages": rows(MessageRow.id, MessageRow.thread_id, MessageRow.direction,
                             MessageRow.kind, MessageRow.channel, MessageRow.at,
                             MessageRow.provider_id, order=MessageRow.id),
            "threads": rows(ThreadRow.id, ThreadRow.state, ThreadRow.decline_reason,
                            ThreadRow.target_plan, ThreadRow.opened_at, ThreadRow.initiated_by,
                            order=ThreadRow.id),
            "plan_history": rows(PlanHistoryRow.id, PlanHistoryRow.to_plan, PlanHistoryRow.at,
                                 order=PlanHistoryRow.id),
            "signals": rows(SignalRow.id, SignalRow.outcome, order=SignalRow.id),
            "escalations": rows(EscalationRow.id, EscalationRow.reason, EscalationRow.status,
                                EscalationRow.thread_id, order=EscalationRow.id),
            "consent_events": rows(ConsentEventRow.id, ConsentEventRow.action,
                                   ConsentEventRow.channel, ConsentEventRow.source,
                                   order=ConsentEventRow.id),
            "contacts": conn.scalar(select(func.count()).select_from(ContactRow)),
        }


def erase_cli(app, external_id):
    return app.test_cli_runner().invoke(args=["contacts", "erase", external_id])


def message_jobs(app) -> list[tuple[str, str]]:
    with db(app).connect() as conn:
        return [tuple(r) for r in conn.execute(select(OutboxRow.key, OutboxRow.status)
                                               .where(OutboxRow.kind == "message")
                                               .order_by(OutboxRow.id))]


# --- the erasure ---------------------------------------------------------------------------------

def test_the_cli_erases_every_trace_of_the_buyer_and_keeps_every_count(api, twilio, app):
    converse(api, twilio, app)
    assert {n for _, _, n in traces(app)} == set(DANAS)  # all there before
    before = shape(app)
    [queued] = [k for k, status in message_jobs(app) if status == "pending"]

    result = erase_cli(app, DANA)

    assert result.exit_code == 0, result.output
    alias = pseudonym(DANA)
    assert alias.startswith("erased:") and len(alias) == len("erased:") + 16
    assert alias in result.output and DANA not in result.output
    assert "1 queued messages cancelled" in result.output
    assert "4 addresses removed" in result.output
    assert traces(app) == []  # not a name, number, email, id or word of hers, anywhere
    after = shape(app)
    assert after["messages"] == before["messages"]  # rows, directions, kinds, channels, times
    assert after["threads"] == before["threads"]  # the escalated thread stays escalated
    for key in ("plan_history", "signals", "escalations", "contacts"):
        assert after[key] == before[key], key
    assert after["consent_events"][:len(before["consent_events"])] == before["consent_events"]
    assert after["consent_events"][len(before["consent_events"]):] == [
        (after["consent_events"][-1][0], "revoke", "all", "erasure")]
    # Lee, the colleague, is untouched (his message in her thread is blanked: it was in it).
    assert any(t == "contacts" and v == "Lee Okafor" for t, _, v in every_text(app))
    # The queued reply never goes out: its job settles cancelled at the next claim.
    run_jobs(app)
    assert dict(message_jobs(app))[queued] == "cancelled"


def test_the_api_views_show_the_contact_erased_and_the_bodies_blanked(api, twilio, app):
    converse(api, twilio, app)
    before = api.get(f"/accounts/{ACME}/thread").get_json()

    r = api.post(f"/contacts/{DANA}/erase")

    assert r.status_code == 200, r.get_json()
    erased = r.get_json()
    alias = pseudonym(DANA)
    assert erased["contact"] == alias and erased["already_erased"] is False
    assert erased["messages_blanked"] == len(before["messages"])  # the queued reply's too
    assert (erased["addresses_removed"], erased["jobs_cancelled"], erased["threads_closed"]) == \
        (4, 1, 0)
    got = api.get(f"/accounts/{ACME}").get_json()
    assert [c["external_id"] for c in got["contacts"]] == [LEE, alias]
    gone = got["contacts"][1]
    assert gone == {"external_id": alias, "name": None, "role": "billing", "phone": None,
                    "whatsapp": None, "web_user_id": None, "email": None,
                    "erased_at": erased["erased_at"]}
    assert got["contacts"][0]["erased_at"] is None
    t = api.get(f"/accounts/{ACME}/thread").get_json()
    assert t["contact"] == {"external_id": alias, "erased_at": erased["erased_at"]}
    assert (t["state"], t["thread_id"]) == (before["state"], before["thread_id"])
    assert [(m["direction"], m["kind"], m["channel"], m["at"]) for m in t["messages"]] == \
        [(m["direction"], m["kind"], m["channel"], m["at"]) for m in before["messages"]]
    assert {m["body"] for m in t["messages"]} == {ERASED}
    assert all(m["redacted_at"] == erased["erased_at"] for m in t["messages"])
    # Nobody can write as her any more, by the pseudonym or the old id.
    for who in (alias, DANA):
        gone = api.post(f"/conversations/{who}/messages", json={"channel": "sms", "text": "hi"})
        assert gone.status_code == 404 and error_of(gone)["code"] == "contact_not_found"


def test_a_message_from_the_old_number_afterwards_is_a_strangers(api, twilio, app):
    converse(api, twilio, app)
    assert erase_cli(app, DANA).exit_code == 0
    before = shape(app)

    answer = replies(twilio.text("hello? it's Dana, confirm"))

    assert answer == [unknown_sender_reply(BUSINESS)]
    after = shape(app)
    [new] = after["messages"][len(before["messages"]):]
    assert new[1] is None  # in no thread
    with db(app).connect() as conn:
        assert conn.scalar(select(MessageRow.contact_id).where(MessageRow.id == new[0])) is None
    assert after["threads"] == before["threads"]
    assert after["consent_events"] == before["consent_events"]
    assert traces(app, (NAME, DANA, EMAIL, WEB_USER, DANA_PHONE, WHATSAPP)) == []
    whatsapp = twilio.text("anyone?", medium="whatsapp", number=WHATSAPP)
    assert replies(whatsapp) == [unknown_sender_reply(BUSINESS)]
    # Nothing goes out to her either: no number, consent revoked, no thread live.
    run_jobs(app)
    with db(app).connect() as conn:
        out_after = conn.scalar(select(func.count()).select_from(MessageRow).where(
            MessageRow.direction == "out", MessageRow.status.in_(("queued", "sent")),
            MessageRow.at > before["messages"][-1][5]))
    assert out_after == 0


def test_erasing_again_says_so_and_changes_nothing(api, twilio, app):
    converse(api, twilio, app)
    first = api.post(f"/contacts/{DANA}/erase").get_json()
    before = shape(app), every_text(app)

    again = api.post(f"/contacts/{DANA}/erase")
    by_alias = api.post(f"/contacts/{first['contact']}/erase")
    cli = erase_cli(app, DANA)

    for r in (again, by_alias):
        assert r.status_code == 200
        assert r.get_json() == {**first, "already_erased": True, "messages_blanked": 0,
                                "addresses_removed": 0, "jobs_cancelled": 0,
                                "threads_closed": 0, "escalations_redrawn": 0,
                                "spool_entries_removed": 0}
    assert cli.exit_code == 0 and "already erased" in cli.output, cli.output
    assert first["contact"] in cli.output
    # Nothing changed but the audit trail, which records each request (and no personal data:
    # `traces` searches it with every other table).
    def unaudited(text):
        return [t for t in text if t[0] != "audit_events"]
    assert (shape(app), unaudited(every_text(app))) == (before[0], unaudited(before[1]))
    erasures = [e.event for e in SqlAuditTrail(db(app)).events()
                if e.event.action == "contacts.erase"]
    assert [(e.source, e.outcome, e.detail["already_erased"]) for e in erasures] == [
        ("api", "ok", 0), ("api", "ok", 1), ("api", "ok", 1), ("cli", "ok", 1)]
    assert erasures[0].object_id == audit_pseudonym(DANA) and erasures[0].detail["messages_blanked"] > 0


def test_an_unknown_contact_is_a_404_and_the_cli_says_so(api, app):
    put_account(api, lee())
    r = api.post("/contacts/nobody-ever/erase")
    assert r.status_code == 404 and error_of(r)["code"] == "contact_not_found"
    result = erase_cli(app, "nobody-ever")
    assert result.exit_code != 0 and "no contact 'nobody-ever'" in result.output
    assert api.get(f"/accounts/{ACME}").get_json()["contacts"][0]["name"] == "Lee Okafor"


def test_the_old_id_put_again_is_a_new_contact_and_the_erased_one_stays(api, twilio, app):
    converse(api, twilio, app)
    erased = api.post(f"/contacts/{DANA}/erase").get_json()
    before = shape(app)

    # The operator's next PUT lists her again (a new number), without the pseudonym.
    got = put_account(api, contact(DANA, role="billing", phone="+13125550100"), lee())

    assert [(c["external_id"], c["phone"], c["erased_at"]) for c in got["contacts"]] == [
        (DANA, "+13125550100", None), (LEE, LEE_PHONE, None),
        (erased["contact"], None, erased["erased_at"])]
    after = shape(app)
    assert after["contacts"] == before["contacts"] + 1
    assert after["consent_events"] == before["consent_events"]  # the erased contact's kept
    assert after["messages"] == before["messages"] and after["threads"] == before["threads"]
    assert traces(app, (NAME, EMAIL, WEB_USER, DANA_PHONE, WHATSAPP, SECRET_TEXT)) == []
    # The new contact has nothing of the old one: no thread is hers.
    with db(app).connect() as conn:
        new_id = conn.scalar(select(ContactRow.id).where(ContactRow.external_id == DANA))
        assert conn.scalar(select(func.count()).select_from(ThreadRow)
                           .where(ThreadRow.contact_id == new_id)) == 0
        assert conn.scalar(select(func.count()).select_from(MessageRow)
                           .where(MessageRow.contact_id == new_id)) == 0

    # Erased too, she gets a pseudonym of her own; the old id then names an erased contact.
    second = api.post(f"/contacts/{DANA}/erase").get_json()
    assert second["already_erased"] is False
    assert second["contact"] == f"{erased['contact']}-{new_id}"
    assert api.post(f"/contacts/{DANA}/erase").get_json()["already_erased"] is True
    ids = [c["external_id"] for c in api.get(f"/accounts/{ACME}").get_json()["contacts"]]
    assert ids == [LEE, erased["contact"], second["contact"]]


def test_an_id_that_looks_like_a_pseudonym_is_refused_in_a_put(api):
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[contact("erased:0123456789abcdef")]))
    assert r.status_code == 422
    err = error_of(r)
    assert (err["code"], err["field"]) == ("reserved_contact_id", "contacts[0].external_id")


def test_a_live_thread_of_the_erased_buyer_closes_as_opted_out(api, twilio, app):
    put_account(api, dana(), lee())
    cross_messages(api)
    assert api.get(f"/accounts/{ACME}/thread").get_json()["state"] == "offered"

    r = api.post(f"/contacts/{DANA}/erase").get_json()

    assert r["threads_closed"] == 1
    assert api.get(f"/accounts/{ACME}/thread").get_json()["state"] == "opted_out"
    # The next crossing offers to Lee, never to the erased contact.
    with db(app).connect() as conn:
        erased_id = conn.scalar(select(ContactRow.id).where(ContactRow.erased_at.is_not(None)))
    api.post("/usage", json={"events": [{"id": "seats-4", "account": ACME, "metric": "seats",
                                         "quantity": 4, "at": "2026-11-26T14:00:00Z"}]})
    with db(app).connect() as conn:
        addressees = set(conn.scalars(select(ThreadRow.contact_id)))
    assert erased_id in addressees and len(addressees) == 2


def test_the_erasure_removes_the_buyers_spooled_messages_and_redraws_posted_cards(api, twilio,
                                                                                  app, tmp_path):
    converse(api, twilio, app)
    spool = Spool(tmp_path / "spool")
    mine = [spool.write({"v": 1, "medium": "sms", "from": DANA_PHONE, "body": SECRET_TEXT}),
            spool.write({"v": 1, "medium": "whatsapp", "from": WHATSAPP, "body": "hi"})]
    theirs = spool.write({"v": 1, "medium": "sms", "from": LEE_PHONE, "body": "hello"})
    (spool.directory / REJECTED).mkdir()
    set_aside = spool.directory / REJECTED / "00000000000000000001-x.json"
    set_aside.write_text(json.dumps({"medium": "sms", "from": DANA_PHONE, "body": "x"}))
    unreadable = spool.directory / REJECTED / "00000000000000000002-y.json"
    unreadable.write_text("{not json")
    with db(app).begin() as conn:  # the CSM card was posted to Slack (its channel and ts kept)
        [(escalation, case)] = conn.execute(select(EscalationRow.id, EscalationRow.case)).all()
        conn.execute(EscalationRow.__table__.update().values(
            case={**case, "slack": {"channel": "C1", "ts": "1.2"}}))

    r = api.post(f"/contacts/{DANA}/erase").get_json()

    assert r["spool_entries_removed"] == 3
    assert not any(p.exists() for p in (*mine, set_aside))
    assert theirs.exists() and unreadable.exists()
    assert r["escalations_redrawn"] == 1
    with db(app).connect() as conn:
        assert conn.scalars(select(OutboxRow.payload).where(
            OutboxRow.kind == "csm_escalation_update")).all() == [{"escalation_id": escalation}]


def test_a_number_shared_with_another_account_is_theirs_alone_once_she_is_erased(api, twilio,
                                                                                 app):
    put_account(api, dana(), lee())
    r = api.put("/accounts/harbor", json=account(name="Harbor Realty", contacts=[
        contact("harbor-sam", role="billing", phone=DANA_PHONE)]))
    assert r.status_code == 201
    assert "Which business" in " ".join(replies(twilio.text("hello")))  # two candidates: asks

    assert api.post(f"/contacts/{DANA}/erase").status_code == 200
    answer = replies(twilio.text("what plan am I on?"))

    assert answer and "Which business" not in " ".join(answer)
    with db(app).connect() as conn:
        sam = conn.scalar(select(ContactRow.id).where(ContactRow.external_id == "harbor-sam"))
        last = conn.execute(select(MessageRow.contact_id, MessageRow.body)
                            .where(MessageRow.direction == "in")
                            .order_by(MessageRow.id.desc()).limit(1)).one()
    assert tuple(last) == (sam, "what plan am I on?")


def test_an_erasure_cancels_her_waiting_call_and_forgets_who_the_csm_was_to_call(api, twilio,
                                                                                   app):
    """A call Dana booked waits no longer, and the CSM's scheduled call kept her name and
    number on the escalation: only her pseudonym stays."""
    from core import csm

    converse(api, twilio, app)  # her thread is escalated (she asked for a person)
    rt = app.extensions["upgrade_chat"]
    with db(app).connect() as conn:
        [escalation] = conn.scalars(select(EscalationRow.id)).all()
    done = csm.act(rt.uow, rt.settings.channels, escalation, csm.Action.SCHEDULE_CALL, "U1",
                   "Sam", BUSINESS.name, rt.now(), rt.settings.policy)
    assert done.changed and done.card.call_requested["call"]["number"] == DANA_PHONE
    assert replies(twilio.text("call me tomorrow at 10am"))
    [call] = api.get(f"/accounts/{ACME}/thread").get_json()["calls"]
    assert call["status"] == "scheduled"

    r = api.post(f"/contacts/{DANA}/erase").get_json()

    assert traces(app) == []
    [call] = api.get(f"/accounts/{ACME}/thread").get_json()["calls"]
    assert call["status"] == "cancelled"
    with db(app).connect() as conn:
        [case] = conn.scalars(select(EscalationRow.case)).all()
    assert case["call_requested"]["call"] == {"contact": r["contact"], "number": None,
                                              "erased": True}
