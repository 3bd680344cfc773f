"""What the bot says and does for each kind of message in each state (§6), pure."""

from datetime import datetime, timedelta, timezone

import pytest

from core.case import AccountTerms, current_case
from core.conversation import (Business, EscalationReason, ThreadEvent, ThreadState, is_expired,
                               reply)
from core.intents import DeclineReason, Intent, classify
from core.usage import UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
BIZ = Business("Acme Billing", "help@acme.example")
S, E = ThreadState, ThreadEvent


@pytest.fixture(scope="module")
def case(catalog):
    terms = AccountTerms("starter", "generic", "America/Chicago", 5, NOW - timedelta(days=400))
    return current_case(catalog, terms, UsageMatrix(messages=4800, seats=3), NOW)


def say(catalog, case, state, text):
    return reply(state, classify(text), text, case, catalog, BIZ)


@pytest.mark.parametrize("text, figure", [
    ("how much would I be charged today?", "$105.00"),
    ("how much is growth", "$499.00"),
    ("what do I get with growth", "10 seats"),
    ("can I downgrade later?", "next billing period"),
])
def test_questions_are_answered_from_the_case_and_leave_the_state_alone(catalog, case, text, figure):
    turn = say(catalog, case, S.OFFERED, text)
    assert figure in turn.replies[0] and turn.events == () and not turn.run_upgrade


def test_yes_on_an_offer_shows_the_confirmation_step_with_plan_price_and_charge(catalog, case):
    turn = say(catalog, case, S.OFFERED, "yes")
    assert turn.events == (E.AFFIRM,) and not turn.run_upgrade
    assert "Growth at $499.00 a month" in turn.replies[0] and "$105.00" in turn.replies[0]
    assert "CONFIRM" in turn.replies[0]


@pytest.mark.parametrize("text", ["confirm", "yes", "CONFIRM"])
def test_a_yes_or_confirm_in_awaiting_confirmation_runs_the_upgrade(catalog, case, text):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, text)
    assert turn.events == (E.CONFIRM,) and turn.run_upgrade


def test_an_explicit_confirm_before_the_step_still_shows_the_step_first(catalog, case):
    turn = say(catalog, case, S.OFFERED, "confirm")
    assert turn.events == (E.AFFIRM,) and not turn.run_upgrade


@pytest.mark.parametrize("state", [S.OFFERED, S.AWAITING_CONFIRMATION, S.DECLINED])
@pytest.mark.parametrize("text", ["confirm the scale plan", "yes, put us on Scale", "SCALE yes"])
def test_a_yes_that_names_another_plan_changes_nothing_and_says_what_is_offered(
        catalog, case, state, text):
    turn = say(catalog, case, state, text)
    assert turn.events == () and not turn.run_upgrade
    how = ("Reply CONFIRM to upgrade to Growth ($105.00 today)"
           if state == S.AWAITING_CONFIRMATION else "Reply YES to go ahead with Growth")
    assert turn.replies == (f"This offer is for Growth at $499.00 a month, not Scale. {how}, or "
                            f"ask for a person to talk about Scale.",)


@pytest.mark.parametrize("text", ["yes at $399", "confirm, $450 a month", "ok upgrade us for USD 300",
                                  "yes, $1,000.50 today is ok", "yes at 399", "yes, 399 dollars",
                                  "yes, 399$ is ok", "yes, 450/mo", "ok at $1k"])
def test_a_yes_with_an_amount_we_did_not_show_changes_nothing_and_states_the_price(
        catalog, case, text):
    for state in (S.OFFERED, S.AWAITING_CONFIRMATION):
        turn = say(catalog, case, state, text)
        assert turn.events == () and not turn.run_upgrade, (state, text)
        assert "Growth is $499.00 a month and $105.00 today, not $" in turn.replies[0]


@pytest.mark.parametrize("text", ["I confirm the upgrade to growth at $499", "yes, $105 today is fine",
                                  "confirmed, $499.00 a month", "yes, 499 dollars a month is ok"])
def test_a_yes_that_repeats_the_figures_shown_goes_ahead(catalog, case, text):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, text)
    assert turn.events == (E.CONFIRM,) and turn.run_upgrade, text


@pytest.mark.parametrize("text", ["yes, growth please", "yes to growth", "confirm"])
def test_a_yes_that_names_the_offered_plan_or_only_the_current_one_goes_ahead(catalog, case, text):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, text)
    assert turn.events == (E.CONFIRM,) and turn.run_upgrade


def test_no_dont_upgrade_is_a_decline_never_a_confirmation(catalog, case):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, "no don't upgrade")
    assert turn.events == (E.DECLINE,) and not turn.run_upgrade


@pytest.mark.parametrize("text, reason", [
    ("no, too expensive", DeclineReason.PRICE), ("not now, maybe next quarter", DeclineReason.TIMING),
    ("we don't need it", DeclineReason.NOT_NEEDED),
])
def test_a_decline_records_its_reason_and_starts_the_cooldown(catalog, case, text, reason):
    turn = say(catalog, case, S.OFFERED, text)
    assert (turn.events, turn.decline_reason) == ((E.DECLINE,), reason)
    assert "30 days" in turn.replies[0]


def test_a_decline_without_a_reason_asks_for_one_and_a_later_answer_is_kept(catalog, case):
    first = say(catalog, case, S.OFFERED, "no")
    assert first.decline_reason == DeclineReason.OTHER and "why" in first.replies[0]
    later = say(catalog, case, S.DECLINED, "it's too expensive")
    assert (later.events, later.decline_reason) == ((), DeclineReason.PRICE)


def test_a_buyer_who_is_leaving_goes_to_the_csm(catalog, case):
    turn = say(catalog, case, S.OFFERED, "no, we're cancelling our account next month")
    assert turn.escalation == EscalationReason.LEAVING and turn.events == (E.ESCALATE,)


@pytest.mark.parametrize("text, reason, events", [
    ("can I talk to a person", EscalationReason.HUMAN, (E.ESCALATE,)),
    ("can you give me a discount?", EscalationReason.DISCOUNT, (E.ESCALATE,)),
    ("call me", EscalationReason.CALLBACK, ()),
])
def test_requests_for_a_person_a_discount_or_a_call_reach_the_csm_lane(catalog, case, text, reason, events):
    turn = say(catalog, case, S.OFFERED, text)
    assert (turn.escalation, turn.events) == (reason, events)
    if reason == EscalationReason.DISCOUNT:
        assert "cannot offer a discount" in turn.replies[0]  # never a discount


def test_stop_revokes_consent_in_any_state_with_one_confirmation(catalog, case):
    for state in (S.OFFERED, S.UPGRADED, S.DECLINED, None):
        turn = say(catalog, case, state, "STOP")
        assert turn.consent == "revoke" and len(turn.replies) == 1
        assert "START" in turn.replies[0]


def test_help_names_the_business_support_stop_and_rates(catalog, case):
    text = say(catalog, case, S.OFFERED, "HELP").replies[0]
    for part in ("Acme Billing", "help@acme.example", "STOP", "Msg & data rates may apply"):
        assert part in text


def test_a_message_before_the_opening_went_out_gets_the_opening_first(catalog, case):
    turn = say(catalog, case, S.OPEN, "how much?")
    assert turn.events == (E.OFFER_SENT,) and len(turn.replies) == 2
    assert "$529.00" in turn.replies[0] and "Growth is $499.00 a month" in turn.replies[1]
    turn = say(catalog, case, S.OPEN, "what do I get?")
    assert turn.events == (E.OFFER_SENT,) and len(turn.replies) == 2
    assert "$529.00" in turn.replies[0] and "includes" in turn.replies[1]


def test_without_a_thread_the_buyer_hears_there_is_no_offer(catalog):
    assert "no plan change" in reply(None, Intent.AFFIRM, "yes", None, catalog, BIZ).replies[0]


def test_an_upgraded_thread_answers_a_second_confirmation_coherently(catalog, case):
    turn = say(catalog, case, S.UPGRADED, "confirm")
    assert "already made" in turn.replies[0] and not turn.run_upgrade and turn.events == ()


def test_an_offer_unanswered_for_14_days_is_expired():
    assert is_expired(S.OFFERED, NOW - timedelta(days=14), NOW)
    assert not is_expired(S.OFFERED, NOW - timedelta(days=13, hours=23), NOW)
    assert not is_expired(S.UPGRADED, NOW - timedelta(days=40), NOW)


def test_a_yes_while_opted_out_waits_for_start_whatever_the_threads_state(catalog, case):
    for state in (S.OFFERED, S.AWAITING_CONFIRMATION, S.DECLINED, S.EXPIRED, S.OPTED_OUT):
        turn = reply(state, classify("yes"), "yes", case, catalog, BIZ, opted_out=True)
        assert turn.events == () and not turn.run_upgrade, state
        if state == S.OPTED_OUT:  # the STOP closed this offer: START alone will not reopen it
            assert "then YES" not in turn.replies[0] and "PERSON" in turn.replies[0]
        else:
            assert turn.replies == ("You have opted out of these messages. Reply START to "
                                    "subscribe again, then YES.",)
    # Questions are still answered.
    assert "$105.00" in reply(S.DECLINED, classify("what would I be charged today?"),
                              "what would I be charged today?", case, catalog, BIZ,
                              opted_out=True).replies[0]


def test_after_start_a_yes_on_a_thread_closed_by_the_opt_out_points_to_a_person(catalog, case):
    turn = reply(S.OPTED_OUT, classify("yes"), "yes", case, catalog, BIZ, opted_out=False)
    assert turn.events == () and not turn.run_upgrade
    assert "closed when you opted out" in turn.replies[0] and "PERSON" in turn.replies[0]


@pytest.mark.parametrize("text, amount", [("yes for 60 bucks", "$60.00"), ("yes for $60", "$60.00"),
                                          ("ok for 399", "$399.00"),
                                          ("yeah at three ninety nine a month", "$399.00")])
def test_a_price_we_did_not_show_is_corrected_never_escalated_at_the_confirmation_step(
        catalog, case, text, amount):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, text)
    assert turn.events == () and turn.escalation is None and not turn.run_upgrade
    assert f"Growth is $499.00 a month and $105.00 today, not {amount}" in turn.replies[0]
    assert "nothing has been charged" in turn.replies[0]


@pytest.mark.parametrize("text", ["yes for 2 months", "ok for 3 seats", "yes, for 10 minutes"])
def test_a_count_or_a_time_after_for_is_no_price(catalog, case, text):
    from core.conversation import other_amount_named
    assert other_amount_named(text, case) is None


@pytest.mark.parametrize("text", ["how much did you charge me", "what did I just pay",
                                  "was I charged?"])
def test_what_was_charged_is_said_in_every_state(catalog, case, text):
    for state in (S.OFFERED, S.AWAITING_CONFIRMATION, S.ESCALATED, S.DECLINED):
        assert say(catalog, case, state, text).replies[0].startswith("Nothing has been charged")
    done = reply(S.UPGRADED, classify(text), text, case, catalog, BIZ, charged=True)
    assert done.replies[0].startswith("You were charged $105.00")


@pytest.mark.parametrize("text", ["yes, 4,800 messages is about right",
                                  "yes, the $350 difference is fine",
                                  "yes, move us off the $149 plan", "yes move us off starter",
                                  "yes, move us to starter", "yes in a month", "yes 399",
                                  "yes, starter works"])
def test_a_yes_with_more_than_politeness_and_the_figures_in_their_roles_gets_the_step_again(
        catalog, case, text):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, text)
    assert not turn.run_upgrade and E.CONFIRM not in turn.events  # "starter works": a no


@pytest.mark.parametrize("text", ["too expensive. confirm", "keep us on starter. confirm",
                                  "wrong account. confirm", "my boss will decide tomorrow. confirm",
                                  "charge me 399. confirm", "yes at $149 a month",
                                  "I confirm growth at $105 a month", "yes $350 a month"])
def test_a_confirm_beside_a_no_a_doubt_or_a_figure_in_the_wrong_role_charges_nothing(
        catalog, case, text):
    turn = say(catalog, case, S.AWAITING_CONFIRMATION, text)
    assert not turn.run_upgrade and turn.events in ((), (E.DECLINE,), (E.ESCALATE,))
