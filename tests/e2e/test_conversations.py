"""The conversation engine end to end, through the HTTP API, on SQLite and PostgreSQL: a crossing
opens a thread, the buyer's replies move it, a confirmed upgrade runs exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from web.webhooks import verify_signature
from storage.models import PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import NOW, account, ago, batch, contact, error_of, event

ACME, DANA = "acme", "acme-dana"
SECRET = "whsec-test"


@pytest.fixture
def app(make_app, receiver):
    # Nobody in the control cohort, so every crossing may prompt; webhooks to a local receiver.
    return make_app(CONTROL_SHARE="0", BILLING_WEBHOOK_URL=receiver.url,
                    BILLING_WEBHOOK_SECRET=SECRET, BUSINESS_NAME="Acme Billing",
                    SUPPORT_CONTACT="help@acme.example")


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def setup_account(api, **fields):
    """The §1 buyer: Starter, billed on the 5th, in Chicago; Dana, billing, reachable by SMS."""
    fields = {"plan": "starter", "timezone": "America/Chicago", "billing_day": 5,
              "contacts": [contact(DANA, name="Dana", role="billing", phone="+13125550142")],
              **fields}
    body = account(**fields)
    assert api.put(f"/accounts/{ACME}", json=body).status_code == 201


def cross_messages(api, n=4800, prefix="m", now=NOW):
    """Messages over the last 30 days; the last event takes the account over 4,500."""
    events = [event(f"{prefix}{i}", ACME, "messages", n // 8, ago(now, days=7 - i)) for i in range(8)]
    events.append(event(f"{prefix}-seats", ACME, "seats", 3, ago(now, days=1)))
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()
    # The scheduler's next pass sends the queued opening (sandbox: stored as sent).
    app = api.client.application
    app.test_cli_runner().invoke(args=["jobs", "run"])
    return r.get_json()


def say(api, text, msg_id, channel="sms", who=DANA):
    r = api.post(f"/conversations/{who}/messages", json={"channel": channel, "text": text, "id": msg_id})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def thread(api):
    return api.get(f"/accounts/{ACME}/thread").get_json()


def run_jobs(app) -> str:
    """What the scheduler does every few seconds: send due outbox jobs, apply, expire."""
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_crossing_opens_a_thread_and_the_case_goes_out_on_sms(api):
    setup_account(api)
    usage = cross_messages(api)
    [signal] = usage["signals"]
    assert (signal["metric"], signal["outcome"], signal["reason"]) == ("messages", "prompted", None)
    t = thread(api)
    assert (t["state"], t["target_plan"], t["last_channel"]) == ("offered", "growth", "sms")
    [opening] = t["messages"]
    assert (opening["direction"], opening["kind"], opening["status"]) == ("out", "opening", "sent")
    assert "$529.00" in opening["body"] and "$499.00" in opening["body"]


def test_the_upgrade_scenario_from_crossing_to_growth(api, receiver, app):
    setup_account(api)
    cross_messages(api)
    charge = say(api, "how much would I be charged today?", "in-1")
    assert "$105.00" in charge["replies"][0] and charge["state"] == "offered"
    step = say(api, "yes", "in-2")
    assert step["state"] == "awaiting_confirmation"
    assert "Growth at $499.00 a month" in step["replies"][0] and "$105.00" in step["replies"][0]
    done = say(api, "confirm", "in-3")
    assert done["state"] == "upgraded" and done["replies"][0].startswith("Done")
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "growth"
    t = thread(api)
    assert t["upgrade"]["to_plan"] == "growth" and t["upgrade"]["charge_today"] == "105.00"
    assert [m["direction"] for m in t["messages"]] == ["out", "in", "out", "in", "out", "in", "out"]
    assert receiver.requests == []  # nothing is sent from the request itself
    assert "outbox: 1 sent" in run_jobs(app)
    [hook] = receiver.requests
    assert verify_signature(SECRET, hook.headers["X-Upgrade-Chat-Timestamp"], hook.body,
                            hook.headers["X-Upgrade-Chat-Signature"], now=NOW)
    assert b'"to_plan":"growth"' in hook.body


def test_an_upgraded_threads_current_plan_is_the_accounts_new_plan(api):
    setup_account(api)
    cross_messages(api)
    assert thread(api)["current_plan"] == "starter"  # live: the plan the offer starts from
    say(api, "yes", "in-1")
    assert thread(api)["current_plan"] == "starter"
    say(api, "confirm", "in-2")
    t = thread(api)
    assert (t["state"], t["current_plan"], t["target_plan"]) == ("upgraded", "growth", "growth")
    assert (t["upgrade"]["from_plan"], t["upgrade"]["to_plan"]) == ("starter", "growth")
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == t["current_plan"]


def test_a_repeated_message_id_is_answered_once_and_changes_nothing(api):
    setup_account(api)
    cross_messages(api)
    say(api, "yes", "in-1")
    first = say(api, "confirm", "in-2")
    again = say(api, "confirm", "in-2")
    assert again["duplicate"] is True and again["replies"] == first["replies"]
    assert len([m for m in thread(api)["messages"] if m["direction"] == "in"]) == 2


def test_a_bare_yes_on_an_offer_asks_for_confirmation_and_never_upgrades(api):
    setup_account(api)
    cross_messages(api)
    assert say(api, "yes", "in-1")["state"] == "awaiting_confirmation"
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "starter"


def test_a_decline_stores_its_reason_and_a_new_crossing_within_30_days_is_in_cooldown(api, clock):
    setup_account(api)
    cross_messages(api)
    no = say(api, "no, too expensive", "in-1")
    assert no["state"] == "declined"
    assert thread(api)["decline_reason"] == "price"
    clock.now = NOW + timedelta(days=3)
    r = api.post("/usage", json=batch(event("seats-4", ACME, "seats", 4, ago(NOW + timedelta(days=3), hours=1))))
    [signal] = r.get_json()["signals"]
    assert (signal["outcome"], signal["reason"]) == ("suppressed", "cooldown")
    assert thread(api)["suppressions"][0]["reason"] == "cooldown"


def test_a_thread_continues_across_channels(api):
    setup_account(api)
    cross_messages(api)
    say(api, "yes", "sms-1", channel="sms")
    done = say(api, "confirm", "web-1", channel="web")
    assert done["state"] == "upgraded"
    assert thread(api)["last_channel"] == "web"


def test_stop_revokes_consent_and_the_next_crossing_is_suppressed(api, clock):
    setup_account(api)
    cross_messages(api)
    stop = say(api, "STOP", "in-1")
    assert stop["state"] == "opted_out" and "START" in stop["replies"][0]
    r = api.post("/usage", json=batch(event("seats-4", ACME, "seats", 4, ago(hours=1))))
    assert r.get_json()["signals"][0]["reason"] == "opted_out"
    assert "Acme Billing" in say(api, "HELP", "in-2")["replies"][0]


def test_a_yes_after_stop_waits_for_start_even_on_a_declined_thread(api):
    setup_account(api)
    cross_messages(api)
    assert say(api, "no thanks", "in-1")["state"] == "declined"
    say(api, "STOP", "in-2")  # the thread keeps its outcome; the contact is opted out
    for i, text in enumerate(("yes", "confirm")):
        answer = say(api, text, f"in-3{i}")
        assert answer["state"] == "declined"
        assert answer["replies"] == ["You have opted out of these messages. Reply START to "
                                     "subscribe again, then YES."]
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "starter"
    say(api, "START", "in-4")
    assert say(api, "yes", "in-5")["state"] == "awaiting_confirmation"  # "actually, yes"
    assert say(api, "confirm", "in-6")["state"] == "upgraded"


def test_after_an_sms_stop_a_yes_in_the_product_still_works(api):
    setup_account(api, contacts=[contact(DANA, name="Dana", role="billing", phone="+13125550142",
                                         web_user_id="u-dana")])
    cross_messages(api)
    assert say(api, "no thanks", "in-1")["state"] == "declined"
    say(api, "STOP", "in-2")  # texts stop; the buyer may still act in the product
    assert say(api, "yes", "web-1", channel="web")["state"] == "awaiting_confirmation"
    assert say(api, "confirm", "web-2", channel="web")["state"] == "upgraded"


@pytest.mark.parametrize("text, reason, state", [
    ("can I talk to a real person?", "human", "escalated"),
    ("can I get a discount?", "discount", "escalated"),
    ("no, we're switching to a competitor", "leaving", "escalated"),
])
def test_the_csm_lane_takes_what_the_bot_must_not(api, text, reason, state):
    setup_account(api)
    cross_messages(api)
    answer = say(api, text, "in-1")
    assert answer["state"] == state
    assert "discount" not in answer["replies"][0].lower() or "cannot offer" in answer["replies"][0]
    [escalation] = thread(api)["escalations"]
    assert escalation["reason"] == reason


def test_call_me_books_a_call_instead_of_a_csm_note(api):
    """A buyer who asks for a call gets one booked (core.calls), and is told when; the thread
    stays where it was and no CSM is pulled in for it."""
    setup_account(api)
    cross_messages(api)
    answer = say(api, "call me tomorrow", "in-1")
    assert answer["state"] == "offered"
    assert "will ring you at" in answer["replies"][-1] or "only call between" in answer["replies"][-1]
    t = thread(api)
    assert t["escalations"] == []
    [call] = t["calls"]
    assert (call["status"], call["reason"], call["attempt"]) == ("scheduled", "callback", 1)


def test_red_health_escalates_instead_of_prompting(api):
    setup_account(api)
    api.post(f"/accounts/{ACME}/health", json={"csat": 2.5})
    [signal] = cross_messages(api)["signals"]
    assert (signal["outcome"], signal["reason"]) == ("suppressed", "health")
    t = thread(api)
    assert t["state"] is None and t["escalations"][0]["reason"] == "health"


def test_a_crossing_at_night_is_deferred_to_nine_in_the_buyers_time_zone(api, clock):
    clock.now = NOW.replace(hour=3)  # 21:00 in Chicago the evening before
    setup_account(api)
    [signal] = cross_messages(api, now=clock.now)["signals"]
    assert (signal["outcome"], signal["reason"]) == ("deferred", "quiet_hours")
    assert signal["defer_until"] == "2026-11-26T15:00:00Z"  # 09:00 CST
    t = thread(api)
    assert t["state"] == "open" and t["messages"][0]["not_before"] == "2026-11-26T15:00:00Z"


def test_messages_from_an_unknown_contact_or_channel_are_refused_clearly(api):
    setup_account(api)
    r = api.post("/conversations/nobody/messages", json={"channel": "sms", "text": "hi"})
    assert (r.status_code, error_of(r)["code"]) == (404, "contact_not_found")
    r = api.post(f"/conversations/{DANA}/messages", json={"channel": "fax", "text": "hi"})
    assert (r.status_code, error_of(r)["code"]) == (422, "unknown_channel")
    r = api.post(f"/conversations/{DANA}/messages", json={"channel": "sms"})
    assert r.status_code == 400


def test_many_concurrent_confirmations_on_two_channels_upgrade_exactly_once(app, api, receiver):
    setup_account(api)
    cross_messages(api)
    say(api, "yes", "in-1")
    answers: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def confirm(i: int) -> None:
        client = Api(app.test_client())
        channel = "sms" if i % 2 else "web"
        try:
            start.wait()
            r = client.post(f"/conversations/{DANA}/messages",
                            json={"channel": channel, "text": "confirm", "id": f"{channel}-{i}"})
            answers.append(r.get_json())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=confirm, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert all("replies" in a for a in answers), answers
    done = [a for a in answers if a["replies"][0].startswith("Done")]
    already = [a for a in answers if "already made" in a["replies"][0]]
    assert len(done) == 1 and len(already) == 7
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PlanChangeRow)) == 1
    run_jobs(app)
    run_jobs(app)
    assert len(receiver.requests) == 1


def test_a_down_tier_is_confirmed_now_and_applied_at_the_next_period(app, api, clock):
    setup_account(api, plan="growth", plan_since=ago(days=60))
    r = api.post("/usage", json=batch(event("m-1", ACME, "messages", 900, ago(hours=2))))
    [signal] = r.get_json()["signals"]
    assert (signal["direction"], signal["outcome"]) == ("down", "prompted")
    say(api, "yes", "in-1")
    done = say(api, "confirm", "in-2")
    assert done["state"] == "upgraded" and "Dec 5" in done["replies"][0]
    upgrade = thread(api)["upgrade"]
    assert (upgrade["status"], upgrade["effective"], upgrade["charge_today"]) == \
        ("pending", "2026-12-05", "0.00")
    run_jobs(app)
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "growth"  # not yet
    assert thread(api)["current_plan"] == "growth"  # the account's plan, until the change applies
    clock.now = NOW + timedelta(days=9, hours=1)  # Dec 5, 10:00 in Chicago
    assert "plan changes applied: 1" in run_jobs(app)
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "starter"
    assert thread(api)["current_plan"] == "starter"


def test_an_offer_nobody_answers_for_14_days_expires(app, api, clock):
    setup_account(api)
    cross_messages(api)
    clock.now = NOW + timedelta(days=14, minutes=1)
    assert "threads expired: 1" in run_jobs(app)
    assert thread(api)["state"] == "expired"
    assert say(api, "yes", "late-1")["state"] == "awaiting_confirmation"  # a late yes still works


def test_a_buyer_who_writes_before_a_deferred_opening_gets_it_once(api, clock):
    clock.now = NOW.replace(hour=3)  # night in Chicago: the opening waits in the outbox
    setup_account(api)
    cross_messages(api, now=clock.now)
    answer = say(api, "how much?", "in-1", channel="web")
    assert answer["state"] == "offered" and "$529.00" in answer["replies"][0]
    opening = [m for m in thread(api)["messages"] if m["kind"] == "opening"]
    assert [m["status"] for m in opening] == ["cancelled"]  # never sent again later


def test_a_confirmation_in_a_new_billing_period_shows_the_new_figures_instead_of_charging(api, clock):
    clock.now = NOW + timedelta(days=8)  # Dec 4: the last day of the period, $11.67 today
    setup_account(api)
    cross_messages(api, now=clock.now)
    step = say(api, "yes", "in-1")
    assert "$11.67" in step["replies"][0]
    clock.now = NOW + timedelta(days=9)  # Dec 5: a new period, a whole month's difference
    again = say(api, "confirm", "in-2")
    assert again["state"] == "awaiting_confirmation"
    assert again["replies"][0].startswith("The figures have changed") and "$350.00" in again["replies"][0]
    assert thread(api)["upgrade"] is None
    done = say(api, "confirm", "in-3")
    assert done["state"] == "upgraded" and thread(api)["upgrade"]["charge_today"] == "350.00"


def test_an_offer_for_a_plan_the_account_already_moved_to_is_withdrawn(api):
    setup_account(api)
    cross_messages(api)
    say(api, "yes", "in-1")
    body = account(plan="growth", timezone="America/Chicago", billing_day=5,
                   contacts=[contact(DANA, name="Dana", role="billing", phone="+13125550142")])
    api.put(f"/accounts/{ACME}", json=body)  # the operator moved the account meanwhile
    answer = say(api, "confirm", "in-2")
    assert answer["state"] == "expired" and "no longer applies" in answer["replies"][0]
    t = thread(api)
    assert t["upgrade"] is None and t["current_plan"] == "growth"  # finished: the account's plan


def test_one_senders_message_id_never_reaches_another_senders_conversation(api):
    setup_account(api)
    cross_messages(api)
    api.put("/accounts/other", json=account(contacts=[contact("eve", role="billing", phone="+14155550100")]))
    say(api, "how much would I be charged today?", "1")
    eve = say(api, "hello", "1", who="eve")
    assert eve["duplicate"] is False and "$105.00" not in " ".join(eve["replies"])


def test_an_opening_waiting_for_a_web_visit_that_never_comes_expires(app, api, clock):
    body = account(timezone="America/Chicago", billing_day=5,
                   contacts=[contact(DANA, role="billing", web_user_id="u-dana")])  # no phone
    api.put(f"/accounts/{ACME}", json=body)
    cross_messages(api)
    assert thread(api)["state"] == "open"  # waits in web chat for the next visit
    clock.now = NOW + timedelta(days=15)
    assert "threads expired: 1" in run_jobs(app)
    t = thread(api)
    assert t["state"] == "expired" and t["messages"][0]["status"] == "cancelled"


def test_a_deferred_opening_goes_out_when_due_and_the_thread_is_then_offered(app, api, clock):
    clock.now = NOW.replace(hour=3)
    setup_account(api)
    cross_messages(api, now=clock.now)
    assert thread(api)["state"] == "open"
    clock.now = NOW  # 09:00 in Chicago
    assert "outbox: 1 sent" in run_jobs(app)
    assert thread(api)["state"] == "offered"


def test_a_web_message_marks_the_buyer_active_so_the_next_opening_goes_to_web_chat(api, clock):
    body = account(timezone="America/Chicago", billing_day=5,
                   contacts=[contact(DANA, role="billing", phone="+13125550142", web_user_id="u-dana")])
    api.put(f"/accounts/{ACME}", json=body)
    say(api, "hi", "w-1", channel="web")  # no thread yet: the buyer is in the product
    cross_messages(api)
    assert thread(api)["last_channel"] == "web" and thread(api)["state"] == "offered"


def test_the_answer_to_why_after_a_plain_no_is_kept_as_the_reason(api):
    setup_account(api)
    cross_messages(api)
    assert "why" in say(api, "no", "in-1")["replies"][0]
    say(api, "the price", "in-2")
    assert thread(api)["decline_reason"] == "price"


def test_an_open_escalation_keeps_the_bot_quiet_and_red_health_escalates_once(api, clock):
    setup_account(api)
    api.post(f"/accounts/{ACME}/health", json={"csat": 2.0})
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=i + 1)) for i in range(8)]
    events.append(event("s4", ACME, "seats", 4, ago(hours=1)))  # two crossings in one batch
    signals = api.post("/usage", json=batch(*events)).get_json()["signals"]
    assert [s["reason"] for s in signals] == ["health", "health"]
    assert [e["reason"] for e in thread(api)["escalations"]] == ["health"]
    api.post(f"/accounts/{ACME}/health", json={"csat": 4.5})  # green again, the escalation open
    r = api.post("/usage", json=batch(event("i2", ACME, "integrations", 2, ago(minutes=30))))
    assert r.get_json()["signals"][0]["reason"] == "health"


def test_a_finished_thread_keeps_its_outcome_when_the_buyer_opts_out_later(api):
    setup_account(api)
    cross_messages(api)
    say(api, "yes", "in-1")
    say(api, "confirm", "in-2")
    assert say(api, "STOP", "in-3")["state"] == "upgraded"  # consent changes, the outcome stays


def test_yes_after_stop_tells_the_buyer_how_to_subscribe_again(api):
    setup_account(api)
    cross_messages(api)
    assert say(api, "STOP", "in-1")["state"] == "opted_out"
    answer = say(api, "yes", "in-2")
    assert answer["state"] == "opted_out" and "START" in answer["replies"][0]


def test_yes_after_a_decline_clears_the_reason_so_no_cooldown_follows(api):
    setup_account(api)
    cross_messages(api)
    say(api, "no, too expensive", "in-1")
    assert say(api, "actually yes", "in-2")["state"] == "awaiting_confirmation"
    assert thread(api)["decline_reason"] is None


def test_a_whatsapp_number_from_the_operator_is_an_opt_in_and_the_opening_goes_there(app, api):
    from storage.models import ConsentEventRow

    body = account(timezone="America/Chicago", billing_day=5, contacts=[
        contact(DANA, role="billing", phone="+13125550142", whatsapp="+13125550142")])
    api.put(f"/accounts/{ACME}", json=body)
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        rows = conn.execute(select(ConsentEventRow.action, ConsentEventRow.channel,
                                   ConsentEventRow.source)).all()
    assert rows == [("grant", "whatsapp", "operator")]
    cross_messages(api)
    assert thread(api)["last_channel"] == "whatsapp"
    api.put(f"/accounts/{ACME}", json=body)  # the same number again is not a new opt-in
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ConsentEventRow)) == 1
