"""The CSM lane's use cases: open an escalation, claim / schedule a call / resolve it, remember
where it was posted, and what the lane shows.

Every change takes the account's lock first, then the escalation's (the order every writer
keeps, core.locking), so two clicks on the same button, a Slack retry and the sandbox
page acting at once change an escalation once: the second finds the state already moved and
gets `changed=False`. The CSM-notifier port is a job kind: the sender (Slack, or a log line)
runs after the commit, from the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.accounts import StoredAccount
from core.case import Case, current_case, terms
from core.catalog import Catalog
from core.channels import Channels, Delivery
from core.conversation import EscalationReason, follow_up_message
from core.delivery import queue_message
from core.errors import NotFound
from core.calls import spoken_time
from core.guardrails import GuardrailPolicy, NoCommonWindow, next_allowed, recipient_zones
from core.locking import lock_account
from core.money import money_str
from core.ports import EscalationCard, EscalationRecord, UnitOfWork
from core.retry import retrying
from core.usage import UsageMatrix

log = logging.getLogger(__name__)

OPEN, CLAIMED, RESOLVED = "open", "claimed", "resolved"
# Outbox job kinds: a new escalation to post, a posted one to redraw (its state changed).
POST_JOB, REDRAW_JOB = "csm_escalation", "csm_escalation_update"


class Action(StrEnum):
    """What a CSM can do with an escalation (the Slack buttons' action ids)."""

    CLAIM = "claim"
    SCHEDULE_CALL = "schedule_call"
    RESOLVE = "resolved"


@dataclass(frozen=True)
class ActionResult:
    """What a CSM action did: `changed` is False when the escalation was already past it;
    `card` is the escalation as it stands (None: no such escalation)."""

    changed: bool
    card: EscalationCard | None


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


def escalate(uow: UnitOfWork, account: StoredAccount, thread_id: int | None,
             reason: EscalationReason, case: Case | None, now: datetime) -> int | None:
    """Open an escalation and notify the CSM lane, unless the same one is already open (inside
    the caller's unit of work, which holds the account's lock). Its id, or None."""
    if uow.escalations.has_open(account.id, thread_id=thread_id, reason=reason):
        return None
    escalation_id = uow.escalations.add(account.id, thread_id, reason, case_summary(case), now)
    uow.jobs.enqueue(POST_JOB, f"escalation:{escalation_id}",
                     {"account": account.external_id, "thread_id": thread_id,
                      "reason": str(reason), "escalation_id": escalation_id}, now)
    return escalation_id


def tell_csm(uow: UnitOfWork, account: StoredAccount, thread_id: int, what: str,
             now: datetime) -> None:
    """The buyer did something the CSM who has the thread must see (went ahead at list price,
    said no): every unresolved escalation of the thread gets its card redrawn."""
    for escalation in uow.escalations.of_account(account.id):
        if escalation.thread_id == thread_id and escalation.status != RESOLVED:
            uow.jobs.enqueue(REDRAW_JOB,
                             f"escalation-update:{escalation.id}:{what}:{now.isoformat()}",
                             {"escalation_id": escalation.id}, now)
            log.info("escalation %s: the buyer %s", escalation.id, what.replace("-", " "))


def _by(csm_id: str | None, csm_name: str, now: datetime) -> dict[str, Any]:
    return {"id": csm_id, "name": csm_name, "at": now.isoformat()}


def _already_done(escalation: EscalationRecord, action: Action) -> bool:
    if action == Action.CLAIM:
        return escalation.status != OPEN
    if action == Action.SCHEDULE_CALL:
        return escalation.status == RESOLVED or bool(escalation.lane.get("call_requested"))
    return escalation.status == RESOLVED


def act(uows: Callable[[], UnitOfWork], channels: Channels, escalation_id: int, action: Action,
        csm_id: str | None, csm_name: str, business_name: str, now: datetime,
        policy: GuardrailPolicy = GuardrailPolicy()) -> ActionResult:
    """One CSM action, once (retried on a lost race).

    - claim: an open escalation becomes the CSM's; the buyer is told a named person will follow
      up (a reply queued on the thread's last channel, delivered as that channel delivers).
    - schedule_call: the CSM will call the buyer (once): the card shows who to call (name,
      number, the channel they last wrote on) and the first time allowed to call them (never in
      their quiet hours, in every zone of the number); a resolved escalation stays as is.
    - resolve: an open or claimed escalation is closed (once).
    """
    action = Action(action)

    def attempt() -> ActionResult:
        uow = uows()
        with uow:
            account_id = uow.escalations.account_of(escalation_id)
            if account_id is None:
                return ActionResult(False, None)
            lock_account(uow, account_id)
            escalation = uow.escalations.get(escalation_id, lock=True)
            if escalation is None:
                return ActionResult(False, None)
            if _already_done(escalation, action):
                return ActionResult(False, uow.escalations.card(escalation_id))
            who = _by(csm_id, csm_name, now)
            if action == Action.CLAIM:
                uow.escalations.update(escalation_id, status=CLAIMED, claimed_by=who)
                _follow_up(uow, channels, escalation, csm_name, business_name, now)
            elif action == Action.SCHEDULE_CALL:
                call = _call_to_make(uow, escalation, policy, now)
                uow.escalations.update(escalation_id, call_requested={**who, "call": call})
            else:
                uow.escalations.update(escalation_id, status=RESOLVED, resolved_by=who)
            card = uow.escalations.card(escalation_id)
            uow.commit()
        log.info("escalation %s: %s", escalation_id, action.value)
        return ActionResult(True, card)

    return retrying(attempt)


def _call_to_make(uow: UnitOfWork, escalation: EscalationRecord, policy: GuardrailPolicy,
                  now: datetime) -> dict[str, Any] | None:
    """Who the CSM calls and from when: the thread's addressee (else the account's), their
    number, the channel they last wrote on, and the first allowed minute in their zones. None
    when there is no one to call; no number when they have none (or opted out: no call)."""
    thread = (uow.threads.thread(escalation.thread_id)
              if escalation.thread_id is not None else None)
    contact = uow.contacts.contact_by_id(thread.contact_id) \
        if thread is not None and thread.contact_id is not None \
        else uow.contacts.addressee(escalation.account_id)
    account = uow.accounts.get_by_id(escalation.account_id)
    if contact is None or account is None:
        return None
    number = contact.phone if contact.opted_out_at is None else None
    zones = recipient_zones(number, account.timezone)
    try:
        at = next_allowed(now, zones, policy.window_start, policy.window_end)
    except NoCommonWindow:
        at = None
    return {"contact": contact.name or contact.external_id, "number": number,
            "opted_out": contact.opted_out_at is not None,
            "last_channel": thread.last_channel if thread is not None else None,
            "at": at.isoformat() if at else None, "zone": zones[0],
            "local": spoken_time(at, zones[0]) if at else None}


def _follow_up(uow: UnitOfWork, channels: Channels, escalation: EscalationRecord,
               csm_name: str, business_name: str, now: datetime) -> None:
    """The buyer is told a named person will follow up, on the channel they last used (sent by
    the outbox where the channel pushes, shown on the next poll in the widget); when we cannot
    deliver there (a channel only relayed to us), on the channel an opening would take."""
    thread = (uow.threads.thread(escalation.thread_id)
              if escalation.thread_id is not None else None)
    if thread is None or thread.contact_id is None:
        return
    channel = channels.get(thread.last_channel)
    if channel is None or channel.delivery == Delivery.NONE:
        contact = uow.contacts.contact_by_id(thread.contact_id)
        channel = channels.choose(contact, now) if contact is not None else None
    if channel is None:
        log.warning("escalation %s: no channel reaches the buyer for the follow-up",
                    escalation.id)
        return
    queue_message(uow, thread_id=thread.id, contact_id=thread.contact_id, channel=channel,
                  kind="reply", body=follow_up_message(csm_name, business_name), now=now)


def posted(uows: Callable[[], UnitOfWork], escalation_id: int, where: dict[str, str]) -> None:
    """Remember where the escalation was posted ({"channel", "ts"}), so a retried post job
    never posts it twice."""
    def attempt() -> None:
        uow = uows()
        with uow:
            account_id = uow.escalations.account_of(escalation_id)
            if account_id is None:
                return
            lock_account(uow, account_id)
            uow.escalations.update(escalation_id, slack=dict(where))
            uow.commit()

    retrying(attempt)


def redraw_later(uows: Callable[[], UnitOfWork], escalation_id: int, action: str,
                 now: datetime) -> bool:
    """Queue a job that redraws the escalation's posted message (one per action: each acts
    once). False when it was queued already."""
    uow = uows()
    with uow:
        queued = uow.jobs.enqueue(REDRAW_JOB, f"escalation-update:{escalation_id}:{action}",
                                  {"escalation_id": escalation_id}, now)
        uow.commit()
    return queued


# --- what the lane shows ------------------------------------------------------------------------

def card(uows: Callable[..., UnitOfWork], escalation_id: int) -> EscalationCard | None:
    with uows(read_only=True) as uow:
        return uow.escalations.card(escalation_id)


def recent(uows: Callable[..., UnitOfWork], limit: int = 50) -> list[EscalationCard]:
    with uows(read_only=True) as uow:
        return uow.escalations.recent_cards(limit)


@dataclass(frozen=True)
class AccountReport:
    """What the lane's account command shows: the account, its latest escalations, its usage
    and case now, and its latest thread."""

    account: StoredAccount
    escalations: tuple[EscalationCard, ...]
    usage: UsageMatrix
    case: Case | None
    thread_state: str | None
    thread_target: str | None


def account_report(uows: Callable[..., UnitOfWork], catalog: Catalog, external_id: str,
                   now: datetime) -> AccountReport:
    """NotFound when there is no such account."""
    with uows(read_only=True) as uow:
        account = uow.accounts.get(external_id)
        if account is None:
            raise NotFound(f"no account {external_id!r}", code="account_not_found")
        cards = tuple(uow.escalations.account_cards(account.id))
        matrix = uow.usage.matrices([account.id], now)[account.id]
        thread = uow.threads.latest_thread(account.id)
    return AccountReport(account, cards, matrix, current_case(catalog, terms(account), matrix, now),
                         thread.state if thread else None, thread.target_plan if thread else None)
