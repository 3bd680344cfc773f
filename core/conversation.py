"""The conversation: thread states and their legal transitions (§6), and what the bot says.

`transition` is the one place a thread's state changes; the table below lists every legal move
and anything else raises `IllegalTransition`. `reply` turns a buyer's message (already classified)
into a `Turn`: the texts to send, the event to apply and the side effects for the service layer to
carry out (run the upgrade, record a decline, open an escalation, change consent). It is pure; the
figures come from the case, the words from the vertical.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Any, Protocol
from datetime import date, datetime, timedelta
from decimal import Decimal

from core.case import Case
from core.channels import Capabilities
from core.catalog import Catalog
from core.errors import DomainError
from core.copy import KEYWORDS, Wording, wording
from core.framing import join_words, opening_message
from core.intents import (DeclineReason, Intent, Understanding, decline_reason, understand,
                          with_spoken_numbers)
from core.money import dollars


class ThreadState(enum.StrEnum):
    OPEN = "open"  # created; the opening not sent yet (quiet hours, or waiting for a web visit)
    OFFERED = "offered"  # the case was sent
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    UPGRADED = "upgraded"
    DECLINED = "declined"
    ESCALATED = "escalated"
    EXPIRED = "expired"  # no answer in 14 days
    OPTED_OUT = "opted_out"


class ThreadEvent(enum.StrEnum):
    OFFER_SENT = "offer_sent"
    AFFIRM = "affirm"
    CONFIRM = "confirm"
    DECLINE = "decline"
    ESCALATE = "escalate"
    EXPIRE = "expire"
    OPT_OUT = "opt_out"


class EscalationReason(enum.StrEnum):
    HEALTH = "health"
    LEAVING = "leaving"
    HUMAN = "human"
    DISCOUNT = "discount"
    CALLBACK = "callback"


S, E = ThreadState, ThreadEvent
LIVE = frozenset({S.OPEN, S.OFFERED, S.AWAITING_CONFIRMATION})
EXPIRES_AFTER = timedelta(days=14)

# Every legal move. A buyer who declined, or let the offer expire, may still say yes later: that
# reopens the confirmation step (business-initiated prompts stay bound by the cooldown).
TRANSITIONS: dict[tuple[ThreadState, ThreadEvent], ThreadState] = {
    (S.OPEN, E.OFFER_SENT): S.OFFERED,
    (S.OPEN, E.ESCALATE): S.ESCALATED,
    (S.OPEN, E.EXPIRE): S.EXPIRED,
    (S.OPEN, E.OPT_OUT): S.OPTED_OUT,
    (S.OFFERED, E.AFFIRM): S.AWAITING_CONFIRMATION,
    (S.OFFERED, E.DECLINE): S.DECLINED,
    (S.OFFERED, E.ESCALATE): S.ESCALATED,
    (S.OFFERED, E.EXPIRE): S.EXPIRED,
    (S.OFFERED, E.OPT_OUT): S.OPTED_OUT,
    (S.AWAITING_CONFIRMATION, E.CONFIRM): S.UPGRADED,
    (S.AWAITING_CONFIRMATION, E.DECLINE): S.DECLINED,
    (S.AWAITING_CONFIRMATION, E.ESCALATE): S.ESCALATED,
    (S.AWAITING_CONFIRMATION, E.EXPIRE): S.EXPIRED,
    (S.AWAITING_CONFIRMATION, E.OPT_OUT): S.OPTED_OUT,
    (S.DECLINED, E.AFFIRM): S.AWAITING_CONFIRMATION,
    # A buyer whose thread is with a CSM may still go ahead at the list price (the CSM is told).
    (S.ESCALATED, E.AFFIRM): S.AWAITING_CONFIRMATION,
    (S.EXPIRED, E.AFFIRM): S.AWAITING_CONFIRMATION,
}
# A finished thread keeps its outcome when the buyer opts out later: consent is the contact's
# (recorded on every channel at once), not the thread's.


class IllegalTransition(DomainError):
    code = "illegal_transition"


def transition(state: ThreadState, event: ThreadEvent) -> ThreadState:
    """The state after `event`, or `IllegalTransition` when the table has no such move."""
    try:
        return TRANSITIONS[(ThreadState(state), ThreadEvent(event))]
    except KeyError:
        raise IllegalTransition(f"a thread in state {state} cannot take event {event}") from None


@dataclass(frozen=True)
class Business:
    """Who the messages come from, for HELP and opt-out replies (carrier norms)."""

    name: str = "Upgrade Chat"
    support: str = "support@example.com"


@dataclass(frozen=True)
class Turn:
    """What to do about one inbound message."""

    replies: tuple[str, ...] = ()
    events: tuple[ThreadEvent, ...] = ()
    run_upgrade: bool = False
    decline_reason: DeclineReason | None = None
    escalation: EscalationReason | None = None
    consent: str | None = None  # "revoke" | "grant"
    notify_csm: bool = False  # tell the CSM of the thread's open escalation what the buyer did


def _plan(name: str) -> str:
    return name.capitalize()


def _opted_out_yes(w: Wording) -> str:
    return (f"You have opted out of these messages. {w.Do('START')} to subscribe again, then "
            f"{w.then('YES')}.")


def _opted_out_closed(w: Wording) -> str:
    return (f"You have opted out of these messages. {w.Do('START')} to subscribe again; your "
            f"account manager can then help you change plans ({w.do('PERSON')}).")


def other_plan_named(text: str, case: Case, catalog: Catalog) -> str | None:
    """A plan the buyer names that this thread does not offer ("confirm the scale plan" in a
    thread about Growth), unless they name the offered plan too; None otherwise. A yes that
    names another plan must not run the offered change."""
    words = set(re.findall(r"[a-z0-9_]+", text.lower()))
    if case.target.name.lower() in words:
        return None
    for plan in catalog.plans.values():
        name = plan.name.lower()
        if name in words and name not in (case.target.name.lower(), case.current.name.lower()):
            return plan.name
    return None


_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(k?)"
# A dollar amount: "$399", "USD 399", "399$", "399 dollars", "399 usd", "399/mo", "399 a month",
# or a bare number after "at" ("yes at 399"; not a time: "at 9", "at 10am", "at 3:30").
_AMOUNTS = (
    re.compile(r"(?:\$|\busd\s*)\s*" + _NUMBER, re.IGNORECASE),
    re.compile(r"\b" + _NUMBER + r"\s*(?:\$|dollars?\b|bucks?\b|usd\b|/\s*mo\b|a month\b|"
               r"per month\b)", re.IGNORECASE),
    re.compile(r"\bat\s+" + _NUMBER + r"(?![\d:.]|\s*(?:am|pm|h\b|o'?clock))", re.IGNORECASE),
    # a yes "for 60": a price, unless a time or a count follows ("for 2 months", "for 3 seats")
    re.compile(r"\b(?:yes|yeah|yep|sure|ok|okay|confirm\w*|upgrade|deal)\b[^.?!]{0,20}?\bfor\s+"
               + _NUMBER + r"(?![\d:.]|\s*(?:am|pm|h\b|o'?clock|days?|weeks?|months?|years?|"
               r"seats?|users?|people|agents?|chairs?|stylists?|reps?|techs?|technicians?|"
               r"locations?|minutes?|mins?|hours?|hrs?))", re.IGNORECASE),
)


_MONTHLY = re.compile(r"\$?\s*" + _NUMBER + r"\s*(?:dollars?\s*|usd\s*|bucks?\s*)?"
                      r"(?:a month|per month|/\s*mo(?:nth)?\b|monthly|a mo\b)", re.IGNORECASE)
_TODAY = re.compile(r"\$?\s*" + _NUMBER + r"\s*(?:dollars?\s*|usd\s*|bucks?\s*)?"
                    r"(?:today|now|upfront|up front)\b", re.IGNORECASE)


def _amount(whole: str, cents: str, thousands: str) -> Decimal:
    amount = Decimal(f"{whole.replace(',', '')}.{(cents or '0').ljust(2, '0')}")
    return amount * 1000 if thousands else amount


def other_amount_named(text: str, case: Case) -> Decimal | None:
    """A dollar amount in a yes that is none of the figures the buyer was shown (the plan's
    price, the cost at their usage, today's charge, the difference): "yes at $399" must not run
    the change at $499. None when every amount is one of them, or there is none."""
    shown = {case.target.base_price, case.current.base_price, case.cost_target.total,
             case.cost_current.total, case.prorated_charge_today, abs(case.monthly_difference),
             abs(case.proration.base_difference)}
    spoken = with_spoken_numbers(text)
    sources = (text,) if spoken == text else (text, spoken)
    # A figure in the wrong role is no agreement: "$105 a month" (today's charge as the price),
    # "$149 a month" (the current plan's price as the new one).
    roles = [(_MONTHLY, {case.target.base_price, case.cost_target.total})]
    if case.direction == "up":
        roles.append((_TODAY, {case.prorated_charge_today}))
    for pattern, allowed in roles:
        for whole, cents, thousands in (m for source in sources for m in pattern.findall(source)):
            amount = _amount(whole, cents, thousands)
            if amount not in allowed:
                return amount
    for pattern in _AMOUNTS:
        for whole, cents, thousands in (m for source in sources for m in pattern.findall(source)):
            amount = _amount(whole, cents, thousands)
            if (pattern in (_AMOUNTS[2], _AMOUNTS[3]) and amount < 20) or amount in shown:
                continue  # "at 9": more likely a time than a price
            return amount
    return None


def wrong_amount_answer(case: Case, amount: Decimal,
                        state: ThreadState | None = None, w: Wording = KEYWORDS) -> str:
    """A price the buyer named that is not ours, corrected with the real figures."""
    target = _plan(case.target.name)
    today = (f" and {dollars(case.prorated_charge_today)} today"
             if case.direction == "up" else "")
    word = "CONFIRM" if state == S.AWAITING_CONFIRMATION else "YES"
    how = f"{w.Do(word)} to go ahead at {dollars(case.target.base_price)} a month"
    return (f"To be clear, {target} is {dollars(case.target.base_price)} a month{today}, not "
            f"{dollars(amount)}; the price is the same for everyone and nothing has been "
            f"charged. {how}, or {w.then('PERSON')} to talk to your account manager.")


def wrong_plan_answer(case: Case, named: str, state: ThreadState | None = None,
                      w: Wording = KEYWORDS) -> str:
    target = _plan(case.target.name)
    if state != S.AWAITING_CONFIRMATION:
        how = f"{w.Do('YES')} to go ahead with {target}"
    elif case.direction == "up":
        how = (f"{w.Do('CONFIRM')} to upgrade to {target} "
               f"({dollars(case.prorated_charge_today)} today)")
    else:
        how = f"{w.Do('CONFIRM')} to go ahead with {target}"
    return (f"This offer is for {target} at {dollars(case.target.base_price)} a month, not "
            f"{_plan(named)}. {how}, or ask for a person to talk about {_plan(named)}.")


def _day(d: date) -> str:
    return f"{d:%b} {d.day}"


def _at_usage(case: Case) -> str:
    """The note "($339.00 at your current usage)" when the target's cost at the buyer's usage is
    not its base price; the step and the "Done" say the same."""
    at_usage = case.cost_target.total
    return "" if at_usage == case.target.base_price else \
        f" ({dollars(at_usage)} at your current usage)"


def confirmation_step(case: Case, catalog: Catalog | None = None,
                      w: Wording = KEYWORDS) -> str:
    """Names the plan, the new monthly price and the charge today; asks for an explicit yes.
    A move down also says what the lower plan does not include (with the catalog's names)."""
    target = _plan(case.target.name)
    price = dollars(case.target.base_price)
    usage_note = _at_usage(case)
    if case.direction == "up":
        return (f"To confirm: {target} at {price} a month{usage_note}, and "
                f"{dollars(case.prorated_charge_today)} charged today for the rest of this billing "
                f"period (until {_day(case.proration.period_end)}). {w.Do('CONFIRM')} to upgrade.")
    lost = [catalog.feature_name(f, case.vertical) for f in case.gives_up] if catalog else []
    lacks = f" {target} does not include {join_words(lost, 'or')}." if lost else ""
    return (f"To confirm: {target} at {price} a month{usage_note} from "
            f"{_day(case.effective)}, your next billing period; nothing is charged today.{lacks} "
            f"{w.Do('CONFIRM')} to switch.")


def upgraded_message(case: Case) -> str:
    target = _plan(case.target.name)
    if case.direction == "up":
        return (f"Done: you are on {target} now. {dollars(case.prorated_charge_today)} is charged "
                f"today; from {_day(case.proration.period_end)} it is "
                f"{dollars(case.target.base_price)} a month.")
    usage_note = _at_usage(case)
    return (f"Done: you move to {target} on {_day(case.effective)}, at "
            f"{dollars(case.target.base_price)} a month{usage_note}. Nothing is charged today.")


def already_changed_message(case: Case) -> str:
    target = _plan(case.target.name)
    if case.direction == "up":
        return (f"Your change to {target} is already made; nothing more is charged today. From "
                f"{_day(case.proration.period_end)} it is {dollars(case.target.base_price)} a "
                f"month.")
    return (f"Your move to {target} is already set for {_day(case.effective)}, at "
            f"{dollars(case.target.base_price)} a month; nothing is charged today.")


def period_taken_message(case: Case) -> str:
    """Another plan change already holds this billing period."""
    return (f"Your plan has already changed this billing period, so this offer cannot be taken "
            f"now; a further change is possible from {_day(case.proration.period_end)}.")


def figures_changed_message(case: Case, catalog: Catalog | None = None,
                            w: Wording = KEYWORDS) -> str:
    return "The figures have changed since I asked. " + confirmation_step(case, catalog, w)


def offer_withdrawn_message(plan: str) -> str:
    return f"Your account is on {_plan(plan)} now, so this offer no longer applies."


def _charge_today(case: Case) -> str:
    return dollars(case.prorated_charge_today)


def price_answer(case: Case) -> str:
    """The plan's price, what moving today charges, and the comparison at the buyer's usage
    (a saving only when there is one)."""
    current, target = _plan(case.current.name), _plan(case.target.name)
    now_cost, new_cost = dollars(case.cost_current.total), dollars(case.cost_target.total)
    if case.claims_saving:
        tail = f"{dollars(case.monthly_difference)} less."
    elif case.monthly_difference == 0:
        tail = "the same."
    else:
        tail = f"{dollars(-case.monthly_difference)} more."
    today = (f" Upgrading today charges {_charge_today(case)} for the rest of this billing "
             f"period." if case.direction == "up" else
             f" Nothing is charged today: the change would start on {_day(case.effective)}.")
    return (f"{target} is {dollars(case.target.base_price)} a month.{today} At your last 30 days "
            f"of usage it would cost {new_cost} against {now_cost} on {current}: {tail}")


def features_answer(case: Case, catalog: Catalog) -> str:
    v = case.vertical
    target = _plan(case.target.name)
    if case.direction == "down":
        lost = [catalog.feature_name(f, v) for f in case.gives_up]
        keeps = f" It does not include {join_words(lost, 'or')}." if lost else ""
        return (f"{target} includes {case.target.included_seats} {v.seats} and "
                f"{case.target.included_messages:,} {v.messages} a month.{keeps}")
    gains = [catalog.feature_name(f, v) for f in case.unlocks.features]
    limit = case.target.max_integrations
    integrations = "unlimited" if limit is None else f"up to {limit}"
    extra = f", plus {join_words(gains)}" if gains else ""
    return (f"{target} includes {case.target.included_seats} {v.seats}, "
            f"{case.target.included_messages:,} {v.messages} a month and {integrations} "
            f"{v.integrations}{extra}.")


def proration_answer(case: Case, charged: bool = False) -> str:
    """Today's charge and how it is worked out; `charged`: the change was made (what was paid)."""
    p = case.proration
    if case.direction == "down":
        lead = "Nothing was charged" if charged else "Nothing is charged today"
        return (f"{lead}: the change to {_plan(case.target.name)} takes effect "
                f"on {_day(case.effective)}, at the start of your next billing period.")
    if charged:
        return (f"You were charged {_charge_today(case)} when you upgraded: the "
                f"{dollars(p.base_difference)} difference in base price for the "
                f"{p.days_remaining} of {p.days_in_period} days left in that billing period "
                f"(until {_day(p.period_end)}). From then it is "
                f"{dollars(case.target.base_price)} a month.")
    return (f"Nothing has been charged. Upgrading today charges {_charge_today(case)}: the "
            f"{dollars(p.base_difference)} difference in base price for the {p.days_remaining} of "
            f"{p.days_in_period} days left in this billing period (until {_day(p.period_end)}). "
            f"After that it is {dollars(case.target.base_price)} a month.")


def downgrade_answer(case: Case) -> str:
    """Contracts and moving back: month to month, in whichever direction the thread is about."""
    if case.direction == "down":
        higher = _plan(case.current.name)
        return (f"No contract: plans are month to month. You can move back up to {higher} "
                f"whenever you like; moving up is charged when you do it (the difference in base "
                f"price for the rest of that billing period), then it is "
                f"{dollars(case.current.base_price)} a month.")
    return (f"No contract: plans are month to month. You can move back to "
            f"{_plan(case.current.name)} whenever you like; a move down takes effect at the start "
            f"of your next billing period, with no charge.")


def _about(case: Case | None) -> str:
    if case is None:
        return "your account's plan"
    current, target = _plan(case.current.name), _plan(case.target.name)
    if case.direction == "up":
        return f"an offer to upgrade your plan from {current} to {target}"
    return f"a suggestion to move your plan from {current} down to {target}, which costs less"


def help_message(business: Business, case: Case | None = None, opted_out: bool = False,
                 w: Wording = KEYWORDS) -> str:
    """Who is writing, what about, how to stop (or start again), and where to get help."""
    consent = (f"You have opted out: {w.do('START')} to get messages again" if opted_out else
               f"Ask me anything, or {w.do('STOP')} to opt out")
    return (f"{business.name} here, writing about {_about(case)}. {consent}. Help: "
            f"{business.support}. Msg & data rates may apply.")


def stop_message(business: Business, w: Wording = KEYWORDS) -> str:
    return (f"You are unsubscribed from {business.name} messages and will get no more. "
            f"{w.Do('START')} to subscribe again.")


def start_message(business: Business, w: Wording = KEYWORDS) -> str:
    return (f"You are subscribed to {business.name} messages again. {w.Do('HELP')} for help, "
            f"{w.then('STOP')} to opt out.")


def follow_up_message(csm_name: str, business_name: str) -> str:
    """What the buyer is told when a CSM takes their conversation."""
    return f"{csm_name} from {business_name} will follow up with you personally."


def bot_answer(business: Business, w: Wording = KEYWORDS) -> str:
    return (f"I am an automated assistant for {business.name}, not a person. {w.Do('PERSON')} "
            f"and your account manager will get in touch.")


# A consent change the model alone read is asked about ("Reply STOP to opt out") from this
# probability; below it the buyer gets the state's options like any unclear reply.
ASK_CONSENT_FROM = 0.6
NO_OFFER = "There is no plan change on the table for your account right now."


def _move(case: Case) -> str:
    return ("upgrade to" if case.direction == "up" else "move to") + " " + _plan(case.target.name)


def options(state: ThreadState | None, case: Case | None, business: Business,
            opted_out: bool = False, w: Wording = KEYWORDS) -> str:
    """What the buyer can do in `state`, in one sentence: the fallback's second half.
    `opted_out`: whether the contact's consent is revoked now (an opted_out thread outlives a
    later START; an opted-out buyer's yes waits for START)."""
    if state is None or case is None:
        return f"{NO_OFFER} For anything else about your account: {business.support}."
    if opted_out and state in (S.OPEN, S.OFFERED, S.AWAITING_CONFIRMATION, S.DECLINED,
                               S.EXPIRED, S.ESCALATED):
        return (f"You have opted out of these messages: {w.do('START')} to subscribe again, "
                f"then {w.then('YES')} to {_move(case)}. Questions still get answers here.")
    target = _plan(case.target.name)
    if state in (S.OPEN, S.OFFERED):
        return (f"{w.Do('YES')} to see what it takes to {_move(case)}, {w.then('NO')} if not "
                f"now, {w.then('PERSON')} for your account manager, or ask about the price, the "
                f"features or today's charge.")
    if state == S.AWAITING_CONFIRMATION:
        today = (f"{_charge_today(case)} today, then " if case.direction == "up" else "")
        return (f"Nothing changes unless you confirm. {w.Do('CONFIRM')} to {_move(case)} ({today}"
                f"{dollars(case.target.base_price)} a month), or ask me anything.")
    if state == S.UPGRADED:
        return (f"Your change to {target} is done. Ask me about it any time, or {w.do('PERSON')} "
                f"for your account manager.")
    if state == S.DECLINED:
        return (f"Nothing was changed. If you change your mind, {w.do('YES')} to see the figures "
                f"for {target} again.")
    if state == S.EXPIRED:
        return f"That offer lapsed; {w.do('YES')} to see the current figures for {target}."
    if state == S.ESCALATED:
        return (f"Your account manager has this conversation and will be in touch. Meanwhile ask "
                f"me anything, or {w.do('YES')} to {_move(case)} at the list price.")
    if not opted_out:
        return (f"That offer closed when you opted out. Your account manager can help you change "
                f"plans: {w.do('PERSON')} to ask for them.")
    return (f"You have opted out of these messages. {w.Do('START')} to get them again; questions "
            f"about your plan still get answers here.")


def pause_message(state: ThreadState, case: Case, business: Business,
                  opted_out: bool = False, w: Wording = KEYWORDS) -> str:
    """A hedge ("let me ask my wife"): nothing changes, nothing is recorded."""
    if state == S.AWAITING_CONFIRMATION:
        today = f"{_charge_today(case)} today and " if case.direction == "up" else ""
        return (f"Take your time: nothing changes unless you confirm. When you are ready, "
                f"{w.do('CONFIRM')} to {_move(case)} ({today}{dollars(case.target.base_price)} a "
                f"month).")
    if state in (S.OPEN, S.OFFERED, S.DECLINED, S.EXPIRED, S.ESCALATED):
        return "Take your time: nothing changes unless you say so. " + options(
            state, case, business, opted_out, w)
    return "Take your time. " + options(state, case, business, opted_out, w)


def reply(state: ThreadState | None, heard: Understanding | Intent, text: str,
          case: Case | None, catalog: Catalog, business: Business, *, opted_out: bool = False,
          charged: bool = False, channel: Capabilities | None = None) -> Turn:
    """What the bot does about a buyer's message in a thread in `state` (None: no thread).

    Every state x intent pair has a defined reply: docs/conversation.md tabulates them and
    tests/unit/test_state_intent_table.py checks each cell. `heard` is the message's reading
    (core.intents.understand; an Intent alone is read with the rules' flags).

    `opted_out`: the contact has revoked consent (on any channel). Questions still get answers,
    but a yes does not move an offer until START. `channel`: where the reply goes (its declared
    capabilities): how the buyer is told to act (core.copy: "reply CONFIRM", "press Confirm"),
    and on a phone an opening sent as a reply names the business and says how to stop. None:
    typed keywords, no phone.
    `charged`: this thread's plan change was made (what the buyer paid can be said).

    Only an explicit confirmation (the confirm word, a yes-word standing alone, the widget's
    Confirm button) in awaiting_confirmation runs the upgrade; an acknowledgement ("ok", "👍")
    gets the step again, a pause ("let me ask my wife") changes nothing. A yes in offered leads
    to the confirmation step, never straight to the upgrade.
    """
    w = wording(channel)
    phone = channel is not None and channel.phone
    if isinstance(heard, Understanding):
        u = heard
    else:
        u = replace(understand(text), intent=heard)
    if not u.sure and (
            (u.intent in (Intent.STOP, Intent.START) and u.confidence < ASK_CONSENT_FROM)
            or (u.intent == Intent.START and not opted_out)):
        # too unsure even to ask about consent, or a START to someone who never stopped
        u = replace(u, intent=Intent.UNKNOWN)
    intent = u.intent
    if intent == Intent.STOP:
        if not u.sure:
            return Turn((f"Do you want to stop getting messages from {business.name}? "
                         f"{w.Do('STOP')} to opt out.",))
        opts_out = state is not None and (state, E.OPT_OUT) in TRANSITIONS
        return Turn((stop_message(business, w),), (E.OPT_OUT,) if opts_out else (),
                    consent="revoke")
    if intent == Intent.START:
        if not u.sure:
            return Turn((f"{w.Do('START')} if you would like to get these messages again.",))
        return Turn((start_message(business, w),), consent="grant")
    if intent == Intent.HELP:
        return Turn((help_message(business, case, opted_out, w),))
    if u.asks_if_bot:  # answered truthfully, then whatever else the message asks
        rest = _without_bot_question(text)
        heard_rest = understand(rest) if rest else None
        if heard_rest is None or heard_rest.intent == Intent.UNKNOWN:
            return Turn((bot_answer(business, w),))
        then = reply(state, heard_rest, rest, case, catalog, business, opted_out=opted_out,
                     charged=charged, channel=channel)
        return replace(then, replies=(f"I am an automated assistant for {business.name}, not a "
                                      f"person.",) + then.replies)
    if state is None or case is None:  # no offer: a request for a person still reaches one
        if u.sure and intent == Intent.CALLBACK:
            return Turn(("Thanks, I have asked your account manager to call you.",),
                        escalation=EscalationReason.CALLBACK)
        if u.sure and intent == Intent.HUMAN:
            return Turn(("I have asked your account manager, a person, to get in touch with "
                         "you.",), escalation=EscalationReason.HUMAN)
        if u.sure and intent == Intent.DISCOUNT:
            return Turn(("I cannot offer a discount: the price is the same for everyone. I have "
                         "passed your question to your account manager, who will be in touch.",),
                        escalation=EscalationReason.DISCOUNT)
        if u.sure and intent == Intent.DECLINE and \
                (u.reason or decline_reason(text)) == DeclineReason.LEAVING:
            return Turn(("Sorry to hear that. I have asked your account manager to get in "
                         "touch.",), escalation=EscalationReason.LEAVING)
        if opted_out:  # no offer is made to someone who opted out, even when one applies
            return Turn((f"You have opted out of these messages. {w.Do('START')} to get them "
                         f"again; for anything else about your account: {business.support}.",))
        return Turn((options(None, None, business, w=w),))

    lead: tuple[str, ...] = ()
    events: tuple[ThreadEvent, ...] = ()
    if state == S.OPEN:  # the buyer writes before the opening went out: show the case first
        opening = opening_message(case, catalog, business.name if phone else None, w)
        lead, events, state = (opening,), (E.OFFER_SENT,), S.OFFERED

    def turn(*texts: str, event: ThreadEvent | None = None, **effects: Any) -> Turn:
        moves = events + ((event,) if event else ())
        return Turn(lead + texts, moves, **effects)

    if state == S.DECLINED and _answers_why(text):  # "May I ask why?" -> "the price"
        return _decline(state, decline_reason(text), turn, w)
    if u.hold:
        return turn(pause_message(state, case, business, opted_out, w))
    if u.thanks:
        return turn("You're welcome. " + options(state, case, business, opted_out, w))
    if intent == Intent.QUESTION_PRICE and _PAST_CHARGE.search(text):
        intent = Intent.QUESTION_PRORATION  # "how much did you charge me": what was charged
    if intent == Intent.QUESTION_PRICE:
        if state == S.UPGRADED:
            if case.direction == "down":
                return turn(f"{_plan(case.target.name)} is {dollars(case.target.base_price)} a "
                            f"month from {_day(case.effective)}; nothing was charged.")
            return turn(proration_answer(case, charged=charged))
        amount = other_amount_named(text, case)
        if amount is not None:
            return turn(wrong_amount_answer(case, amount, state, w))
        return turn(price_answer(case))
    if intent == Intent.QUESTION_FEATURES:
        return turn(features_answer(case, catalog))
    if intent == Intent.QUESTION_PRORATION:
        return turn(proration_answer(case, charged=charged and state == S.UPGRADED))
    if intent == Intent.QUESTION_DOWNGRADE:
        return turn(downgrade_answer(case))
    if not u.sure:  # the model's reading, not sure enough to act on
        return turn("Sorry, I am not sure I follow. " + options(state, case, business, opted_out,
                                                                 w))
    if intent == Intent.DISCOUNT:
        amount = other_amount_named(text, case)
        if amount is not None and state in LIVE | {S.ESCALATED, S.DECLINED, S.EXPIRED}:
            return turn(wrong_amount_answer(case, amount, state, w))
        if state == S.ESCALATED:  # asked again: the price stands, and the way on is open
            return turn(f"I cannot offer a discount: the price is the same for everyone. I have "
                        f"passed your question to your account manager. Meanwhile ask me "
                        f"anything, or {w.do('YES')} to {_move(case)} at the list price.",
                        escalation=EscalationReason.DISCOUNT)
    if intent in (Intent.HUMAN, Intent.DISCOUNT, Intent.CALLBACK):
        return _escalate(state, intent, turn)
    if intent == Intent.DECLINE:
        return _decline(state, u.reason or decline_reason(text), turn, w)
    if intent in (Intent.AFFIRM, Intent.CONFIRM):
        if opted_out and state != S.UPGRADED:  # the offer resumes after START, unless STOP closed it
            return turn(_opted_out_closed(w) if state == S.OPTED_OUT else _opted_out_yes(w))
        if (state, E.AFFIRM) in TRANSITIONS or state == S.AWAITING_CONFIRMATION:
            # A yes that could move the offer must be a yes to this offer, at these figures.
            named = other_plan_named(text, case, catalog)
            if named is not None:
                return turn(wrong_plan_answer(case, named, state, w))
            amount = other_amount_named(text, case)
            if amount is not None:
                return turn(wrong_amount_answer(case, amount, state, w))
        if state == S.AWAITING_CONFIRMATION:
            if intent == Intent.CONFIRM or u.explicit or _explicit_naming_target(text, case):
                return turn(upgraded_message(case), event=E.CONFIRM, run_upgrade=True)
            # an acknowledgement: the step again
            return turn("Nothing is charged yet. " + confirmation_step(case, catalog, w))
        if state == S.UPGRADED:
            return turn(already_changed_message(case))
        if (state, E.AFFIRM) in TRANSITIONS:
            notify = state == S.ESCALATED  # the CSM is told the buyer went ahead
            return turn(confirmation_step(case, catalog, w), event=E.AFFIRM, notify_csm=notify)
        if state == S.OPTED_OUT:  # subscribed again since: the offer itself stays closed
            return turn(f"That offer closed when you opted out. Your account manager can help "
                        f"you change plans: {w.do('PERSON')} to ask for them.")
    return turn("Sorry, I did not catch that. " + options(state, case, business, opted_out, w))


_BOT_WORDS = re.compile(
    r"\b(?:are you|r u|r you|is this|is it|am i (?:talking|speaking|chatting|texting) "
    r"(?:to|with))\b[^?.!,]*?\b(?:(?:a |an )?(?:real |actual |live )?(?:person|human|people)|"
    r"bot|robot|ai|machine|computer|automated|chatbot|real)\b[?.!]*", re.IGNORECASE)


# A question about money already taken: "how much did you charge me", "what did I just pay".
_PAST_CHARGE = re.compile(
    r"\b(?:did|have|has|was|were)\b[^.?!]{0,20}\b(?:charge|charged|pay|paid|bill|billed|take|"
    r"taken|debit|debited)\b|\bcharged me\b|\bbeen charged\b|\bi (?:just )?paid\b",
    re.IGNORECASE)


def _explicit_naming_target(text: str, case: Case) -> bool:
    """A yes standing alone but for the offered plan's name ("yes, growth please", "yes to
    growth"): explicit too. The classifier does not know the offer, so it cannot tell."""
    name = re.compile(rf"\b{re.escape(case.target.name)}\b", re.IGNORECASE)
    if not name.search(text):
        return False
    return understand(name.sub(" ", text)).explicit


def _answers_why(text: str) -> bool:
    """A short answer naming a reason ("the price", "timing") after a decline, when the bot has
    just asked why: read as the reason, not as a new question."""
    return "?" not in text and len(text.split()) <= 4 and \
        decline_reason(text) != DeclineReason.OTHER


def _without_bot_question(text: str) -> str:
    return _BOT_WORDS.sub(" ", text).strip()


class _TurnOf(Protocol):
    """`reply`'s local `turn`: the replies, after what the state already said, with an event."""

    def __call__(self, *texts: str, event: ThreadEvent | None = None,
                 **effects: Any) -> Turn: ...


def _escalate(state: ThreadState, intent: Intent, turn: _TurnOf) -> Turn:
    if intent == Intent.CALLBACK:  # recorded for the CSM lane; the thread goes on
        return turn("Thanks, I have asked your account manager to call you.",
                    escalation=EscalationReason.CALLBACK)
    if state == S.ESCALATED and intent == Intent.HUMAN:
        return turn("Your account manager already has this conversation and will be in touch.",
                    escalation=EscalationReason.HUMAN)
    text = ("I cannot offer a discount: the price is the same for everyone. I have passed your "
            "question to your account manager, who will be in touch.") \
        if intent == Intent.DISCOUNT else \
        "I have asked your account manager, a person, to get in touch with you."
    reason = EscalationReason.DISCOUNT if intent == Intent.DISCOUNT else EscalationReason.HUMAN
    event = E.ESCALATE if (state, E.ESCALATE) in TRANSITIONS else None
    return turn(text, event=event, escalation=reason)


def _decline(state: ThreadState, reason: DeclineReason, turn: _TurnOf, w: Wording) -> Turn:
    if reason == DeclineReason.LEAVING:
        event = E.ESCALATE if (state, E.ESCALATE) in TRANSITIONS else None
        return turn("Sorry to hear that. I have asked your account manager to get in touch.",
                    event=event, decline_reason=reason, escalation=EscalationReason.LEAVING)
    if state == S.DECLINED:  # a reason given after the decline: keep it if it says more
        if reason == DeclineReason.OTHER:
            return turn("Understood.")
        return turn("Thanks for telling me. We will not bring it up again for 30 days.",
                    decline_reason=reason)
    if state == S.ESCALATED:  # the CSM has the thread: the no is kept and they are told
        return turn("Understood, no change. We will not bring it up again for 30 days.",
                    decline_reason=reason, notify_csm=True)
    if (state, E.DECLINE) not in TRANSITIONS:
        if state == S.UPGRADED:
            return turn(f"Understood. Your change is already made; {w.do('PERSON')} if you want "
                        f"your account manager to help undo it.")
        return turn("Understood, no change.")
    if reason == DeclineReason.OTHER:
        return turn("Understood, no change. May I ask why: the price, the timing, or you do not "
                    "need it?", event=E.DECLINE, decline_reason=reason)
    return turn("Understood, no change. We will not bring it up again for 30 days.",
                event=E.DECLINE, decline_reason=reason)


def is_expired(state: ThreadState, last_activity: datetime, now: datetime) -> bool:
    """An offer nobody answered for 14 days expires."""
    return state in (S.OFFERED, S.AWAITING_CONFIRMATION) and now - last_activity >= EXPIRES_AFTER
