"""A conversation a buyer can trust with a card, through the API on SQLite and PostgreSQL: only an
explicit confirmation charges, no false opt-outs, questions are never declines, escalation is no
wall, control-cohort buyers are answered, answers that do not mislead, a fallback that knows the
state, and a bot that says who is writing and what it is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from storage.models import ConsentEventRow, PlanChangeRow, ThreadRow
from tests.conftest import Api
from tests.e2e.helpers import NOW, account, ago, batch, contact, event
from tests.e2e.test_conversations import ACME, DANA, cross_messages, say, setup_account, thread


@pytest.fixture
def app(make_app):
    return make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme Billing",
                    SUPPORT_CONTACT="help@acme.example")


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def plan_changes(app) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(PlanChangeRow))


def at_confirmation_step(api):
    setup_account(api)
    cross_messages(api)
    step = say(api, "yes", "s-yes")
    assert step["state"] == "awaiting_confirmation" and "Reply CONFIRM" in step["replies"][0]


@pytest.mark.parametrize("text", ["ok thanks, will look at it tonight", "ok lemme ask my wife",
                                  "ok give me a day", "👍", "k", "sounds good",
                                  "yes but let me check with finance first"])
def test_a_hedge_or_an_acknowledgement_at_the_confirmation_step_charges_nothing(api, app, text):
    at_confirmation_step(api)
    answer = say(api, text, "s-hedge")
    assert answer["state"] == "awaiting_confirmation", (text, answer)
    assert "Done" not in answer["replies"][0] and plan_changes(app) == 0
    assert "nothing changes unless you confirm" in answer["replies"][0].lower() \
        or "Nothing is charged yet" in answer["replies"][0]
    assert thread(api)["decline_reason"] is None
    # ... and an explicit confirmation afterwards still goes through, once.
    done = say(api, "confirm", "s-confirm")
    assert done["state"] == "upgraded" and plan_changes(app) == 1


def test_a_bare_yes_at_the_confirmation_step_confirms(api, app):
    at_confirmation_step(api)
    assert say(api, "YES", "s-yes-2")["state"] == "upgraded" and plan_changes(app) == 1


def test_no_thanks_dont_unsubscribe_me_is_a_decline_not_an_opt_out(api, app):
    setup_account(api)
    cross_messages(api)
    answer = say(api, "no thanks. dont unsubscribe me tho", "s-no")
    assert answer["state"] == "declined" and "unsubscribed" not in answer["replies"][0]
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ConsentEventRow)) == 0


@pytest.mark.parametrize("text", ["sounds good but what about seats?", "can i cancel anytime"])
def test_a_question_is_answered_and_never_recorded_as_a_decline(api, text):
    setup_account(api)
    cross_messages(api)
    answer = say(api, text, "s-q")
    assert answer["state"] == "offered" and thread(api)["decline_reason"] is None


def test_do_i_save_money_at_the_confirmation_step_is_answered_not_declined(api):
    at_confirmation_step(api)
    answer = say(api, "wait so do I save money or not", "s-save")
    assert answer["state"] == "awaiting_confirmation"
    assert "$499.00 a month" in answer["replies"][0] and "less" in answer["replies"][0]


def test_after_a_discount_request_the_buyer_can_still_go_ahead_at_list_price(api, app):
    setup_account(api)
    cross_messages(api)
    assert say(api, "can I get a discount?", "s-d1")["state"] == "escalated"
    again = say(api, "ok fine, no discount then. just upgrade us", "s-d2")
    assert again["state"] == "awaiting_confirmation" and "To confirm" in again["replies"][0]
    done = say(api, "confirm", "s-d3")
    assert done["state"] == "upgraded" and plan_changes(app) == 1
    with app.extensions["upgrade_chat"].engine.connect() as conn:  # the CSM's card is redrawn
        kinds = [r[0] for r in conn.exec_driver_sql("SELECT kind FROM outbox").all()]
    assert "csm_escalation_update" in kinds


def test_a_wrong_price_at_the_confirmation_step_is_corrected_and_nothing_was_paid(api, app):
    at_confirmation_step(api)
    wrong = say(api, "yes for $60", "s-60")
    assert wrong["state"] == "awaiting_confirmation"
    assert "Growth is $499.00 a month and $105.00 today, not $60.00" in wrong["replies"][0]
    paid = say(api, "what did I just pay", "s-paid")
    assert "Nothing has been charged" in paid["replies"][0] and plan_changes(app) == 0


def test_a_control_cohort_buyer_who_writes_in_is_answered_and_the_thread_is_buyer_initiated(
        make_app, app):
    control = Api(make_app(CONTROL_SHARE="1").test_client())
    setup_account(control)
    usage = cross_messages(control)
    assert usage["signals"][0]["reason"] == "control"
    answer = say(control, "hi, saw workflows is locked. how much is growth?", "s-ctl")
    assert "no plan change" not in " ".join(answer["replies"]).lower()
    assert any("$499.00 a month" in r for r in answer["replies"]) and answer["state"] == "offered"
    with control.client.application.extensions["upgrade_chat"].engine.connect() as conn:
        assert conn.scalar(select(ThreadRow.initiated_by)) == "buyer"
    assert say(control, "yes", "s-ctl-2")["state"] == "awaiting_confirmation"
    assert say(control, "confirm", "s-ctl-3")["state"] == "upgraded"


def test_answers_do_not_mislead(api):
    at_confirmation_step(api)
    contract = say(api, "is there a contract", "s-c")["replies"][0]
    assert contract.startswith("No contract") and "month to month" in contract
    today = say(api, "what's the price today", "s-p")["replies"][0]
    assert "$105.00" in today
    say(api, "confirm", "s-ok")
    charged = say(api, "how much did you charge me", "s-ch")["replies"][0]
    assert "You were charged $105.00" in charged


def test_a_down_tier_thread_says_moving_up_is_charged_and_done_keeps_the_usage_figure(make_app):
    api = Api(make_app(CONTROL_SHARE="0").test_client())
    body = account(plan="growth", timezone="America/Chicago", billing_day=5,
                   contacts=[contact(DANA, name="Dana", role="billing", phone="+13125550142")])
    body["plan_since"] = ago(NOW, days=400)
    assert api.put(f"/accounts/{ACME}", json=body).status_code in (200, 201)
    r = api.post("/usage", json=batch(
        event("d1", ACME, "messages", 2100, ago(NOW, days=3)),
        event("d2", ACME, "seats", 5, ago(NOW, days=2))))
    assert r.status_code == 200, r.get_json()
    api.client.application.test_cli_runner().invoke(args=["jobs", "run"])
    t = thread(api)
    assert t["target_plan"] == "starter", t  # Starter costs $339.00 at this usage
    up = say(api, "can we go back up to growth later", "s-up")["replies"][0]
    assert "moving up is charged" in up and "with no charge" not in up
    step = say(api, "yes", "s-y")["replies"][0]
    done = say(api, "confirm", "s-cf")["replies"][0]
    assert "$339.00 at your current usage" in step and "$339.00 at your current usage" in done


def test_the_fallback_knows_the_state(api):
    at_confirmation_step(api)
    say(api, "confirm", "s-done")
    thanks = say(api, "thanks!", "s-thx")["replies"][0]
    assert "Reply YES to see the upgrade" not in thanks and thanks.startswith("You're welcome")
    assert "done" in thanks
    say(api, "STOP", "s-stop")
    after = say(api, "hello?", "s-hello")["replies"][0]
    assert "Reply YES to see" not in after


def test_the_bot_says_who_is_writing_and_that_it_is_automated(api, app):
    setup_account(api)
    cross_messages(api)
    opening = thread(api)["messages"][0]["body"]
    assert opening.startswith("Acme Billing: ") and "STOP to opt out" in opening
    help_text = say(api, "HELP", "s-help")["replies"][0]
    assert "Acme Billing" in help_text and "upgrade" in help_text and "Starter to Growth" in help_text
    assert "help@acme.example" in help_text and "STOP" in help_text
    bot = say(api, "are you a bot?", "s-bot")
    assert "automated" in bot["replies"][0] and bot["state"] == "offered"


def test_an_opening_sent_as_a_reply_on_a_phone_still_says_who_is_writing(make_app, clock):
    """The buyer writes before the opening went out (it waited for quiet hours): the opening in
    the reply names the business and how to stop, as a sent one does."""
    api = Api(make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme Billing").test_client())
    setup_account(api)
    clock.now = NOW.replace(hour=4)  # 22:00 in Chicago the day before: the opening waits
    cross_messages(api, now=clock.now, prefix="n")
    assert thread(api)["state"] == "open"
    answer = say(api, "what is growth", "s-first")
    assert answer["replies"][0].startswith("Acme Billing: ") and "STOP to opt out" in answer["replies"][0]
    web = say(api, "and the price?", "w-first", channel="web")  # in the product: no preamble
    assert not web["replies"][0].startswith("Acme Billing")


def test_a_buyer_with_no_offer_who_asks_for_a_person_reaches_one(make_app):
    api = Api(make_app(CONTROL_SHARE="0").test_client())
    setup_account(api)  # no usage: no case, no thread
    answer = say(api, "can I talk to someone about our account?", "s-person")
    assert "account manager" in answer["replies"][0] and answer["thread_id"] is None
    esc = api.get(f"/accounts/{ACME}/thread").get_json()["escalations"]
    assert [(e["reason"], e["thread_id"]) for e in esc] == [("human", None)]


def test_after_the_upgrade_what_was_charged_is_the_figure_of_that_day(api, app, clock):
    at_confirmation_step(api)
    say(api, "confirm", "s-paid-confirm")  # Nov 26: $105.00 for 9 of 30 days, until Dec 5
    for days, msg_id in ((4, "s-paid-1"), (12, "s-paid-2")):
        clock.now = NOW + timedelta(days=days)
        paid = say(api, "what did I pay?", msg_id)["replies"][0]
        assert paid.startswith("You were charged $105.00") and "(until Dec 5)" in paid, paid
        assert "From then it is $499.00 a month" in paid
