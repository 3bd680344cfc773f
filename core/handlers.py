"""The conversation's use cases, as handlers over commands: open a thread on a crossing, answer a
buyer's message (`handle_inbound(Inbound)`), a widget's poll, a delivery report, a plan change,
the due jobs (down-tier changes, expiry), and the thread as the API shows it.

Each takes a unit of work (or a factory of them) and `now`, takes its locks in the one order
(core.locking), sees storage only through the ports, and leaves anything that must reach the
outside world (the billing webhook, the CSM notice, an SMS or WhatsApp message) in the outbox,
to go out after the commit. The CSM lane's use cases are in core.csm, an outbound message's in
core.delivery, consent learnt from outside in core.consent, usage and accounts in core.services.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from datetime import datetime, timedelta
from collections.abc import Callable


from core.accounts import HealthBounds, StoredAccount
from core.case import Case, build_case, current_case, local_today, terms
from core.catalog import Catalog
from core.channels import Capabilities, Channels, Delivery
from core.conversation import (LIVE, Business, EXPIRES_AFTER, EscalationReason, ThreadEvent,
                               ThreadState, Turn, confirmation_step, figures_changed_message,
                               help_message, options,
                               is_expired, offer_withdrawn_message, period_taken_message, reply,
                               start_message, stop_message, transition)
from core.copy import Wording, wording
from core.delivery import carrier_opt_out, queue_message
from core.errors import DomainError, NotFound
from core.framing import opening_message
from core.guardrails import (GuardrailPolicy, Outcome, PromptContext, Reason, decide,
                             quarter_start)
from core.intent_model import IntentModel
from core.intents import Intent, classify, understand
from core import routing
from core.money import money_str
from core.consent import revoke_consent
from core.calls import CALLABLE_THREADS, callback_reply, cancel_calls, schedule_call
from core.csm import escalate, tell_csm
from core.locking import lock_account, lock_accounts
from core.ports import (CallView, ContactView, EscalationRecord, MessageView, PlanChangeView,
                        SignalDecision, ThreadView, UnitOfWork, seen_by_buyer)
from core.retry import retrying
from core.thresholds import Crossing, met_thresholds
from core.usage import UsageMatrix

log = logging.getLogger(__name__)

# Reason codes beyond §5's, for crossings that open nothing for other causes.
THREAD_OPEN, NO_CONTACT, SUPERSEDED = "thread_open", "no_contact", "superseded"
PLAN_CHANGED = "plan_changed"  # this billing period already has a plan change


@dataclass(frozen=True)
class Settings:
    """What the handlers are configured with: the guardrails' policy, the health bounds, who the
    business is, whether plan changes go to the billing webhook, the reply model, and the
    registered channels' capabilities."""

    policy: GuardrailPolicy = GuardrailPolicy()
    health: HealthBounds = HealthBounds()
    business: Business = Business()
    billing_webhook: bool = False  # enqueue a signed webhook for every plan change
    model: IntentModel | None = None  # the reply model the application loaded (core.intent_model)
    channels: Channels = Channels()  # the registered channels' capabilities (core.channels)
    # The time a buyer names in a message ("call me tomorrow after 3"), read in their zone, or
    # None: an edge's parser (channels.when), since reading dates is a library's job.
    read_time: Callable[[str, str, datetime], datetime | None] | None = None


# --- opening ------------------------------------------------------------------------------------

def open_conversation(uow: UnitOfWork, catalog: Catalog, config: Settings, account: StoredAccount,
                      matrix: UsageMatrix, crossing: Crossing, now: datetime) -> SignalDecision:
    """Decide what a crossing leads to (§5) and act on it, inside the caller's transaction:
    a thread with its opening queued on the best channel (§7), a deferral, an escalation for red
    health, or a suppression. The decision is returned to be stored on the signal."""
    case = current_case(catalog, terms(account), matrix, now)
    if case is None or case.target.name != crossing.to_plan:
        return SignalDecision(Outcome.SUPPRESSED, SUPERSEDED)
    live = uow.threads.live_thread(account.id, case.target.name)
    if live is not None:
        return SignalDecision(Outcome.SUPPRESSED, THREAD_OPEN, thread_id=live.id)
    if uow.plan_changes.plan_change_in_period(account.id, case.proration.period_start) is not None:
        return SignalDecision(Outcome.SUPPRESSED, PLAN_CHANGED)
    contact = uow.contacts.addressee(account.id)
    if contact is None:
        return SignalDecision(Outcome.SUPPRESSED, NO_CONTACT)
    channel = config.channels.choose(contact, now)
    if channel is None:
        return SignalDecision(Outcome.SUPPRESSED, NO_CONTACT)
    decision = decide(PromptContext(
        account=account.external_id, account_timezone=account.timezone,
        opted_out=contact.opted_out_at is not None,
        health_red=(account.health.is_red(config.health)
                    or uow.escalations.has_open(account.id)),  # §5.3: an open escalation
        last_decline_at=uow.threads.last_decline_at(account.id),
        prompts_this_quarter=uow.messages.prompts_since(contact.id, quarter_start(now, account.timezone)),
        phone_channel=channel.phone,  # quiet hours apply
        phone=(channel.address_of(contact) if channel.phone else None) or contact.phone,
    ), config.policy, now)
    if decision.outcome == Outcome.SUPPRESSED:
        if decision.reason == Reason.HEALTH:
            escalate(uow, account, None, EscalationReason.HEALTH, case, now)
        elif decision.reason == Reason.CONTROL:
            log.info("control cohort: would have prompted account %s", account.external_id)
        return SignalDecision(decision.outcome, decision.reason)
    # `open` until the opening is out: the outbox moves the thread to offered when it sends it
    # on a pushed channel (core.delivery.message_sent); a polled channel (the widget) shows it at
    # once if the buyer is there, else on their next visit.
    shown_now = channel.present(contact, now) and decision.outcome == Outcome.PROMPTED
    state = ThreadState.OFFERED if shown_now else ThreadState.OPEN
    thread = uow.threads.create_thread(account.id, contact.id, account.plan, case.target.name,
                                case.direction, state, channel.name, now)
    queue_message(uow, thread_id=thread.id, contact_id=contact.id, channel=channel,
                  kind="opening",
                  body=opening_message(case, catalog, config.business.name
                                       if channel.phone else None, wording(channel)),
                  now=now, not_before=decision.defer_until)
    return SignalDecision(decision.outcome, decision.reason, decision.defer_until, thread.id)


# --- answering ----------------------------------------------------------------------------------

class Replies(StrEnum):
    """How our answers to a message reach the buyer (the status they are stored with)."""

    INLINE = "sent"  # in the request's own response: a webhook's TwiML, the widget's POST
    QUEUED = "queued"  # later, by a channel of ours (a spooled message replayed; the API asked)
    RELAYED = "relayed"  # by the caller of the conversation API, who got them in the response


@dataclass(frozen=True)
class Inbound:
    """A buyer's message as a channel parsed it (the command `handle_inbound` carries out).

    Who wrote is said one way: `contact` (the contact's external id: an integrator relaying a
    message), `address` (the sender's number on the channel: SMS, WhatsApp) or `web_user`
    (account external id, the user's id in the host product: the widget)."""

    channel: str
    text: str
    provider_id: str | None = None
    contact: str | None = None
    address: str | None = None
    web_user: tuple[str, str] | None = None
    replies: Replies = Replies.INLINE
    # When the buyer sent it, if not now: a message kept while the database was unreachable and
    # replayed later. It is stored at that time, and never acts on what came after it
    # (`_overtaken`).
    received_at: datetime | None = None


@dataclass(frozen=True)
class Answer:
    """What the buyer is answered. `duplicate`: a retry of a message answered before (the
    first replies, nothing changed). `known` is False when the sender is no contact: for an
    address, the message is kept for the operator and `replies` is the polite answer (empty on
    a retry); for a web user, nothing is written."""

    replies: tuple[str, ...]
    thread_id: int | None
    state: str | None
    duplicate: bool = False
    known: bool = True


def handle_inbound(uow: UnitOfWork, catalog: Catalog, config: Settings, message: Inbound,
                   now: datetime) -> Answer:
    """Answer one message from a buyer, in one unit of work (one transaction per message),
    retried on a lost race; in the thread of whichever of their identities wrote.

    A message id seen before gets the replies it got the first time and changes nothing (a
    provider retry, a double submit). Replies are stored before the commit and returned after it.

    A number of one contact is that contact's. A number several contacts share (of several
    accounts, typically) goes through `_answer_shared_number`: core.routing says whose
    conversation the message belongs to, or that we must ask, and a STOP or START is applied to
    every one of them. A number of no contact is kept for the operator and answered politely.
    """
    channel = config.channels.require(message.channel)
    if message.replies == Replies.QUEUED and channel.delivery == Delivery.NONE:
        raise DomainError(f"deliver: the service cannot deliver replies on {channel.name} (it "
                          f"does on {', '.join(config.channels.names(deliverable=True))}); leave "
                          f"deliver out and deliver them yourself", code="cannot_deliver",
                          field="deliver")

    def work() -> Answer | None:
        if message.contact is not None:
            contact = uow.contacts.contact(message.contact)
            try:
                if contact is None:
                    raise _Gone
                return _answer(uow, catalog, config, contact, channel, message, now)
            except _Gone:
                raise NotFound(f"no contact {message.contact!r}",
                               code="contact_not_found") from None
        if message.web_user is not None:
            contact = uow.contacts.web_contact(*message.web_user)
            try:
                if contact is None:
                    raise _Gone
                return _answer(uow, catalog, config, contact, channel, message, now)
            except _Gone:
                return None  # nothing written
        if message.address is None:
            raise ValueError("an Inbound says who wrote: contact, address or web_user")
        contacts = uow.contacts.contacts_by_address(channel.address, message.address)
        try:
            if not contacts:
                raise _Gone
            if len(contacts) == 1:
                return _answer(uow, catalog, config, contacts[0], channel, message, now)
            return _answer_shared_number(uow, catalog, config, contacts, channel, message, now)
        except _Gone:  # a number of no contact (any more: erased while the message waited)
            return _unknown_sender(uow, channel, message, config.business, now)

    answer = _in_one_unit_of_work(uow, work)
    return answer if answer is not None else Answer((), None, None, known=False)


class _Gone(Exception):
    """The sender is no contact: none had the address or id, or the contact was erased (core.
    erasure) while the message waited for its account's lock. Raised before anything is
    written."""


def _current(uow: UnitOfWork, contact: ContactView) -> ContactView:
    """The contact read again under its account's lock (taken by the caller): an erasure
    holding the lock when the message arrived has committed by now, and a message from the
    erased contact must leave nothing in their name."""
    current = uow.contacts.contact_by_id(contact.id)
    if current is None or current.erased_at is not None:
        raise _Gone
    return current


@dataclass(frozen=True)
class Greeting:
    """What a caller hears first. `text` None: the number is no single contact's, or they
    have no live offer: the call is answered without any account's data. `confirming`: the text
    is the confirmation step, so the next key 1 confirms it."""

    text: str | None
    confirming: bool = False
    shared: bool = False  # the number is several contacts': no account is named on the call


def call_greeting(uow: UnitOfWork, catalog: Catalog, config: Settings, channel: str,
                  address: str, now: datetime) -> Greeting:
    """The first words of a call from `address`: the business's name, then the case of the
    caller's live thread in the channel's words ("press 1 to upgrade"), or, when the thread
    already waits for a confirmation, that step read in full (plan, new monthly price, today's
    charge). Reads only."""
    caps = config.channels.require(channel)
    with uow:
        contacts = uow.contacts.contacts_by_address(caps.address, address)
        if len(contacts) != 1:  # a stranger, or a number several contacts share: say nothing
            return Greeting(None, shared=len(contacts) > 1)
        contact = contacts[0]
        thread = uow.threads.thread_for_contact(contact)
        if thread is None or ThreadState(thread.state) not in LIVE \
                or is_expired(ThreadState(thread.state), thread.updated_at, now):
            return Greeting(None)
        account = uow.accounts.get_by_id(contact.account_id)
        case = _thread_case(uow, catalog, account, thread, now)
    w = wording(caps)
    hello = f"Hello, this is {config.business.name}, an automated assistant."
    if ThreadState(thread.state) == ThreadState.AWAITING_CONFIRMATION:
        return Greeting(f"{hello} {confirmation_step(case, catalog, w)}", confirming=True)
    # Spoken, not texted: no two-segment limit, and the whole menu after the case.
    return Greeting(f"{hello} {opening_message(case, catalog, None, w)} "
                    f"{options(ThreadState.OFFERED, case, config.business, w=w)} "
                    f"{w.Do('STOP')} to stop our calls and texts.")


def thread_state(uow: UnitOfWork, thread_id: int) -> str | None:
    """A thread's state now (a call's retried turn is answered as the thread stands: after an
    upgrade it hangs up again). Reads only."""
    with uow:
        thread = uow.threads.thread(thread_id)
        return thread.state if thread else None


def unknown_sender_reply(business: Business) -> str:
    return (f"Sorry, we could not find your account for this number. Please contact support "
            f"at {business.support}.")


def _unknown_sender(uow: UnitOfWork, channel: Capabilities, message: Inbound,
                    business: Business, now: datetime) -> Answer:
    """Keep a message from a number of no contact for the operator, and answer it politely
    (once per provider message: a retry is kept once and gets nothing)."""
    stored = uow.messages.add_unmatched_inbound(channel.name, message.text,
                                                     message.provider_id, now)
    if stored is None:
        return Answer((), None, None, duplicate=True, known=False)
    log.info("inbound %s message from a number that belongs to no contact", channel.name)
    return Answer((unknown_sender_reply(business),), None, None, known=False)


def _in_one_unit_of_work(uow: UnitOfWork, work: Callable[[], Answer | None]) -> Answer | None:
    """`work()` inside one unit of work, committed when it answers (None: nothing written, it
    rolls back); the whole retried on a lost race."""
    def attempt() -> Answer | None:
        with uow:
            answer = work()
            if answer is not None:
                uow.commit()
            return answer

    return retrying(attempt)


def _answer_shared_number(uow: UnitOfWork, catalog: Catalog, config: Settings,
                          contacts: list[ContactView], channel: Capabilities, message: Inbound,
                          now: datetime) -> Answer | None:
    """Answer a message from a number that several contacts share (docs/architecture.md, "Which
    account a message belongs to"). Every candidate's account is locked first, in id order (the
    order ingestion keeps), then the routing facts are read: nothing can move under the decision.

    - A provider retry (the same message id stored for any candidate) gets the first replies and
      changes nothing.
    - STOP and START apply to every candidate: consent is the phone's, never a guess.
    - Otherwise core.routing picks a candidate, and the message is answered as theirs
      (`_answer`), unless it picked the candidate because the message names the business and
      the message only tells which business (`_only_naming`): that is stored in the business's
      thread and acknowledged, never acted on.
    - When routing cannot tell, we ask which business, and change nothing: the message and the
      question are stored (kind "unrouted", on the first candidate, outside any thread). HELP
      gets the help text instead of the question.
    """
    text = message.text
    lock_accounts(uow, (c.account_id for c in contacts))  # every candidate's, before any thread
    contacts = _still_contacts(uow, contacts)
    facts = uow.contacts.routing_facts(channel.name, [c.id for c in contacts], message.provider_id)
    if facts.seen_inbound_id is not None:
        replies = uow.messages.replies_to(facts.seen_inbound_id)
        return Answer(tuple(m.body for m in replies), replies[0].thread_id if replies else None,
                      None, duplicate=True)
    by_id = {c.id: c for c in contacts}
    present = [by_id[c.contact_id] for c in facts.candidates if c.contact_id in by_id]
    if not present:  # every one of them was removed meanwhile
        return None
    heard = understand(text, config.model)  # as `_answer` reads it
    intent = heard.intent
    if intent in (Intent.STOP, Intent.START) and heard.sure:
        return _consent_for_everyone(uow, present, channel, message, intent, config, now)
    route = routing.route(facts.candidates, facts.last_write, text,
                          ignore=[plan.name for plan in catalog.plans.values()])
    if route.contact_id is None:
        body = help_message(config.business, w=wording(channel)) \
            if intent == Intent.HELP or route.question is None else route.question
        return _unrouted(uow, present[0], channel, message, body, now)
    contact = by_id[route.contact_id]
    if route.reason == routing.Reason.NAMED and route.business is not None \
            and _only_naming(text, route.business, config):
        [chosen] = [c for c in facts.candidates if c.contact_id == contact.id]
        return _acknowledge_business(uow, contact, chosen.thread_id, channel, message,
                                     route.business, now)
    return _answer(uow, catalog, config, contact, channel, message, now)


def _still_contacts(uow: UnitOfWork, contacts: list[ContactView]) -> list[ContactView]:
    """The candidates read again under their accounts' locks, without those removed or erased
    meanwhile (`_current`); `_Gone` when none is left."""
    still = []
    for contact in contacts:
        try:
            still.append(_current(uow, contact))
        except _Gone:
            continue
    if not still:
        raise _Gone
    return still


def _only_naming(text: str, business: str, config: Settings) -> bool:
    """Whether a message that names a business only tells us which one, rather than what to do:
    it says nothing else; or it names it by one word rather than its whole name (weaker
    evidence: "yes, for my family" names "Acme Family Clinic", so the acknowledgement says which
    business we heard before anything is done there); or it reads differently once the name is
    taken out ("Demo Co" reads as a request for a demo, "confirm Discount Tire" as a discount
    request): acting on it would act on a misreading of the name we asked for."""
    return (routing.only_names(text, business)
            or not routing.says_whole_name(text, business)
            or classify(routing.without_name(text, business), config.model)
            != classify(text, config.model))


def acknowledgement(business: str) -> str:
    return f"Thanks, this is about {business}. Please send your message again."


def _acknowledge_business(uow: UnitOfWork, contact: ContactView, thread_id: int | None,
                          channel: Capabilities, message: Inbound, business: str,
                          now: datetime) -> Answer:
    """The buyer named the business: the message goes to its thread (the thread a message from
    the contact lands in) with our acknowledgement, which makes that thread the last to write
    to the number, so the conversation continues there. The thread's state does not move."""
    body = acknowledgement(business)
    _store_exchange(uow, contact, thread_id, channel, message, body, ("inbound", "reply"), now)
    return Answer((body,), thread_id, None)


def _unrouted(uow: UnitOfWork, holder: ContactView, channel: Capabilities, message: Inbound,
              body: str, now: datetime) -> Answer:
    """Keep a message no one conversation can take, and our answer to it, on `holder` (the first
    candidate) outside any thread: nothing is lost, a retry finds it, nothing else changes."""
    _store_exchange(uow, holder, None, channel, message, body,
                    (routing.UNROUTED, routing.UNROUTED), now)
    return Answer((body,), None, None)


def _store_exchange(uow: UnitOfWork, contact: ContactView, thread_id: int | None,
                    channel: Capabilities, message: Inbound, body: str, kinds: tuple[str, str],
                    now: datetime) -> None:
    """The buyer's message and our one answer, stored (kinds: the inbound's, the answer's); a
    WhatsApp message restarts the number's 24-hour window, so the answer may go out."""
    inbound_id = _store_inbound(uow, contact.id, thread_id, channel, message, kinds[0], now)
    _note_activity(uow, contact, channel, now)
    _store_reply(uow, contact.id, thread_id, channel, message, kinds[1], body, inbound_id, now)


def _store_inbound(uow: UnitOfWork, contact_id: int, thread_id: int | None,
                   channel: Capabilities, message: Inbound, kind: str, now: datetime) -> int:
    return uow.messages.add_message(
        thread_id=thread_id, contact_id=contact_id, channel=channel.name, direction="in",
        kind=kind, body=message.text, status="received", now=message.received_at or now,
        provider_id=message.provider_id)


def _store_reply(uow: UnitOfWork, contact_id: int, thread_id: int | None, channel: Capabilities,
                 message: Inbound, kind: str, body: str, in_reply_to: int | None,
                 now: datetime) -> None:
    """One of our answers to `message`, stored as the message says it reaches the buyer:
    answered in the request itself, queued for a channel of ours (with its outbox job where the
    channel pushes), or relayed by the caller."""
    if message.replies == Replies.QUEUED:
        queue_message(uow, thread_id=thread_id, contact_id=contact_id, channel=channel,
                      kind=kind, body=body, now=now, in_reply_to=in_reply_to)
        return
    uow.messages.add_message(
        thread_id=thread_id, contact_id=contact_id, channel=channel.name, direction="out",
        kind=kind, body=body, status=str(message.replies), now=now, in_reply_to=in_reply_to)


def _consent_for_everyone(uow: UnitOfWork, contacts: list[ContactView], channel: Capabilities,
                          message: Inbound, intent: Intent, config: Settings,
                          now: datetime) -> Answer:
    """STOP or START from a shared number: for every contact with it, whatever the routing would
    say. Opting out is the person's at that number (a STOP must never be applied to one account
    on a guess while another keeps texting them); START is the same person asking back in. Each
    contact gets the message (for its record and a retry) and the consent change; STOP closes
    the live threads addressed to them, as the carrier's opt-out does (`revoke_consent`). The
    confirmation is one message, stored once."""
    first = None
    for contact in contacts:
        inbound_id = _store_inbound(uow, contact.id, None, channel, message, routing.UNROUTED,
                                    now)
        first = first if first is not None else inbound_id
        if _consent_overtaken(uow, contact.id, message):
            pass  # the buyer said otherwise since, from this number or elsewhere
        elif intent == Intent.STOP:
            revoke_consent(uow, contact, channel.name, "buyer", now)
        else:
            uow.contacts.record_consent(contact.id, "grant", channel.name, "buyer", now)
        _note_activity(uow, contact, channel, now)
    w = wording(channel)
    body = stop_message(config.business, w) if intent == Intent.STOP else \
        start_message(config.business, w)
    _store_reply(uow, contacts[0].id, None, channel, message, routing.UNROUTED, body, first, now)
    return Answer((body,), None, None)


def _answer(uow: UnitOfWork, catalog: Catalog, config: Settings, contact: ContactView,
            caps: Capabilities, message: Inbound, now: datetime) -> Answer:
    channel, text = caps.name, message.text
    lock_account(uow, contact.account_id)
    # The contact read again under the lock (`_current`), and an earlier delivery of this
    # message, in one read.
    current, seen = uow.contacts.contact_and_delivery(contact.id, channel,
                                                      message.provider_id or None)
    if seen is not None:  # (writes nothing, whatever became of the contact since)
        return Answer(tuple(m.body for m in uow.messages.replies_to(seen.id)), seen.thread_id,
                      None, duplicate=True)
    if current is None or current.erased_at is not None:
        raise _Gone
    contact = current
    thread = uow.threads.thread_for_contact(contact)
    account = uow.accounts.get_by_id(contact.account_id)
    # The account's own name is no instruction: "Demo Co here, what's the price?" asks the
    # price. Only the whole name is taken out: single words of it ("Not Just Pizza", "Stop & Go
    # Auto") must never change what the buyer says.
    heard = understand(_without_whole_name(text, account.name) or text, config.model)
    # In the product the buyer acts for themselves: consent by keyword is the phone's.
    opted_out = contact.opted_out_at is not None and caps.phone
    if thread is None and heard.intent not in (Intent.STOP, Intent.START) and not opted_out:
        # (an opted-out buyer who writes in is answered, not sent the offer)
        thread = _buyer_thread(uow, catalog, account, contact, channel, now)
    state = ThreadState(thread.state) if thread else None
    # A thread whose change was made is answered with the figures of that moment (what was
    # charged, until when), not the case as it would stand today.
    change = uow.plan_changes.plan_change_for_thread(thread.id) \
        if thread is not None and state == ThreadState.UPGRADED else None
    case = _thread_case(uow, catalog, account, thread, change.requested_at if change else now) \
        if thread else None
    if thread is not None and state is not None and is_expired(state, thread.updated_at, now):
        state = transition(state, ThreadEvent.EXPIRE)
    charged = change is not None
    turn = reply(state, heard, text, case, catalog, config.business, charged=charged,
                 channel=caps, opted_out=opted_out)
    turn = _overtaken(uow, contact, thread, message, turn)
    if turn.escalation == EscalationReason.CALLBACK and thread is not None:
        turn = _callback(uow, config, account, contact, thread, turn, caps, text, now)
    inbound_id = _store_inbound(uow, contact.id, thread.id if thread else None, caps, message,
                                "inbound", now)
    replies = turn.replies
    if thread is not None and state is not None and case is not None:
        thread, replies = _apply(uow, catalog, config, account, contact, thread, state, case, turn,
                                 channel, now)
    if thread is None and turn.escalation is not None:  # no offer, but a person is wanted
        escalate(uow, account, None, turn.escalation, case, now)
    if turn.consent:
        uow.contacts.record_consent(contact.id, turn.consent, channel, "buyer", now)
        if turn.consent == "revoke":
            cancel_calls(uow, contact_id=contact.id, why="the buyer opted out", now=now)
    _note_activity(uow, contact, caps, now)
    for body in replies:
        _store_reply(uow, contact.id, thread.id if thread else None, caps, message, "reply", body,
                     inbound_id, now)
    return Answer(replies, thread.id if thread else None, thread.state if thread else None)


def _callback(uow: UnitOfWork, config: Settings, account: StoredAccount, contact: ContactView,
              thread: ThreadView, turn: Turn, caps: Capabilities, text: str,
              now: datetime) -> Turn:
    """The buyer asked for a call in their thread: one is booked at the time they named (read
    in their zone) or the next allowed minute, and they are told when; the CSM lane is asked
    only when no call can be placed (no channel places calls, or no phone). An opted-out buyer
    is told we will not call."""
    asked = config.read_time(text, account.timezone, now) if config.read_time else None
    result = schedule_call(uow, config.channels, config.policy, account, contact, thread.id,
                           asked, now)
    said = callback_reply(result, account.timezone, config.business, config.policy,
                          wording(caps))
    if said is None:
        return turn
    return replace(turn, replies=turn.replies[:-1] + (said,), escalation=None)


def _overtaken(uow: UnitOfWork, contact: ContactView, thread: ThreadView | None,
               message: Inbound, turn: Turn) -> Turn:
    """What is left of `turn` when the message was sent before what happened since: a message
    replayed from the spool after the buyer went on writing (or an operator, another channel or
    an opening moved the thread). The buyer's later word decides:
    - a turn that would move the thread (confirm, decline, escalate, ask to confirm) is not
      carried out and not answered when the thread changed after the message arrived: an old
      "yes" never completes a confirmation step shown after it, an old "no" never declines one
      the buyer asked for since;
    - a consent change (STOP, START) counts unless consent changed after the message arrived;
    - anything else (a question, HELP) is answered as usual.
    The message itself is stored at the time it arrived, in its place."""
    if message.received_at is None:
        return turn
    if turn.consent is not None:
        if _consent_overtaken(uow, contact.id, message):
            return Turn()
        return turn
    moves = turn.events or turn.run_upgrade or turn.decline_reason or turn.escalation \
        or turn.notify_csm
    if moves and thread is not None and thread.updated_at > message.received_at:
        log.info("a message sent before thread %s last changed was replayed: kept, not acted "
                 "on", thread.id)
        return Turn()
    return turn


def _consent_overtaken(uow: UnitOfWork, contact_id: int, message: Inbound) -> bool:
    """Whether the contact's consent changed after a replayed message was sent."""
    return message.received_at is not None \
        and uow.contacts.consent_changed_after(contact_id, message.received_at)


def _note_activity(uow: UnitOfWork, contact: ContactView, channel: Capabilities | None,
                   now: datetime) -> None:
    """The buyer wrote here now, on a channel that keeps track (the widget's presence,
    WhatsApp's 24-hour session)."""
    if channel is not None and channel.activity is not None:
        uow.contacts.touch(contact.id, channel.activity, now)


def _without_whole_name(text: str, name: str) -> str:
    """`text` with the account's whole name taken out, case-insensitively (not its words)."""
    if len(name.strip()) < 3:
        return text
    return re.sub(r"\s+", " ", re.sub(re.escape(name.strip()), " ", text,
                                      flags=re.IGNORECASE)).strip()


def _buyer_thread(uow: UnitOfWork, catalog: Catalog, account: StoredAccount, contact: ContactView,
                  channel: str, now: datetime) -> ThreadView | None:
    """A buyer with no thread writes in while a plan change applies to their account (a
    control-cohort account, one whose crossing the guardrails held back, or one whose usage
    changed since): they are answered like anyone, in a new thread marked buyer-initiated so the
    experiment counts it apart. None when no change applies or this period already had one."""
    matrix = uow.usage.matrices([account.id], now)[account.id]
    case = current_case(catalog, terms(account), matrix, now)
    if case is None or uow.plan_changes.plan_change_in_period(account.id, case.proration.period_start):
        return None
    if uow.threads.live_thread(account.id, case.target.name) is not None:
        return None  # a colleague's thread: thread_for_contact would have found it
    log.info("buyer-initiated thread for account %s (%s -> %s)", account.external_id,
             case.current.name, case.target.name)
    return uow.threads.create_thread(account.id, contact.id, account.plan, case.target.name,
                              case.direction, ThreadState.OPEN, channel, now,
                              initiated_by="buyer")


def _thread_case(uow: UnitOfWork, catalog: Catalog, account: StoredAccount, thread: ThreadView,
                 now: datetime) -> Case:
    """The thread's case now: from the plan the thread started on to its target."""
    matrix = uow.usage.matrices([account.id], now)[account.id]
    t = terms(account, thread.current_plan)
    met = [(metric, value, th.at) for th, metric, value
           in met_thresholds(catalog, catalog.plan(thread.current_plan), matrix)
           if th.to_plan == thread.target_plan]
    return build_case(catalog, t, matrix, catalog.plan(thread.target_plan), met, now)


def _apply(uow: UnitOfWork, catalog: Catalog, config: Settings, account: StoredAccount,
           contact: ContactView, thread: ThreadView, state: ThreadState, case: Case, turn: Turn,
           channel: str, now: datetime) -> tuple[ThreadView, tuple[str, ...]]:
    replies, events = turn.replies, list(turn.events)
    step_shown = ThreadEvent.AFFIRM in events  # the confirmation step, with today's figures
    if turn.run_upgrade:
        refusal = _refusal(uow, catalog, account, thread, case,
                           wording(config.channels.get(channel)))
        if refusal is not None:  # the confirmation cannot run as shown: say why, change nothing
            replies, events = refusal
            step_shown = not events  # the step shown again with the new figures
        elif not change_plan(uow, account, thread, case, channel, config, now):
            replies, events = (period_taken_message(case),), [ThreadEvent.EXPIRE]
    for event in events:
        state = transition(state, event)
    if ThreadEvent.OFFER_SENT in events:  # the opening went out in this reply, not from the outbox
        uow.messages.cancel_queued_openings(thread.id)
    if turn.escalation is not None:
        escalate(uow, account, thread.id, turn.escalation, case, now)
    if state not in CALLABLE_THREADS:  # upgraded, declined, opted out: no call is wanted now
        cancel_calls(uow, thread_id=thread.id, why=f"the thread is {state}", now=now)
    if turn.notify_csm:  # the buyer went ahead at list price (or said no): the card is redrawn
        tell_csm(uow, account, thread.id, "went-ahead", now)
    confirm = (case.proration.period_start, case.prorated_charge_today) if step_shown \
        else (thread.confirm_period_start, thread.confirm_charge)
    # A decline's reason starts the cooldown only while the thread stays declined (or escalated
    # because the buyer is leaving); "actually, yes" afterwards clears it.
    keeps_reason = state in (ThreadState.DECLINED, ThreadState.ESCALATED)
    thread = replace(thread, state=str(state), last_channel=channel,
                     decline_reason=turn.decline_reason or (thread.decline_reason if keeps_reason else None),
                     confirm_period_start=confirm[0], confirm_charge=confirm[1])
    uow.threads.save_thread(thread, now)
    return thread, replies


def _refusal(uow: UnitOfWork, catalog: Catalog, account: StoredAccount, thread: ThreadView,
             case: Case, w: Wording) -> tuple[tuple[str, ...], list[ThreadEvent]] | None:
    """Why a confirmation must not run as it stands, as (replies, events); None when it may."""
    if account.plan != thread.current_plan:  # the plan changed under the offer (the operator)
        return (offer_withdrawn_message(account.plan),), [ThreadEvent.EXPIRE]
    if (thread.confirm_period_start, thread.confirm_charge) != \
            (case.proration.period_start, case.prorated_charge_today):
        # A new billing period (or new figures) since the confirmation step: never charge what
        # the buyer did not see; show the step again.
        return (figures_changed_message(case, catalog, w),), []
    return None


def change_plan(uow: UnitOfWork, account: StoredAccount, thread: ThreadView, case: Case, channel: str,
                config: Settings, now: datetime) -> bool:
    """Record the plan change once; False when this billing period already has one.

    Up-tier applies now; down-tier waits for the next period (`apply_due_plan_changes`). The
    database allows one pending-or-done change per account and period (a unique key), so two
    channels confirming at once cannot both win: the loser's transaction fails, is retried, and
    finds the change made.
    """
    if uow.plan_changes.plan_change_in_period(account.id, case.proration.period_start) is not None:
        return False
    key = f"thread:{thread.id}:{thread.target_plan}"
    change = uow.plan_changes.add_plan_change(
        account_id=account.id, thread_id=thread.id, key=key, from_plan=case.current.name,
        to_plan=case.target.name, direction=case.direction,
        period_start=case.proration.period_start, effective=case.effective,
        charge_today=case.prorated_charge_today,
        status="done" if case.direction == "up" else "pending", channel=channel, now=now)
    if case.direction == "up":
        uow.accounts.change_plan(account.id, case.target.name, now, from_plan=case.current.name,
                                 source="conversation", plan_change_id=change.id)
    if config.billing_webhook:
        uow.jobs.enqueue("billing_webhook", key, {
            "event": "plan_change", "idempotency_key": key, "account": account.external_id,
            "from_plan": change.from_plan, "to_plan": change.to_plan,
            "direction": change.direction, "effective": change.effective.isoformat(),
            "charge_today": money_str(change.charge_today), "status": change.status,
            "requested_at": now.isoformat()}, now)
    log.info("plan change %s -> %s for account %s (%s)", change.from_plan, change.to_plan,
             account.external_id, change.status)
    return True


def apply_due_plan_changes(uow: UnitOfWork, now: datetime) -> int:
    """Apply pending down-tier changes whose effective date has come in the account's zone."""
    applied = 0
    with uow:
        # Due in UTC tomorrow at the latest; each account's own date decides. Their accounts
        # are locked first, then the changes read again under the lock (core.locking).
        due = now.date() + timedelta(days=1)
        lock_accounts(uow, (c.account_id for c in
                            uow.plan_changes.due_plan_changes(due, lock=False)))
        for change in uow.plan_changes.due_plan_changes(due):
            account = uow.accounts.get_by_id(change.account_id)
            if local_today(now, account.timezone) >= change.effective:
                uow.accounts.change_plan(account.id, change.to_plan, now,
                                         from_plan=change.from_plan, source="conversation",
                                         plan_change_id=change.id)
                uow.plan_changes.mark_plan_change_done(change.id, now)
                applied += 1
        uow.commit()
    return applied


# --- delivery reports ---------------------------------------------------------------------------

# Delivery progress of an outbound message. Reports arrive out of order, so a report only ever
# moves a message forward; undelivered/failed/canceled are final, and win over anything short of
# delivered.
PROGRESS = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3,
            "read": 4}
FINAL_FAILURES = frozenset({"undelivered", "failed", "canceled"})


@dataclass(frozen=True)
class DeliveryReport:
    """The provider's word on a message we sent: its status, its error code (if any, kept with
    the message), and whether it says the recipient has unsubscribed (the channel reads its
    provider's codes: a STOP we never saw, which opts the contact out)."""

    provider_id: str
    status: str
    error_code: str | None = None
    opted_out: bool = False


def advances(current: str | None, new: str) -> bool:
    """Whether a delivery report may replace the message's current delivery status."""
    if new not in PROGRESS and new not in FINAL_FAILURES:
        return False  # a status we do not track (receiving, received, ...)
    if current is None:
        return True
    if current in FINAL_FAILURES:
        return False
    if new in FINAL_FAILURES:
        return PROGRESS.get(current, 0) < PROGRESS["delivered"]
    return PROGRESS[new] > PROGRESS.get(current, -1)


def replaced_by(new: str) -> tuple[frozenset[str], bool]:
    """The delivery statuses a report of `new` may replace (`advances`), and whether it may
    replace none yet: storage moves a message's status forward in one conditional write."""
    return (frozenset(s for s in (*PROGRESS, *FINAL_FAILURES) if advances(s, new)),
            advances(None, new))


def record_delivery_report(uows: Callable[[], UnitOfWork], report: DeliveryReport,
                           now: datetime) -> bool:
    """Record a delivery report (retried on a lost race); False for a message we do not know.
    A carrier opt-out (the carrier has the buyer's STOP) revokes consent as a STOP would.

    Most reports (queued, sent, delivered, each perhaps late or twice) are one conditional
    write: the status moves only forward, and a late or repeated report matches nothing."""
    replaces, replaces_none = replaced_by(report.status)

    def attempt() -> bool:
        uow = uows()
        with uow:
            if not report.opted_out:
                known = uow.messages.advance_delivery_status(
                    report.provider_id, report.status, report.error_code, replaces,
                    replaces_none)
                uow.commit()
                return known is not None
            sent = uow.messages.outbound_by_provider_id(report.provider_id)
            if sent is None:
                return False
            if report.opted_out and sent.contact_id is not None:
                # As when a send fails with it: the account is locked and the contact read
                # after the lock, so two reports cannot both record the opt-out.
                carrier_opt_out(uow, sent.contact_id, sent.channel, now)
            sent = uow.messages.outbound_by_provider_id(report.provider_id, lock=True)
            if sent is not None and advances(sent.delivery_status, report.status):
                uow.messages.set_delivery_status(sent.id, report.status, report.error_code)
            uow.commit()
        return True

    return retrying(attempt)


def expire_threads(uow: UnitOfWork, now: datetime) -> int:
    """Threads without an answer for 14 days expire (§6), openings that never went out too, so
    a later crossing can offer again."""
    with uow:
        before = now - EXPIRES_AFTER
        lock_accounts(uow, (t.account_id for t in uow.threads.stale_threads(before, lock=False)))
        stale = uow.threads.stale_threads(before)  # read again under the accounts' locks
        for thread in stale:
            state = transition(ThreadState(thread.state), ThreadEvent.EXPIRE)
            uow.threads.save_thread(replace(thread, state=str(state)), now)
            uow.messages.cancel_queued_openings(thread.id)  # never sent now
        uow.commit()
    return len(stale)


# --- polled channels (the widget) ---------------------------------------------------------------

# How stale a polled channel's activity may get before a poll writes it again. A buyer counts as
# present for 10 minutes (core.channels.PRESENT_FOR), so a minute loses nothing and keeps most
# polls read-only (on SQLite a write takes the one writer lock).
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class PollView:
    """What one poll shows: the buyer's thread, their messages after the cursor, the openings
    delivered by this poll, the latest opening when the buyer has not written since, and the
    case behind a live thread (None otherwise)."""

    contact: ContactView
    account: StoredAccount
    thread: ThreadView | None
    messages: tuple[MessageView, ...]
    delivered: tuple[int, ...]
    unanswered_opening: int | None
    case: Case | None


class _NeedsWrite(Exception):
    """A read-only poll found something to write: the buyer's activity or a due opening."""


def poll(uows: Callable[..., UnitOfWork], catalog: Catalog, config: Settings, channel: str,
         web_user: tuple[str, str], after: int, limit: int, now: datetime) -> PollView | None:
    """One poll of a polled channel's client (the widget): the buyer is present now (their
    activity is recorded), an opening waiting for this visit goes out (an open thread becomes
    offered), and the messages after the cursor are read. `uows(read_only=...)` makes units of
    work: most polls only read; one that has something to write runs again as a writer. None
    when `web_user` (account external id, the user's id in the host product) is no contact of
    the account (nothing written)."""
    caps = config.channels.require(channel)
    try:
        with uows(read_only=True) as uow:
            return _poll(uow, catalog, config, caps, web_user, after, limit, now, write=False)
    except _NeedsWrite:
        pass

    def attempt() -> PollView | None:
        uow = uows()
        with uow:
            view = _poll(uow, catalog, config, caps, web_user, after, limit, now, write=True)
            uow.commit()
        if view is not None and view.delivered and view.thread is not None:
            log.info("%s opening delivered to contact #%s (thread %s)", caps.name,
                     view.contact.id, view.thread.id)
        return view

    return retrying(attempt)


def _poll(uow: UnitOfWork, catalog: Catalog, config: Settings, caps: Capabilities,
          web_user: tuple[str, str], after: int, limit: int, now: datetime, *,
          write: bool) -> PollView | None:
    contact = uow.contacts.web_contact(*web_user)
    if contact is None:
        return None
    seen_at = getattr(contact, caps.activity) if caps.activity else now
    stale = caps.activity is not None and (seen_at is None or now - seen_at >= TOUCH_EVERY)
    if write:
        lock_account(uow, contact.account_id)
        if stale:
            _note_activity(uow, contact, caps, now)
    elif stale:
        raise _NeedsWrite
    thread = uow.threads.thread_for_contact(contact, lock=write)
    delivered: list[int] = []
    # An opening goes out only on a live thread and never to an opted-out buyer; other queued
    # messages (a CSM's "… will follow up", replies the API was asked to deliver, in a thread or
    # outside one) are answers and go out as they are.
    may_open = (thread is not None and ThreadState(thread.state) in LIVE
                and contact.opted_out_at is None)
    due = [m for m in uow.messages.due_polled_messages(contact.id, thread.id if thread else None,
                                               [caps.name], now)
           if m.kind != "opening" or may_open]
    if due and not write:
        raise _NeedsWrite
    if due:
        uow.messages.mark_polled_sent([m.id for m in due], now)
        delivered = [m.id for m in due if m.kind == "opening"]
        if delivered and thread is not None and thread.state == ThreadState.OPEN:
            state = transition(ThreadState.OPEN, ThreadEvent.OFFER_SENT)
            thread = replace(thread, state=str(state))
            uow.threads.save_thread(thread, now)
    rows = uow.messages.visible_messages(contact.id, thread.id if thread else None, after, limit)
    unanswered = None
    if thread is not None:
        seen = [m for m in uow.messages.messages(thread.id) if seen_by_buyer(m)]
        openings = [m.id for m in seen if m.kind == "opening"]
        if openings and not any(m.direction == "in" and m.id > openings[-1] for m in seen):
            unanswered = openings[-1]
    account = uow.accounts.get_by_id(contact.account_id)
    case = None
    if thread is not None and ThreadState(thread.state) in LIVE \
            and account.plan == thread.current_plan:
        matrix = uow.usage.matrices([account.id], now)[account.id]
        case = current_case(catalog, terms(account), matrix, now)
        if case is not None and case.target.name != thread.target_plan:
            case = None
    return PollView(contact, account, thread, tuple(rows), tuple(delivered), unanswered, case)


# --- reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThreadDetail:
    account: StoredAccount
    thread: ThreadView | None
    messages: tuple[MessageView, ...]
    suppressions: tuple[tuple[Crossing, datetime, SignalDecision | None], ...]  # not prompted
    upgrade: PlanChangeView | None
    escalations: tuple[EscalationRecord, ...]
    contact: ContactView | None = None  # the thread's addressee (erased: by a pseudonym)
    calls: tuple[CallView, ...] = ()  # the calls the buyer asked for in this thread


def thread_detail(uow: UnitOfWork, external_id: str) -> ThreadDetail:
    """The account's current (or latest) thread with its messages and addressee, the crossings
    the guardrails held back, its plan change and the account's escalations."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        thread = uow.threads.latest_thread(account.id)
        held = tuple(s for s in uow.signals.for_account(account.id)
                     if s[2] is not None and s[2].outcome != Outcome.PROMPTED)
        return ThreadDetail(
            account=account, thread=thread,
            messages=tuple(uow.messages.messages(thread.id)) if thread else (),
            suppressions=held,
            upgrade=uow.plan_changes.plan_change_for_thread(thread.id) if thread else None,
            escalations=tuple(uow.escalations.of_account(account.id)),
            contact=uow.contacts.contact_by_id(thread.contact_id)
            if thread is not None and thread.contact_id is not None else None,
            calls=tuple(uow.calls.of_thread(thread.id)) if thread else ())
