"""The conversation engine's use cases: open a thread on a crossing, answer a buyer, change a plan.

Each runs inside the caller's unit of work (opening) or its own (answering), sees storage through
the ports, and leaves anything that must reach the outside world (the billing webhook, the CSM
notice, an SMS or WhatsApp message) in the outbox, to go out after the commit.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from core.accounts import Account, HealthBounds
from core.case import AccountTerms, Case, build_case, current_case, local_today
from core.catalog import Catalog
from core.conversation import (Business, EXPIRES_AFTER, EscalationReason, PHONE_CHANNELS, Reach,
                               ThreadEvent, ThreadState, Turn, choose_channel,
                               figures_changed_message, help_message, is_expired,
                               offer_withdrawn_message, period_taken_message, reply,
                               start_message, stop_message, transition, web_active)
from core.delivery import queue_message
from core.errors import DomainError, NotFound
from core.framing import opening_message
from core.guardrails import (GuardrailPolicy, Outcome, PromptContext, Reason, decide,
                             quarter_start)
from core.intent_model import IntentModel
from core.intents import Intent, classify, understand
from core import routing
from core.money import money_str
from core.ports import ContactView, SignalDecision, ThreadView, UnitOfWork
from core.retry import retrying
from core.thresholds import Crossing, met_thresholds
from core.usage import UsageMatrix

log = logging.getLogger(__name__)

CHANNELS = ("web", "sms", "whatsapp", "voice")
# Reason codes beyond §5's, for crossings that open nothing for other causes.
THREAD_OPEN, NO_CONTACT, SUPERSEDED = "thread_open", "no_contact", "superseded"
PLAN_CHANGED = "plan_changed"  # this billing period already has a plan change


@dataclass(frozen=True)
class EngineConfig:
    policy: GuardrailPolicy = GuardrailPolicy()
    health: HealthBounds = HealthBounds()
    business: Business = Business()
    billing_webhook: bool = False  # enqueue a signed webhook for every plan change
    model: IntentModel | None = None  # the reply model the application loaded (core.intent_model)


def terms(account: Account, plan: str | None = None) -> AccountTerms:
    return AccountTerms(plan=plan or account.plan, vertical=account.vertical,
                        timezone=account.timezone, billing_day=account.billing_day,
                        plan_since=account.plan_since)


def case_summary(case: Case | None) -> dict[str, Any]:
    """The case's figures as stored with an escalation (what the CSM sees); empty without one."""
    if case is None:
        return {}
    return {
        "current_plan": case.current.name, "target_plan": case.target.name,
        "direction": case.direction,
        "usage": {"messages": case.usage.messages, "seats": case.usage.seats,
                  "integrations": case.usage.integrations},
        "cost_current": money_str(case.cost_current.total),
        "cost_target": money_str(case.cost_target.total),
        "monthly_difference": money_str(case.monthly_difference),
        "claims_saving": case.claims_saving,
        "prorated_charge_today": money_str(case.prorated_charge_today),
    }


# --- opening ------------------------------------------------------------------------------------

def open_conversation(uow: UnitOfWork, catalog: Catalog, config: EngineConfig, account: Account,
                      matrix: UsageMatrix, crossing: Crossing, now: datetime) -> SignalDecision:
    """Decide what a crossing leads to (§5) and act on it, inside the caller's transaction:
    a thread with its opening queued on the best channel (§7), a deferral, an escalation for red
    health, or a suppression. The decision is returned to be stored on the signal."""
    conv = uow.conversations
    case = current_case(catalog, terms(account), matrix, now)
    if case is None or case.target.name != crossing.to_plan:
        return SignalDecision(Outcome.SUPPRESSED, SUPERSEDED)
    live = conv.live_thread(account.id, case.target.name)
    if live is not None:
        return SignalDecision(Outcome.SUPPRESSED, THREAD_OPEN, thread_id=live.id)
    if conv.plan_change_in_period(account.id, case.proration.period_start) is not None:
        return SignalDecision(Outcome.SUPPRESSED, PLAN_CHANGED)
    contact = conv.addressee(account.id)
    if contact is None:
        return SignalDecision(Outcome.SUPPRESSED, NO_CONTACT)
    reach = Reach(contact.web_user_id, contact.web_active_at,
                  contact.whatsapp if contact.whatsapp_opt_in_at else None, contact.phone)
    channel = choose_channel(reach, now)
    decision = decide(PromptContext(
        account=account.external_id, account_timezone=account.timezone,
        opted_out=contact.opted_out_at is not None,
        health_red=(account.health.is_red(config.health)
                    or conv.has_open_escalation(account.id)),  # §5.3: an open escalation
        last_decline_at=conv.last_decline_at(account.id),
        prompts_this_quarter=conv.prompts_since(contact.id, quarter_start(now, account.timezone)),
        phone_channel=channel in PHONE_CHANNELS,
        phone=contact.whatsapp if channel == "whatsapp" else contact.phone,
    ), config.policy, now)
    if decision.outcome == Outcome.SUPPRESSED:
        if decision.reason == Reason.HEALTH:
            _escalate(uow, account, None, EscalationReason.HEALTH, case, now)
        elif decision.reason == Reason.CONTROL:
            log.info("control cohort: would have prompted account %s", account.external_id)
        return SignalDecision(decision.outcome, decision.reason)
    # `open` until the opening is out: the outbox moves the thread to offered when it sends it
    # on a phone channel (core.delivery.message_sent); web chat shows it at once if the buyer is
    # in the product, else on their next visit.
    shown_now = channel == "web" and web_active(reach, now) and decision.outcome == Outcome.PROMPTED
    state = ThreadState.OFFERED if shown_now else ThreadState.OPEN
    thread = conv.create_thread(account.id, contact.id, account.plan, case.target.name,
                                case.direction, state, channel, now)
    queue_message(uow, thread_id=thread.id, contact_id=contact.id, channel=channel,
                  kind="opening",
                  body=opening_message(case, catalog, config.business.name
                                       if channel in PHONE_CHANNELS else None),
                  now=now, not_before=decision.defer_until)
    return SignalDecision(decision.outcome, decision.reason, decision.defer_until, thread.id)


# --- answering ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    replies: tuple[str, ...]
    thread_id: int | None
    state: str | None
    duplicate: bool = False


def handle_message(uow: UnitOfWork, catalog: Catalog, config: EngineConfig, contact_external_id: str,
                   channel: str, text: str, provider_id: str | None, now: datetime) -> Answer:
    """Answer one message from a buyer, in the thread of whichever of their identities wrote.

    A message id seen before gets the replies it got the first time and changes nothing (a
    provider retry, a double submit). Replies are stored before the commit and returned after it.
    """
    if channel not in CHANNELS:
        raise DomainError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}",
                          code="unknown_channel", field="channel")
    def find(conv) -> ContactView:
        contact = conv.contact(contact_external_id)
        if contact is None:
            raise NotFound(f"no contact {contact_external_id!r}", code="contact_not_found")
        return contact

    return handle_message_of(uow, catalog, config, find, channel, text, provider_id, now)


def handle_message_from(uow: UnitOfWork, catalog: Catalog, config: EngineConfig, medium: str,
                        address: str, text: str, provider_id: str | None,
                        now: datetime) -> Answer | None:
    """`handle_message` for a message from a phone number (sms or whatsapp), in one unit of work
    (one transaction per inbound message); None, with nothing written, when the number belongs
    to no contact. Retried on a lost race.

    A number of one contact is that contact's. A number several contacts share (of several
    accounts, typically) goes through `_answer_shared_number`: core.routing says whose
    conversation the message belongs to, or that we must ask, and a STOP or START is applied to
    every one of them.
    """
    def work() -> Answer | None:
        contacts = uow.conversations.contacts_by_address(medium, address)
        if not contacts:
            return None
        if len(contacts) == 1:
            return _answer(uow, catalog, config, contacts[0], medium, text, provider_id, now)
        return _answer_shared_number(uow, catalog, config, contacts, medium, text, provider_id,
                                     now)

    return _in_one_unit_of_work(uow, work)


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


def _answer_shared_number(uow: UnitOfWork, catalog: Catalog, config: EngineConfig,
                          contacts: list[ContactView], medium: str, text: str,
                          provider_id: str | None, now: datetime) -> Answer | None:
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
    conv = uow.conversations
    for account_id in sorted({c.account_id for c in contacts}):
        uow.accounts.lock(account_id)  # account before thread, every candidate's, in id order
    facts = conv.routing_facts(medium, [c.id for c in contacts], provider_id)
    if facts.seen_inbound_id is not None:
        replies = conv.replies_to(facts.seen_inbound_id)
        return Answer(tuple(m.body for m in replies), replies[0].thread_id if replies else None,
                      None, duplicate=True)
    by_id = {c.id: c for c in contacts}
    present = [by_id[c.contact_id] for c in facts.candidates if c.contact_id in by_id]
    if not present:  # every one of them was removed meanwhile
        return None
    heard = understand(text, config.model)  # as `_answer` reads it
    intent = heard.intent
    if intent in (Intent.STOP, Intent.START) and heard.sure:
        return _consent_for_everyone(uow, present, medium, text, provider_id, intent, config,
                                     now)
    route = routing.route(facts.candidates, facts.last_write, text,
                          ignore=[plan.name for plan in catalog.plans.values()])
    if route.contact_id is None:
        body = help_message(config.business) if intent == Intent.HELP else route.question
        return _unrouted(uow, present[0], medium, text, provider_id, body, now)
    contact = by_id[route.contact_id]
    if route.reason == routing.Reason.NAMED and _only_naming(text, route.business, config):
        [chosen] = [c for c in facts.candidates if c.contact_id == contact.id]
        return _acknowledge_business(uow, contact, chosen.thread_id, medium, text, provider_id,
                                     route.business, now)
    return _answer(uow, catalog, config, contact, medium, text, provider_id, now)


def _only_naming(text: str, business: str, config: EngineConfig) -> bool:
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
                          medium: str, text: str, provider_id: str | None, business: str,
                          now: datetime) -> Answer:
    """The buyer named the business: the message goes to its thread (the thread a message from
    the contact lands in) with our acknowledgement, which makes that thread the last to write
    to the number, so the conversation continues there. The thread's state does not move."""
    body = acknowledgement(business)
    _store_exchange(uow, contact, thread_id, medium, text, provider_id, body, ("inbound", "reply"),
                    now)
    return Answer((body,), thread_id, None)


def _unrouted(uow: UnitOfWork, holder: ContactView, medium: str, text: str,
              provider_id: str | None, body: str, now: datetime) -> Answer:
    """Keep a message no one conversation can take, and our answer to it, on `holder` (the first
    candidate) outside any thread: nothing is lost, a retry finds it, nothing else changes."""
    _store_exchange(uow, holder, None, medium, text, provider_id, body,
                    (routing.UNROUTED, routing.UNROUTED), now)
    return Answer((body,), None, None)


def _store_exchange(uow: UnitOfWork, contact: ContactView, thread_id: int | None, medium: str,
                    text: str, provider_id: str | None, body: str, kinds: tuple[str, str],
                    now: datetime) -> None:
    """The buyer's message and our one answer, stored (kinds: the inbound's, the answer's); a
    WhatsApp message restarts the number's 24-hour window, so the answer may go out."""
    conv = uow.conversations
    inbound_id = conv.add_message(thread_id=thread_id, contact_id=contact.id, channel=medium,
                                  direction="in", kind=kinds[0], body=text, status="received",
                                  now=now, provider_id=provider_id)
    if medium == "whatsapp":
        conv.touch_whatsapp(contact.id, now)
    conv.add_message(thread_id=thread_id, contact_id=contact.id, channel=medium, direction="out",
                     kind=kinds[1], body=body, status="sent", now=now, in_reply_to=inbound_id)


def _consent_for_everyone(uow: UnitOfWork, contacts: list[ContactView], medium: str, text: str,
                          provider_id: str | None, intent: Intent, config: EngineConfig,
                          now: datetime) -> Answer:
    """STOP or START from a shared number: for every contact with it, whatever the routing would
    say. Opting out is the person's at that number (a STOP must never be applied to one account
    on a guess while another keeps texting them); START is the same person asking back in. Each
    contact gets the message (for its record and a retry) and the consent change; STOP closes
    the live threads addressed to them, as the carrier's opt-out does (`revoke_consent`). The
    confirmation is one message, stored once."""
    conv = uow.conversations
    first = None
    for contact in contacts:
        inbound_id = conv.add_message(thread_id=None, contact_id=contact.id, channel=medium,
                                      direction="in", kind=routing.UNROUTED, body=text,
                                      status="received", now=now, provider_id=provider_id)
        first = first if first is not None else inbound_id
        if intent == Intent.STOP:
            revoke_consent(uow, contact, medium, "buyer", now)
        else:
            conv.record_consent(contact.id, "grant", medium, "buyer", now)
        if medium == "whatsapp":
            conv.touch_whatsapp(contact.id, now)
    body = stop_message(config.business) if intent == Intent.STOP else \
        start_message(config.business)
    conv.add_message(thread_id=None, contact_id=contacts[0].id, channel=medium, direction="out",
                     kind=routing.UNROUTED, body=body, status="sent", now=now, in_reply_to=first)
    return Answer((body,), None, None)


def handle_message_of(uow: UnitOfWork, catalog: Catalog, config: EngineConfig, find,
                      channel: str, text: str, provider_id: str | None,
                      now: datetime) -> Answer | None:
    """`handle_message` for the contact `find(conversations)` returns, looked up in the same unit
    of work as the answer (one transaction per message); None, with nothing written, when it
    returns None. Retried on a lost race."""
    def work() -> Answer | None:
        contact = find(uow.conversations)
        if contact is None:
            return None
        return _answer(uow, catalog, config, contact, channel, text, provider_id, now)

    return _in_one_unit_of_work(uow, work)


def _answer(uow: UnitOfWork, catalog: Catalog, config: EngineConfig, contact: ContactView,
            channel: str, text: str, provider_id: str | None, now: datetime) -> Answer:
    conv = uow.conversations
    uow.accounts.lock(contact.account_id)  # account before thread: the order every writer keeps
    if provider_id:
        seen = conv.inbound(contact.id, channel, provider_id)
        if seen is not None:
            return Answer(tuple(m.body for m in conv.replies_to(seen.id)), seen.thread_id,
                          None, duplicate=True)
    thread = conv.thread_for_contact(contact)
    account = uow.accounts.get_by_id(contact.account_id)
    # The account's own name is no instruction: "Demo Co here, what's the price?" asks the
    # price. Only the whole name is taken out: single words of it ("Not Just Pizza", "Stop & Go
    # Auto") must never change what the buyer says.
    heard = understand(_without_whole_name(text, account.name) or text, config.model)
    opted_out = contact.opted_out_at is not None and channel in PHONE_CHANNELS
    if thread is None and heard.intent not in (Intent.STOP, Intent.START) and not opted_out:
        # (an opted-out buyer who writes in is answered, not sent the offer)
        thread = _buyer_thread(uow, catalog, account, contact, channel, now)
    state = ThreadState(thread.state) if thread else None
    # A thread whose change was made is answered with the figures of that moment (what was
    # charged, until when), not the case as it would stand today.
    change = conv.plan_change_for_thread(thread.id) \
        if thread is not None and state == ThreadState.UPGRADED else None
    case = _thread_case(uow, catalog, account, thread, change.requested_at if change else now) \
        if thread else None
    if thread and is_expired(state, thread.updated_at, now):
        state = transition(state, ThreadEvent.EXPIRE)
    charged = change is not None
    turn = reply(state, heard, text, case, catalog, config.business, charged=charged,
                 phone=channel in PHONE_CHANNELS,
                 # In the product the buyer acts for themselves: the STOP rule is the phone's.
                 opted_out=opted_out)
    inbound_id = conv.add_message(thread_id=thread.id if thread else None, contact_id=contact.id,
                                  channel=channel, direction="in", kind="inbound", body=text,
                                  status="received", now=now, provider_id=provider_id)
    replies = turn.replies
    if thread is not None:
        thread, replies = _apply(uow, catalog, config, account, contact, thread, state, case, turn,
                                 channel, now)
    if thread is None and turn.escalation is not None:  # no offer, but a person is wanted
        _escalate(uow, account, None, turn.escalation, case, now)
    if turn.consent:
        conv.record_consent(contact.id, turn.consent, channel, "buyer", now)
    if channel == "web":
        conv.touch_web(contact.id, now)
    elif channel == "whatsapp":
        conv.touch_whatsapp(contact.id, now)
    for body in replies:
        conv.add_message(thread_id=thread.id if thread else None, contact_id=contact.id,
                         channel=channel, direction="out", kind="reply", body=body, status="sent",
                         now=now, in_reply_to=inbound_id)
    return Answer(replies, thread.id if thread else None, thread.state if thread else None)


def _without_whole_name(text: str, name: str) -> str:
    """`text` with the account's whole name taken out, case-insensitively (not its words)."""
    if len(name.strip()) < 3:
        return text
    return re.sub(r"\s+", " ", re.sub(re.escape(name.strip()), " ", text,
                                      flags=re.IGNORECASE)).strip()


def _buyer_thread(uow: UnitOfWork, catalog: Catalog, account: Account, contact: ContactView,
                  channel: str, now: datetime) -> ThreadView | None:
    """A buyer with no thread writes in while a plan change applies to their account (a
    control-cohort account, one whose crossing the guardrails held back, or one whose usage
    changed since): they are answered like anyone, in a new thread marked buyer-initiated so the
    experiment counts it apart. None when no change applies or this period already had one."""
    matrix = uow.usage.matrices([account.id], now)[account.id]
    case = current_case(catalog, terms(account), matrix, now)
    conv = uow.conversations
    if case is None or conv.plan_change_in_period(account.id, case.proration.period_start):
        return None
    if conv.live_thread(account.id, case.target.name) is not None:
        return None  # a colleague's thread: thread_for_contact would have found it
    log.info("buyer-initiated thread for account %s (%s -> %s)", account.external_id,
             case.current.name, case.target.name)
    return conv.create_thread(account.id, contact.id, account.plan, case.target.name,
                              case.direction, ThreadState.OPEN, channel, now,
                              initiated_by="buyer")


def _thread_case(uow: UnitOfWork, catalog: Catalog, account: Account, thread: ThreadView,
                 now: datetime) -> Case:
    """The thread's case now: from the plan the thread started on to its target."""
    matrix = uow.usage.matrices([account.id], now)[account.id]
    t = terms(account, thread.current_plan)
    met = [(metric, value, th.at) for th, metric, value
           in met_thresholds(catalog, catalog.plan(thread.current_plan), matrix)
           if th.to_plan == thread.target_plan]
    return build_case(catalog, t, matrix, catalog.plan(thread.target_plan), met, now)


def _apply(uow: UnitOfWork, catalog: Catalog, config: EngineConfig, account: Account,
           contact: ContactView, thread: ThreadView, state: ThreadState, case: Case, turn: Turn,
           channel: str, now: datetime) -> tuple[ThreadView, tuple[str, ...]]:
    conv = uow.conversations
    replies, events = turn.replies, list(turn.events)
    step_shown = ThreadEvent.AFFIRM in events  # the confirmation step, with today's figures
    if turn.run_upgrade:
        refusal = _refusal(uow, catalog, account, thread, case)
        if refusal is not None:  # the confirmation cannot run as shown: say why, change nothing
            replies, events = refusal
            step_shown = not events  # the step shown again with the new figures
        elif not change_plan(uow, account, thread, case, channel, config, now):
            replies, events = (period_taken_message(case),), [ThreadEvent.EXPIRE]
    for event in events:
        state = transition(state, event)
    if ThreadEvent.OFFER_SENT in events:  # the opening went out in this reply, not from the outbox
        conv.cancel_queued_openings(thread.id)
    if turn.escalation is not None:
        _escalate(uow, account, thread.id, turn.escalation, case, now)
    if turn.notify_csm:  # the buyer went ahead at list price: the CSM's card is redrawn
        for escalation in conv.escalations(account.id):
            if escalation["thread_id"] == thread.id and escalation["status"] != "resolved":
                uow.jobs.enqueue("csm_escalation_update",
                                 f"escalation-update:{escalation['id']}:went-ahead:{now.isoformat()}",
                                 {"escalation_id": escalation["id"]}, now)
                log.info("escalation %s: the buyer went ahead at list price", escalation["id"])
    confirm = (case.proration.period_start, case.prorated_charge_today) if step_shown \
        else (thread.confirm_period_start, thread.confirm_charge)
    # A decline's reason starts the cooldown only while the thread stays declined (or escalated
    # because the buyer is leaving); "actually, yes" afterwards clears it.
    keeps_reason = state in (ThreadState.DECLINED, ThreadState.ESCALATED)
    thread = replace(thread, state=str(state), last_channel=channel,
                     decline_reason=turn.decline_reason or (thread.decline_reason if keeps_reason else None),
                     confirm_period_start=confirm[0], confirm_charge=confirm[1])
    conv.save_thread(thread, now)
    return thread, replies


def _refusal(uow: UnitOfWork, catalog: Catalog, account: Account, thread: ThreadView,
             case: Case) -> tuple[tuple[str, ...], list[ThreadEvent]] | None:
    """Why a confirmation must not run as it stands, as (replies, events); None when it may."""
    if account.plan != thread.current_plan:  # the plan changed under the offer (the operator)
        return (offer_withdrawn_message(account.plan),), [ThreadEvent.EXPIRE]
    if (thread.confirm_period_start, thread.confirm_charge) != \
            (case.proration.period_start, case.prorated_charge_today):
        # A new billing period (or new figures) since the confirmation step: never charge what
        # the buyer did not see; show the step again.
        return (figures_changed_message(case, catalog),), []
    return None


def change_plan(uow: UnitOfWork, account: Account, thread: ThreadView, case: Case, channel: str,
                config: EngineConfig, now: datetime) -> bool:
    """Record the plan change once; False when this billing period already has one.

    Up-tier applies now; down-tier waits for the next period (`apply_due_plan_changes`). The
    database allows one pending-or-done change per account and period (a unique key), so two
    channels confirming at once cannot both win: the loser's transaction fails, is retried, and
    finds the change made.
    """
    conv = uow.conversations
    if conv.plan_change_in_period(account.id, case.proration.period_start) is not None:
        return False
    key = f"thread:{thread.id}:{thread.target_plan}"
    change = conv.add_plan_change(
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
        # Due in UTC tomorrow at the latest; each account's own date decides.
        for change in uow.conversations.due_plan_changes(now.date() + timedelta(days=1)):
            account = uow.accounts.get_by_id(change.account_id)
            if local_today(now, account.timezone) >= change.effective:
                uow.accounts.change_plan(account.id, change.to_plan, now,
                                         from_plan=change.from_plan, source="conversation",
                                         plan_change_id=change.id)
                uow.conversations.mark_plan_change_done(change.id, now)
                applied += 1
        uow.commit()
    return applied


def revoke_consent(uow: UnitOfWork, contact: ContactView, channel: str, source: str,
                   now: datetime) -> None:
    """An opt-out learnt other than from the buyer's own message (the carrier's 21610, a CSM's
    "do not contact"): recorded as a STOP would be, inside the caller's unit of work (which holds
    the account lock): a consent event, and the contact's live threads closed as opted_out."""
    conv = uow.conversations
    for thread in conv.live_threads_for_contact(contact.id):
        state = transition(ThreadState(thread.state), ThreadEvent.OPT_OUT)
        conv.save_thread(replace(thread, state=str(state)), now)
    conv.record_consent(contact.id, "revoke", channel, source, now)
    log.info("opt-out (%s) recorded for contact %s", source, contact.external_id)


def expire_threads(uow: UnitOfWork, now: datetime) -> int:
    """Threads without an answer for 14 days expire (§6), openings that never went out too, so
    a later crossing can offer again."""
    with uow:
        stale = uow.conversations.stale_threads(now - EXPIRES_AFTER)
        for thread in stale:
            state = transition(ThreadState(thread.state), ThreadEvent.EXPIRE)
            uow.conversations.save_thread(replace(thread, state=str(state)), now)
            uow.conversations.cancel_queued_openings(thread.id)  # never sent now
        uow.commit()
    return len(stale)


def _escalate(uow: UnitOfWork, account: Account, thread_id: int | None,
              reason: EscalationReason, case: Case | None, now: datetime) -> None:
    """Open an escalation and notify the CSM lane, unless the same one is already open."""
    conv = uow.conversations
    if conv.has_open_escalation(account.id, thread_id=thread_id, reason=reason):
        return
    escalation_id = conv.add_escalation(account.id, thread_id, reason, case_summary(case), now)
    # The CSM-notifier port is a job kind: its sender (a log line now, Slack later) runs after
    # the commit, from the outbox.
    uow.jobs.enqueue("csm_escalation", f"escalation:{escalation_id}",
                     {"account": account.external_id, "thread_id": thread_id, "reason": str(reason),
                      "escalation_id": escalation_id}, now)


# --- reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThreadDetail:
    account: Account
    thread: ThreadView | None
    messages: tuple
    suppressions: tuple  # (Crossing, detected_at, SignalDecision) not prompted
    upgrade: Any
    escalations: tuple


def thread_detail(uow: UnitOfWork, external_id: str) -> ThreadDetail:
    """The account's current (or latest) thread with its messages, the crossings the guardrails
    held back, its plan change and the account's escalations."""
    with uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        conv = uow.conversations
        thread = conv.latest_thread(account.id)
        held = tuple(s for s in uow.signals.for_account(account.id)
                     if s[2] is not None and s[2].outcome != Outcome.PROMPTED)
        return ThreadDetail(
            account=account, thread=thread,
            messages=tuple(conv.messages(thread.id)) if thread else (),
            suppressions=held,
            upgrade=conv.plan_change_for_thread(thread.id) if thread else None,
            escalations=tuple(conv.escalations(account.id)))
