"""What the bot does, state by state (§6): docs/conversation.md as data, checked cell by cell.

Each cell is one thread state (or no thread) and one reading of a buyer's message, sent through
`reply` the way core.handlers calls it: `reply(state, understand(text), text, case, catalog,
business, opted_out=False, charged=...)`. A cell states the events (the state after), whether the
plan change runs, the decline reason recorded, the escalation opened, the consent change, whether
the CSM is told, and a fragment of the reply that tells it apart from the other cells.
The duplicate (a provider retry of the same message id) is the handler's, not `reply`'s: it has a
test of its own below.
"""

from __future__ import annotations

import dataclasses
import re

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.case import AccountTerms, current_case
from core.conversation import (Business, EscalationReason, ThreadEvent, ThreadState,
                               other_amount_named, other_plan_named, reply, transition)
from channels.twilio_messaging import SMS
from core.channels import Channels
from core.handlers import Settings, Inbound, handle_inbound
from core.framing import opening_message
from core.intents import DeclineReason, Intent, Understanding, normalised, understand
from core.usage import UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
BIZ = Business("Acme Billing", "help@acme.example")
S, E = ThreadState, ThreadEvent
R, X = DeclineReason, EscalationReason
STATES: list[ThreadState | None] = [None, *ThreadState]


@pytest.fixture(scope="module")
def up_case(catalog):
    """Starter -> Growth: $499.00 a month, $105.00 today (9 of 30 days, until Dec 5)."""
    terms = AccountTerms("starter", "generic", "America/Chicago", 5, NOW - timedelta(days=400))
    case = current_case(catalog, terms, UsageMatrix(messages=4800, seats=3), NOW)
    assert (case.direction, case.target.name) == ("up", "growth")
    return case


@pytest.fixture(scope="module")
def down_case(catalog):
    """Growth -> Starter: $149.00 a month ($339.00 at their usage), from Dec 1, nothing today."""
    terms = AccountTerms("growth", "generic", "America/Chicago", 1, NOW - timedelta(days=400))
    usage = UsageMatrix(messages=2100, seats=5, integrations=1, integrations_window_max=1)
    case = current_case(catalog, terms, usage, NOW)
    assert (case.direction, case.target.name) == ("down", "starter")
    return case


def answer(state, text, case, catalog, *, opted_out=False, heard=None):
    """`reply` as core.handlers._answer calls it (no model: the rules' reading)."""
    return reply(state, heard or understand(text), text, case if state is not None else None,
                 catalog, BIZ, opted_out=opted_out, charged=state == S.UPGRADED)


# --- the readings ---------------------------------------------------------------------------
# name -> (a representative text, what `understand` must make of it)

@dataclass(frozen=True)
class Reading:
    text: str
    intent: Intent
    hold: bool = False
    explicit: bool = False
    asks_if_bot: bool = False
    thanks: bool = False
    reason: DeclineReason | None = None


READINGS = {
    "affirm": Reading("yes", Intent.AFFIRM, explicit=True),
    "acknowledgement": Reading("ok", Intent.AFFIRM),  # a yes that is not explicit
    "confirm": Reading("confirm", Intent.CONFIRM, explicit=True),
    "hold": Reading("let me ask my wife first", Intent.UNKNOWN, hold=True),
    "decline": Reading("no", Intent.DECLINE, reason=R.OTHER),
    "decline_with_reason": Reading("no, too expensive", Intent.DECLINE, reason=R.PRICE),
    "decline_leaving": Reading("no, we're switching to another tool", Intent.DECLINE,
                               reason=R.LEAVING),
    "question_price": Reading("how much is it?", Intent.QUESTION_PRICE),
    "question_features": Reading("what do I get?", Intent.QUESTION_FEATURES),
    "question_proration": Reading("what's charged today?", Intent.QUESTION_PRORATION),
    "question_downgrade": Reading("can I downgrade later?", Intent.QUESTION_DOWNGRADE),
    "human": Reading("can I talk to a person?", Intent.HUMAN),
    "discount": Reading("any discount?", Intent.DISCOUNT),
    "callback": Reading("call me", Intent.CALLBACK),
    "stop": Reading("STOP", Intent.STOP),
    "start": Reading("START", Intent.START),
    "help": Reading("HELP", Intent.HELP),
    "bot": Reading("are you a bot?", Intent.HUMAN, asks_if_bot=True),
    "thanks": Reading("thanks!", Intent.UNKNOWN, thanks=True),
    "unknown": Reading("what is the weather like?", Intent.UNKNOWN),
}


# --- the cells ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    events: tuple[ThreadEvent, ...]
    says: str  # a fragment of the last reply
    run_upgrade: bool = False
    decline_reason: DeclineReason | None = None
    escalation: EscalationReason | None = None
    consent: str | None = None
    notify_csm: bool = False


NONE: tuple[ThreadEvent, ...] = ()
OPENING = (E.OFFER_SENT,)  # the buyer wrote before the opening went out: the case comes first

# What the bot says (up-tier: Starter -> Growth).
NO_OFFER = ("There is no plan change on the table for your account right now. For anything "
            "else about your account: help@acme.example.")
NO_OFFER_WRITE = ("There is no plan change on the table for your account right now. For "
                  "anything about your account, write to help@acme.example.")
STEP = ("To confirm: Growth at $499.00 a month, and $105.00 charged today for the rest of this "
        "billing period (until Dec 5). Reply CONFIRM to upgrade.")
DONE = "Done: you are on Growth now. $105.00 is charged today; from Dec 5 it is $499.00 a month."
STEP_AGAIN = "Nothing is charged yet. To confirm: Growth at $499.00 a month"
ASK_WHY = "Understood, no change. May I ask why: the price, the timing, or you do not need it?"
NOT_AGAIN = "Understood, no change. We will not bring it up again for 30 days."
NO_CHANGE = "Understood, no change."
KEPT = "Thanks for telling me. We will not bring it up again for 30 days."
UNDO = ("Understood. Your change is already made; reply PERSON if you want your account "
        "manager to help undo it.")
LEAVING = "Sorry to hear that. I have asked your account manager to get in touch."
PRICE = ("Growth is $499.00 a month. Upgrading today charges $105.00 for the rest of this "
         "billing period. At your last 30 days of usage it would cost $499.00 against $529.00 "
         "on Starter: $30.00 less.")
FEATURES = ("Growth includes 10 seats, 10,000 messages a month and up to 10 integrations, plus "
            "workflows and API access.")
PRORATION = ("Nothing has been charged. Upgrading today charges $105.00: the $350.00 difference "
             "in base price for the 9 of 30 days left in this billing period (until Dec 5).")
CHARGED = ("You were charged $105.00 when you upgraded: the $350.00 difference in base price "
           "for the 9 of 30 days left in that billing period (until Dec 5).")
DOWNGRADE = ("No contract: plans are month to month. You can move back to Starter whenever you "
             "like; a move down takes effect at the start of your next billing period")
PERSON = "I have asked your account manager, a person, to get in touch with you."
HAS_IT = "Your account manager already has this conversation and will be in touch."
NO_DISCOUNT = ("I cannot offer a discount: the price is the same for everyone. I have passed "
               "your question to your account manager, who will be in touch.")
NO_DISCOUNT_AGAIN = ("I cannot offer a discount: the price is the same for everyone. I have "
                     "passed your question to your account manager. Meanwhile ask me anything, "
                     "or reply YES to upgrade to Growth at the list price.")
CALL = "Thanks, I have asked your account manager to call you."
STOPPED = ("You are unsubscribed from Acme Billing messages and will get no more. Reply START "
           "to subscribe again.")
STARTED = ("You are subscribed to Acme Billing messages again. Reply HELP for help, STOP to "
           "opt out.")
HELP_NO_OFFER = "Acme Billing here, writing about your account's plan. Ask me anything"
HELP = ("Acme Billing here, writing about an offer to upgrade your plan from Starter to Growth. "
        "Ask me anything, or reply STOP to opt out. Help: help@acme.example.")
BOT = ("I am an automated assistant for Acme Billing, not a person. Reply PERSON and your "
       "account manager will get in touch.")
IN_PLACE = ("Your change to Growth is already made; nothing more is charged today. From Dec 5 it "
            "is $499.00 a month.")
CLOSED = "That offer closed when you opted out."
PAUSE_AWAITING = ("Take your time: nothing changes unless you confirm. When you are ready, reply "
                  "CONFIRM to upgrade to Growth ($105.00 today and $499.00 a month).")

# Each state's options (the second half of a fallback, a pause or a thanks).
OPTIONS = {
    S.OFFERED: ("Reply YES to see what it takes to upgrade to Growth, NO if not now, PERSON for "
                "your account manager, or ask about the price, the features or today's charge."),
    S.AWAITING_CONFIRMATION: ("Nothing changes unless you confirm. Reply CONFIRM to upgrade to "
                              "Growth ($105.00 today, then $499.00 a month), or ask me anything."),
    S.UPGRADED: ("Your change to Growth is done. Ask me about it any time, or reply PERSON for "
                 "your account manager."),
    S.DECLINED: ("Nothing was changed. If you change your mind, reply YES to see the figures for "
                 "Growth again."),
    S.ESCALATED: ("Your account manager has this conversation and will be in touch. Meanwhile "
                  "ask me anything, or reply YES to upgrade to Growth at the list price."),
    S.EXPIRED: "That offer lapsed; reply YES to see the current figures for Growth.",
    # an opted_out thread of a contact who sent START since (`answer` passes opted_out=False)
    S.OPTED_OUT: ("That offer closed when you opted out. Your account manager can help you "
                  "change plans: reply PERSON to ask for them."),
}
WAIT = "Take your time: nothing changes unless you say so. "


def _thread_row(state, *, opening=False, hold_says, own):
    """A thread state's cells: `own` (the yes, decline, person, discount and STOP cells, which
    differ from state to state) and the ones whose shape every thread state shares."""
    first = OPENING if opening else NONE
    options = OPTIONS[S.OFFERED if state == S.OPEN else state]
    return {
        **own,
        "hold": Cell(first, hold_says),
        "question_price": Cell(first, CHARGED if state == S.UPGRADED else PRICE),
        "question_features": Cell(first, FEATURES),
        "question_proration": Cell(first, CHARGED if state == S.UPGRADED else PRORATION),
        "question_downgrade": Cell(first, DOWNGRADE),
        "callback": Cell(first, CALL, escalation=X.CALLBACK),
        "start": Cell(NONE, STARTED, consent="grant"),
        "help": Cell(NONE, HELP),
        "bot": Cell(NONE, BOT),
        "thanks": Cell(first, "You're welcome. " + options),
        "unknown": Cell(first, "Sorry, I did not catch that. " + options),
    }


TABLE: dict[tuple[ThreadState | None, str], Cell] = {}


def _state(state, cells):
    for reading, cell in cells.items():
        TABLE[(state, reading)] = cell


_state(None, {
    **{r: Cell(NONE, NO_OFFER) for r in (
        "affirm", "acknowledgement", "confirm", "hold", "decline", "decline_with_reason",
        "question_price", "question_features", "question_proration",
        "question_downgrade", "thanks", "unknown")},
    # no offer, but a request for a person (or a buyer who is leaving) still reaches one
    "human": Cell(NONE, PERSON, escalation=X.HUMAN),
    "discount": Cell(NONE, NO_DISCOUNT, escalation=X.DISCOUNT),
    "callback": Cell(NONE, CALL, escalation=X.CALLBACK),
    "decline_leaving": Cell(NONE, LEAVING, escalation=X.LEAVING),
    "stop": Cell(NONE, STOPPED, consent="revoke"),
    "start": Cell(NONE, STARTED, consent="grant"),
    "help": Cell(NONE, HELP_NO_OFFER),
    "bot": Cell(NONE, BOT),
})

_state(S.OPEN, _thread_row(S.OPEN, opening=True, hold_says=WAIT + OPTIONS[S.OFFERED], own={
    "affirm": Cell((E.OFFER_SENT, E.AFFIRM), STEP),
    "acknowledgement": Cell((E.OFFER_SENT, E.AFFIRM), STEP),
    "confirm": Cell((E.OFFER_SENT, E.AFFIRM), STEP),  # never straight to the upgrade
    "decline": Cell((E.OFFER_SENT, E.DECLINE), ASK_WHY, decline_reason=R.OTHER),
    "decline_with_reason": Cell((E.OFFER_SENT, E.DECLINE), NOT_AGAIN, decline_reason=R.PRICE),
    "decline_leaving": Cell((E.OFFER_SENT, E.ESCALATE), LEAVING, decline_reason=R.LEAVING,
                            escalation=X.LEAVING),
    "human": Cell((E.OFFER_SENT, E.ESCALATE), PERSON, escalation=X.HUMAN),
    "discount": Cell((E.OFFER_SENT, E.ESCALATE), NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell((E.OPT_OUT,), STOPPED, consent="revoke"),  # no opening to someone who stops
}))

_state(S.OFFERED, _thread_row(S.OFFERED, hold_says=WAIT + OPTIONS[S.OFFERED], own={
    "affirm": Cell((E.AFFIRM,), STEP),
    "acknowledgement": Cell((E.AFFIRM,), STEP),
    "confirm": Cell((E.AFFIRM,), STEP),
    "decline": Cell((E.DECLINE,), ASK_WHY, decline_reason=R.OTHER),
    "decline_with_reason": Cell((E.DECLINE,), NOT_AGAIN, decline_reason=R.PRICE),
    "decline_leaving": Cell((E.ESCALATE,), LEAVING, decline_reason=R.LEAVING,
                            escalation=X.LEAVING),
    "human": Cell((E.ESCALATE,), PERSON, escalation=X.HUMAN),
    "discount": Cell((E.ESCALATE,), NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell((E.OPT_OUT,), STOPPED, consent="revoke"),
}))

_state(S.AWAITING_CONFIRMATION, _thread_row(S.AWAITING_CONFIRMATION, hold_says=PAUSE_AWAITING,
                                            own={
    "affirm": Cell((E.CONFIRM,), DONE, run_upgrade=True),  # "yes" standing alone is explicit
    "acknowledgement": Cell(NONE, STEP_AGAIN),  # "ok" is not: the step again
    "confirm": Cell((E.CONFIRM,), DONE, run_upgrade=True),
    "decline": Cell((E.DECLINE,), ASK_WHY, decline_reason=R.OTHER),
    "decline_with_reason": Cell((E.DECLINE,), NOT_AGAIN, decline_reason=R.PRICE),
    "decline_leaving": Cell((E.ESCALATE,), LEAVING, decline_reason=R.LEAVING,
                            escalation=X.LEAVING),
    "human": Cell((E.ESCALATE,), PERSON, escalation=X.HUMAN),
    "discount": Cell((E.ESCALATE,), NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell((E.OPT_OUT,), STOPPED, consent="revoke"),
}))

_state(S.UPGRADED, _thread_row(S.UPGRADED, hold_says="Take your time. " + OPTIONS[S.UPGRADED],
                               own={
    "affirm": Cell(NONE, IN_PLACE),
    "acknowledgement": Cell(NONE, IN_PLACE),
    "confirm": Cell(NONE, IN_PLACE),
    "decline": Cell(NONE, UNDO),
    "decline_with_reason": Cell(NONE, UNDO),
    "decline_leaving": Cell(NONE, LEAVING, decline_reason=R.LEAVING, escalation=X.LEAVING),
    "human": Cell(NONE, PERSON, escalation=X.HUMAN),
    "discount": Cell(NONE, NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell(NONE, STOPPED, consent="revoke"),  # the thread keeps its outcome
}))

_state(S.DECLINED, _thread_row(S.DECLINED, hold_says=WAIT + OPTIONS[S.DECLINED], own={
    "affirm": Cell((E.AFFIRM,), STEP),  # "actually, yes": the step again
    "acknowledgement": Cell((E.AFFIRM,), STEP),
    "confirm": Cell((E.AFFIRM,), STEP),
    "decline": Cell(NONE, "Understood."),
    "decline_with_reason": Cell(NONE, KEPT, decline_reason=R.PRICE),  # a reason said later
    "decline_leaving": Cell(NONE, LEAVING, decline_reason=R.LEAVING, escalation=X.LEAVING),
    "human": Cell(NONE, PERSON, escalation=X.HUMAN),
    "discount": Cell(NONE, NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell(NONE, STOPPED, consent="revoke"),
}))

_state(S.ESCALATED, _thread_row(S.ESCALATED, hold_says=WAIT + OPTIONS[S.ESCALATED], own={
    "affirm": Cell((E.AFFIRM,), STEP, notify_csm=True),  # at list price; the CSM is told
    "acknowledgement": Cell((E.AFFIRM,), STEP, notify_csm=True),
    "confirm": Cell((E.AFFIRM,), STEP, notify_csm=True),
    # a no while a CSM has the thread: kept (the cooldown starts) and the CSM is told
    "decline": Cell(NONE, NOT_AGAIN, decline_reason=R.OTHER, notify_csm=True),
    "decline_with_reason": Cell(NONE, NOT_AGAIN, decline_reason=R.PRICE, notify_csm=True),
    "decline_leaving": Cell(NONE, LEAVING, decline_reason=R.LEAVING, escalation=X.LEAVING),
    "human": Cell(NONE, HAS_IT, escalation=X.HUMAN),
    "discount": Cell(NONE, NO_DISCOUNT_AGAIN, escalation=X.DISCOUNT),
    "stop": Cell(NONE, STOPPED, consent="revoke"),
}))

_state(S.EXPIRED, _thread_row(S.EXPIRED, hold_says=WAIT + OPTIONS[S.EXPIRED], own={
    "affirm": Cell((E.AFFIRM,), STEP),  # the step with today's figures
    "acknowledgement": Cell((E.AFFIRM,), STEP),
    "confirm": Cell((E.AFFIRM,), STEP),
    "decline": Cell(NONE, NO_CHANGE),
    "decline_with_reason": Cell(NONE, NO_CHANGE),
    "decline_leaving": Cell(NONE, LEAVING, decline_reason=R.LEAVING, escalation=X.LEAVING),
    "human": Cell(NONE, PERSON, escalation=X.HUMAN),
    "discount": Cell(NONE, NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell(NONE, STOPPED, consent="revoke"),
}))

_state(S.OPTED_OUT, _thread_row(S.OPTED_OUT, hold_says="Take your time. " + OPTIONS[S.OPTED_OUT],
                                own={
    "affirm": Cell(NONE, CLOSED + " Your account manager can help you change plans"),
    "acknowledgement": Cell(NONE, CLOSED),
    "confirm": Cell(NONE, CLOSED),
    "decline": Cell(NONE, NO_CHANGE),
    "decline_with_reason": Cell(NONE, NO_CHANGE),
    "decline_leaving": Cell(NONE, LEAVING, decline_reason=R.LEAVING, escalation=X.LEAVING),
    "human": Cell(NONE, PERSON, escalation=X.HUMAN),
    "discount": Cell(NONE, NO_DISCOUNT, escalation=X.DISCOUNT),
    "stop": Cell(NONE, STOPPED, consent="revoke"),
}))

# Cells whose words differ on a down-tier case (Growth -> Starter; takes effect Dec 1).
STEP_DOWN = ("To confirm: Starter at $149.00 a month ($339.00 at your current usage) from Dec 1, "
             "your next billing period; nothing is charged today. Starter does not include "
             "workflows or API access. Reply CONFIRM to switch.")
DONE_DOWN = ("Done: you move to Starter on Dec 1, at $149.00 a month ($339.00 at your current "
             "usage). Nothing is charged today.")
NOTHING_TODAY = ("Nothing is charged today: the change to Starter takes effect on Dec 1, at the "
                 "start of your next billing period.")
DOWN_TABLE: dict[tuple[ThreadState, str], Cell] = {
    (S.OPEN, "affirm"): Cell((E.OFFER_SENT, E.AFFIRM), STEP_DOWN),
    (S.OFFERED, "affirm"): Cell((E.AFFIRM,), STEP_DOWN),
    (S.OFFERED, "question_price"): Cell(NONE, (
        "Starter is $149.00 a month. Nothing is charged today: the change would start on Dec 1. "
        "At your last 30 days of usage it would cost $339.00 against $499.00 on Growth: "
        "$160.00 less.")),
    (S.OFFERED, "question_features"): Cell(NONE, (
        "Starter includes 3 seats and 1,000 messages a month. It does not include workflows or "
        "API access.")),
    (S.OFFERED, "question_proration"): Cell(NONE, NOTHING_TODAY),
    (S.OFFERED, "question_downgrade"): Cell(NONE, (
        "No contract: plans are month to month. You can move back up to Growth whenever you "
        "like; moving up is charged when you do it")),
    (S.OFFERED, "help"): Cell(NONE, ("Acme Billing here, writing about a suggestion to move "
                                     "your plan from Growth down to Starter, which costs less.")),
    (S.OFFERED, "unknown"): Cell(NONE, "Reply YES to see what it takes to move to Starter"),
    (S.AWAITING_CONFIRMATION, "affirm"): Cell((E.CONFIRM,), DONE_DOWN, run_upgrade=True),
    (S.AWAITING_CONFIRMATION, "confirm"): Cell((E.CONFIRM,), DONE_DOWN, run_upgrade=True),
    (S.AWAITING_CONFIRMATION, "acknowledgement"): Cell(NONE, "Nothing is charged yet. "
                                                       + STEP_DOWN),
    (S.AWAITING_CONFIRMATION, "hold"): Cell(NONE, (
        "Take your time: nothing changes unless you confirm. When you are ready, reply CONFIRM "
        "to move to Starter ($149.00 a month).")),
    (S.AWAITING_CONFIRMATION, "question_price"): Cell(NONE, "Starter is $149.00 a month."),
    (S.AWAITING_CONFIRMATION, "unknown"): Cell(NONE, (
        "Nothing changes unless you confirm. Reply CONFIRM to move to Starter ($149.00 a month)")),
    (S.UPGRADED, "affirm"): Cell(NONE, "Your move to Starter is already set for Dec 1"),
    (S.UPGRADED, "question_price"): Cell(NONE, (
        "Starter is $149.00 a month from Dec 1; nothing was charged.")),
    (S.UPGRADED, "question_proration"): Cell(NONE, (
        "Nothing was charged: the change to Starter takes effect on Dec 1")),
    (S.UPGRADED, "thanks"): Cell(NONE, "You're welcome. Your change to Starter is done."),
    (S.ESCALATED, "affirm"): Cell((E.AFFIRM,), STEP_DOWN, notify_csm=True),
    (S.ESCALATED, "discount"): Cell(NONE, "reply YES to move to Starter at the list price.",
                                    escalation=X.DISCOUNT),
    (S.EXPIRED, "question_downgrade"): Cell(NONE, "You can move back up to Growth"),
}


def _name(state) -> str:
    return "no_thread" if state is None else state.value


def _check(turn, cell, state, case, catalog):
    assert turn.events == cell.events
    assert turn.run_upgrade is cell.run_upgrade
    assert turn.decline_reason == cell.decline_reason
    assert turn.escalation == cell.escalation
    assert turn.consent == cell.consent
    assert turn.notify_csm is cell.notify_csm
    assert cell.says in turn.replies[-1], turn.replies
    if E.OFFER_SENT in cell.events:  # the opening first, then the answer
        assert turn.replies == (opening_message(case, catalog), turn.replies[-1])
    else:
        assert len(turn.replies) == 1
    after = state
    for event in turn.events:  # every move is a legal one (transition raises otherwise)
        after = transition(after, event)


# --- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(READINGS))
def test_each_representative_text_reads_as_its_reading(name):
    r = READINGS[name]
    u = understand(r.text)
    assert (u.intent, u.hold, u.explicit, u.asks_if_bot, u.thanks, u.reason, u.sure) == (
        r.intent, r.hold, r.explicit, r.asks_if_bot, r.thanks, r.reason, True), u


def test_every_state_and_every_intent_has_a_cell():
    assert {i.value for i in Intent} <= set(READINGS)  # the 14 intents, plus the other readings
    assert {"acknowledgement", "hold", "bot", "thanks"} <= set(READINGS)
    assert set(TABLE) == set(itertools.product(STATES, READINGS))
    assert len(TABLE) == 9 * len(READINGS)
    assert set(DOWN_TABLE) <= set(TABLE)


@pytest.mark.parametrize("state, name", sorted(TABLE, key=lambda k: (_name(k[0]), k[1])),
                         ids=lambda v: _name(v) if not isinstance(v, str) else v)
def test_each_cell_does_what_the_table_says(catalog, up_case, state, name):
    turn = answer(state, READINGS[name].text, up_case, catalog)
    _check(turn, TABLE[(state, name)], state, up_case, catalog)


@pytest.mark.parametrize("state, name", sorted(DOWN_TABLE, key=lambda k: (k[0].value, k[1])),
                         ids=lambda v: v.value if isinstance(v, ThreadState) else v)
def test_on_a_down_tier_case_the_cells_that_word_it_differently_say_so(
        catalog, down_case, state, name):
    turn = answer(state, READINGS[name].text, down_case, catalog)
    _check(turn, DOWN_TABLE[(state, name)], state, down_case, catalog)


@pytest.mark.parametrize("state", STATES, ids=_name)
@pytest.mark.parametrize("name", sorted(READINGS))
def test_an_opted_out_contact_on_a_phone_channel_gets_every_answer_but_no_yes(
        catalog, up_case, state, name):
    text = READINGS[name].text
    turn = answer(state, text, up_case, catalog, opted_out=True)
    usual = answer(state, text, up_case, catalog)
    if state in (None, S.UPGRADED) or name not in ("affirm", "acknowledgement", "confirm"):
        if state is None and turn.replies != usual.replies:  # no offer: START is the way back
            assert dataclasses.replace(turn, replies=()) == dataclasses.replace(usual, replies=())
            assert "opted out" in turn.replies[-1] and "START" in turn.replies[-1]
            return
        if state == S.OPTED_OUT or turn.replies != usual.replies:
            # the same effects; only the options (and HELP) differ: while consent is revoked
            # they say START
            assert dataclasses.replace(turn, replies=()) == dataclasses.replace(usual, replies=())
            if name == "help":
                assert "You have opted out: reply START" in turn.replies[-1]
            elif state != S.OPTED_OUT:
                assert "reply START to subscribe again, then YES" in turn.replies[-1]
            return
        assert turn == usual
        return
    assert not turn.run_upgrade and turn.events == (OPENING if state == S.OPEN else NONE)
    assert not (turn.notify_csm or turn.escalation or turn.consent or turn.decline_reason)
    if state == S.OPTED_OUT:  # the STOP closed this offer: START alone does not reopen it
        assert turn.replies[-1] == ("You have opted out of these messages. Reply START to "
                                    "subscribe again; your account manager can then help you "
                                    "change plans (reply PERSON).")
    else:
        assert turn.replies[-1] == ("You have opted out of these messages. Reply START to "
                                    "subscribe again, then YES.")


MOVABLE = [S.OPEN, S.OFFERED, S.AWAITING_CONFIRMATION, S.DECLINED, S.ESCALATED, S.EXPIRED]


@pytest.mark.parametrize("state", MOVABLE, ids=_name)
@pytest.mark.parametrize("text, says", [
    ("yes, put us on Scale", "This offer is for Growth at $499.00 a month, not Scale."),
    ("confirm the scale plan", "This offer is for Growth at $499.00 a month, not Scale."),
    ("yes at $399", "To be clear, Growth is $499.00 a month and $105.00 today, not $399.00"),
    ("confirm, $450 a month", "To be clear, Growth is $499.00 a month and $105.00 today, not "
                              "$450.00"),
    ("I'd upgrade for $399", "To be clear, Growth is $499.00 a month and $105.00 today, not "
                             "$399.00"),  # a counter-offer: corrected, not escalated
])
def test_a_yes_to_another_plan_or_amount_moves_nothing_in_any_state_a_yes_could_move(
        catalog, up_case, state, text, says):
    turn = answer(state, text, up_case, catalog)
    assert not (turn.run_upgrade or turn.notify_csm or turn.escalation or turn.decline_reason)
    assert turn.events == (OPENING if state == S.OPEN else NONE)
    assert turn.replies[-1].startswith(says)
    if "To be clear" in says:  # the way on is the one the state asks for
        how = "CONFIRM" if state == S.AWAITING_CONFIRMATION else "YES"
        assert f"Reply {how} to go ahead at $499.00 a month" in turn.replies[-1]


@pytest.mark.parametrize("state", STATES, ids=_name)
@pytest.mark.parametrize("intent", list(Intent), ids=str)
def test_an_unsure_reading_of_the_model_gets_the_states_options_not_an_action(
        catalog, up_case, state, intent):
    heard = Understanding(intent, confidence=0.7, sure=False)
    turn = answer(state, "zzz", up_case, catalog, heard=heard)
    assert not (turn.run_upgrade or turn.decline_reason or turn.escalation or turn.consent
                or turn.notify_csm)
    assert turn.events == (OPENING if state == S.OPEN and intent not in (
        Intent.STOP, Intent.HELP) else NONE)
    said = turn.replies[-1]
    if intent == Intent.STOP:
        assert said == ("Do you want to stop getting messages from Acme Billing? Reply STOP to "
                        "opt out.")
    elif intent == Intent.START:  # asked about only while consent is revoked: see below
        assert said.startswith("Sorry, I am not sure I follow.") or state is None
    elif intent == Intent.HELP:
        assert said.startswith("Acme Billing here")
    elif state is None:
        assert said.startswith("There is no plan change on the table")
    elif intent.value.startswith("question_"):  # a question is answered, whoever read it
        assert "Sorry" not in said
    else:
        options = OPTIONS[S.OFFERED if state == S.OPEN else state]
        assert said == "Sorry, I am not sure I follow. " + options


@pytest.mark.parametrize("text, human", [("are you a bot?", False),
                                         ("am I talking to a human?", False),
                                         ("are you a bot? I want a person", True)])
def test_are_you_a_bot_is_answered_truthfully_and_a_request_beside_it_still_escalates(
        catalog, up_case, text, human):
    turn = answer(S.OFFERED, text, up_case, catalog)
    if human:
        assert (turn.events, turn.escalation, turn.replies) == (
            (E.ESCALATE,), X.HUMAN, ("I am an automated assistant for Acme Billing, not a person.",
                                     PERSON))
    else:
        assert (turn.events, turn.escalation, turn.replies) == (NONE, None, (BOT,))


@pytest.mark.parametrize("state", STATES, ids=_name)
@pytest.mark.parametrize("intent", [Intent.STOP, Intent.START], ids=str)
def test_a_consent_change_the_model_is_far_from_sure_of_is_not_even_asked_about(
        catalog, up_case, state, intent):
    turn = answer(state, "zzz", up_case, catalog,
                  heard=Understanding(intent, confidence=0.4, sure=False))
    assert not turn.consent and "STOP" not in turn.replies[-1][:60]
    assert "START if you would like" not in turn.replies[-1]


@pytest.mark.parametrize("state", [S.OFFERED, S.DECLINED, S.OPTED_OUT], ids=_name)
def test_a_start_the_model_reads_is_asked_about_only_while_consent_is_revoked(
        catalog, up_case, state):
    heard = Understanding(Intent.START, confidence=0.7, sure=False)
    opted = answer(state, "zzz", up_case, catalog, opted_out=True, heard=heard)
    assert opted.replies[-1] == "Reply START if you would like to get these messages again."
    assert not opted.consent


# --- only an explicit confirmation completes the step ----------------------------------------

YES_WORDS = {"yes", "yess", "yep", "yup", "yeah", "yea", "ya", "yah", "yas", "si", "affirmative",
             "confirm", "confirmed", "confirming", "confirms"}


@pytest.mark.parametrize("text, says", [
    ("ok", "Nothing is charged yet. " + STEP),
    ("k", "Nothing is charged yet. " + STEP),
    ("👍", "Nothing is charged yet. " + STEP),
    ("sounds good", "Nothing is charged yet. " + STEP),
    ("ok thanks, will look at it tonight", PAUSE_AWAITING),
    ("ok lemme ask my wife", PAUSE_AWAITING),
    ("ok give me a day", PAUSE_AWAITING),
    ("yes but let me check", PAUSE_AWAITING),
    ("maybe", PAUSE_AWAITING),
])
def test_an_acknowledgement_or_a_hedge_at_the_confirmation_step_runs_nothing(
        catalog, up_case, text, says):
    turn = answer(S.AWAITING_CONFIRMATION, text, up_case, catalog)
    assert not turn.run_upgrade and turn.events == NONE
    assert turn.replies == (says,)


_WORDS = ["yes", "yeah", "ok", "k", "confirm", "confirmed", "sure", "please", "growth", "scale",
          "starter", "upgrade", "no", "not", "don't", "can't", "but", "maybe", "later", "let",
          "me", "lemme", "ask", "my", "wife", "boss", "check", "give", "a", "day", "tonight",
          "think", "$499", "$399", "$105", "at", "for", "a month", "?", "!", ",", ".", "👍",
          "thanks", "sounds", "good", "go", "ahead", "do", "it", "yet", "call", "person",
          "stop", "how much", "today", "charge", "the", "card", "we", "i", "k thx"]
_TEXTS = st.one_of(st.text(max_size=80),
                   st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8).map(" ".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS)
def test_no_text_but_an_explicit_confirmation_runs_the_upgrade_from_awaiting_confirmation(
        catalog, up_case, text):
    turn = answer(S.AWAITING_CONFIRMATION, text, up_case, catalog)
    if not turn.run_upgrade:
        assert E.CONFIRM not in turn.events
        return
    # An explicit confirmation: a statement with a yes-word or the confirm word, read as
    # confirm or as a yes standing alone, no pause in it, no other plan, no amount not shown.
    u = understand(text)
    words, question = normalised(text)
    assert turn.events == (E.CONFIRM,) and turn.replies == (DONE,)
    # (a yes that also names the offered plan, "yes, growth please", is explicit too)
    without_plan = re.sub(r"(?i)\bgrowth\b", " ", text)
    assert u.intent == Intent.CONFIRM or (u.intent == Intent.AFFIRM and (
        u.explicit or understand(without_plan).explicit)), u
    assert u.sure and not u.hold and not question
    assert YES_WORDS & set(words), words
    assert other_plan_named(text, up_case, catalog) is None
    assert other_amount_named(text, up_case) is None


@pytest.fixture(scope="module")
def shipped_model():
    from app import load_intent_model
    return load_intent_model()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS)
def test_with_the_shipped_model_too_only_an_explicit_confirmation_runs_the_upgrade(
        catalog, up_case, shipped_model, text):
    heard = understand(text, shipped_model)
    turn = answer(S.AWAITING_CONFIRMATION, text, up_case, catalog, heard=heard)
    if turn.run_upgrade:  # the model may read more, but only an explicit, sure yes charges
        words, question = normalised(text)
        assert heard.sure and not heard.hold and not question, heard
        without_plan = re.sub(r"(?i)\bgrowth\b", " ", text)  # "yes, growth please"
        assert heard.intent == Intent.CONFIRM or (heard.intent == Intent.AFFIRM and (
            heard.explicit or understand(without_plan).explicit))
        assert set(words) & {"yes", "yess", "yep", "yup", "yeah", "yea", "ya", "yah", "yas",
                             "si", "affirmative", "confirm", "confirmed", "confirming",
                             "confirms"}, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS, state=st.sampled_from([s for s in STATES if s != S.AWAITING_CONFIRMATION]))
def test_no_text_runs_the_upgrade_from_any_other_state(catalog, up_case, text, state):
    turn = answer(state, text, up_case, catalog)
    assert not turn.run_upgrade and E.CONFIRM not in turn.events


# --- the duplicate: the handler's, before any reading ------------------------------------------

class _Strict:
    """A port that allows only the calls named; anything else fails the test."""

    def __init__(self, calls: list, **allowed) -> None:
        self._calls, self._allowed = calls, allowed

    def __getattr__(self, name):
        if name not in self._allowed:
            raise AssertionError(f"a duplicate must not call {name}")
        def call(*args):
            self._calls.append((name, *args))
            return self._allowed[name](*args)
        return call


class _DuplicateUow:
    def __init__(self, first_replies: tuple[str, ...]) -> None:
        self.calls: list = []
        contact = SimpleNamespace(id=7, account_id=3, external_id="c-7")
        seen = SimpleNamespace(id=41, thread_id=9)
        # The earlier delivery is read with the sender, under the account's lock (one read).
        self.contacts = _Strict(self.calls, contact=lambda _external: contact,
                                contact_and_delivery=lambda _id, _channel, _provider:
                                (contact, seen))
        self.messages = _Strict(
            self.calls, replies_to=lambda _id: [SimpleNamespace(body=b) for b in first_replies])
        self.accounts = _Strict(self.calls, lock=lambda _account: None)
        self.commits = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def commit(self) -> None:
        self.commits += 1


@pytest.mark.parametrize("text", ["confirm", "yes", "no", "STOP", "START",
                                  "can I talk to a person?"])
def test_a_provider_retry_of_the_same_message_id_gets_the_first_replies_and_changes_nothing(
        catalog, text):
    first = (DONE,)
    uow = _DuplicateUow(first)
    got = handle_inbound(uow, catalog, Settings(channels=Channels([SMS])),
                         Inbound("sms", text, "SM-1", contact="c-7"), NOW)
    assert (got.replies, got.thread_id, got.state, got.duplicate) == (first, 9, None, True)
    # Nothing is read beyond the earlier delivery (not the thread, so not its state) and
    # nothing is written: no message, no event, no consent, no escalation.
    assert [c[0] for c in uow.calls] == ["contact", "lock", "contact_and_delivery", "replies_to"]
