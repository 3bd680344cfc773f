"""Calls the buyer asks for: scheduled, placed through the outbox, followed to their end.

The only outbound calls are those a buyer asked for ("call me", "call me tomorrow after 3", the
widget's Call me button): never a cold call, never to a number that opted out, never in quiet
hours (the window must hold in every zone of the number, as for texts: core.guardrails).

- `schedule_call` (inside the caller's unit of work, which holds the account's lock): a call at
  the time asked, or the next allowed minute, stored as `scheduled` with its outbox job
  (kind "call", due then). A buyer with a call already waiting gets that one (moved to the new
  time when they name one). It refuses a contact who opted out or has no phone.
- `CallJobs` is the outbox's handler of "call" jobs. At claim time it checks again, from the
  facts as they stand (`verdict`): the call still waits, the buyer has not opted out since,
  the thread was not closed (upgraded elsewhere, declined, STOP), and it is not quiet hours now
  (a call due in the night moves to the next allowed minute). Then the channel's `CallPlacer`
  places it; the call is `ringing`, with the provider's id.
- `call_progress` records what the provider reports: ringing, in progress, completed, busy, no
  answer, failed, and (answering-machine detection) a machine. A busy line or no answer is
  tried once more at the next allowed slot (`RETRY_GAP` later, at least); after that, and after
  a machine, the buyer gets a text saying we tried, on a phone channel that may text them.
- `cancel_calls`: a STOP, or the thread's ending, cancels the calls still waiting.

No clock, database or SDK here: `now` is passed in, storage is the ports' `CallRepository`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from collections.abc import Callable
from typing import Protocol
from zoneinfo import ZoneInfo

from core.accounts import StoredAccount
from core.catalog import Catalog
from core.channels import Capabilities, Channels, Delivery
from core.conversation import LIVE, Business, ThreadState
from core.copy import Wording
from core.delivery import queue_message
from core.guardrails import GuardrailPolicy, NoCommonWindow, next_allowed, recipient_zones
from core.jobs import CANCELLED, FAILED, SENT, Backoff, JobResult, OutboxJob, Settle
from core.locking import lock_account
from core.retry import retrying
from core.ports import CallFacts, CallView, ContactView, UnitOfWork

log = logging.getLogger(__name__)

CALL_KIND = "call"  # the outbox job kind
RETRY_GAP = timedelta(minutes=30)  # a busy line or no answer: tried again this much later, at least
LATE = timedelta(minutes=2)  # a call job due earlier than its call's time is a moved call's old job
# Placing a call is retried briefly: a call placed late is a worse call.
RETRY = Backoff(max_attempts=4, base_delay=timedelta(seconds=30), max_delay=timedelta(minutes=5))


class CallStatus(enum.StrEnum):
    """Where a call stands (the API's `calls[].status`)."""

    SCHEDULED = "scheduled"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    MACHINE = "machine"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = CallStatus
PENDING = frozenset({S.SCHEDULED, S.RINGING, S.IN_PROGRESS})
ENDED = frozenset(set(CallStatus) - PENDING)
# The thread states in which a call the buyer asked for still has a purpose.
CALLABLE_THREADS = LIVE | {ThreadState.ESCALATED}

# Twilio's CallStatus values (and what answering-machine detection says) as ours.
PROVIDER_STATUS = {
    "queued": S.RINGING, "initiated": S.RINGING, "ringing": S.RINGING,
    "in-progress": S.IN_PROGRESS, "completed": S.COMPLETED, "busy": S.BUSY,
    "no-answer": S.NO_ANSWER, "failed": S.FAILED, "canceled": S.CANCELLED,
}
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence",
                             "machine_end_other", "fax"})


class Refusal(enum.StrEnum):
    """Why no call was scheduled."""

    OPTED_OUT = "opted_out"
    NO_PHONE = "no_phone"
    NO_WINDOW = "no_window"  # the number's zones share no allowed hour (core.guardrails)
    NO_CHANNEL = "no_channel"  # no registered channel places calls


@dataclass(frozen=True)
class Scheduled:
    """A call waits for `at` (UTC); `moved`: the buyer's waiting call, moved to the time asked;
    `already`: their waiting call, kept as it was."""

    call_id: int
    at: datetime
    asked: datetime | None
    already: bool = False


@dataclass(frozen=True)
class PlacedCall:
    """A claimed call as the channel's placer sees it: the number, and whether the account's
    vertical forbids account details on a machine (HIPAA)."""

    id: int
    to: str
    account_id: int
    hipaa: bool = False


class CallPlacer(Protocol):
    """Places one call (the channel: Twilio's Calls API, or the sandbox) and returns the
    provider's call id; raises as a core.jobs sender does."""

    def place(self, call: PlacedCall) -> str: ...


# --- scheduling ---------------------------------------------------------------------------------

def caller(channels: Channels) -> Capabilities | None:
    """The registered channel that places the calls buyers ask for."""
    return next((c for c in channels if c.rings), None)


def schedule_call(uow: UnitOfWork, channels: Channels, policy: GuardrailPolicy,
                  account: StoredAccount, contact: ContactView, thread_id: int | None,
                  asked: datetime | None, now: datetime) -> Scheduled | Refusal:
    """A call the buyer asked for, at `asked` (their words, read in their zone) or the next
    allowed minute; inside the caller's unit of work, which holds the account's lock."""
    if caller(channels) is None:
        return Refusal.NO_CHANNEL
    if contact.opted_out_at is not None:
        return Refusal.OPTED_OUT
    if not contact.phone:
        return Refusal.NO_PHONE
    zones = recipient_zones(contact.phone, account.timezone)
    wanted = asked if asked is not None and asked > now else now
    try:
        at = next_allowed(wanted, zones, policy.window_start, policy.window_end)
    except NoCommonWindow:
        return Refusal.NO_WINDOW
    waiting = uow.calls.pending_for_contact(contact.id)
    if waiting is not None:
        if waiting.status != S.SCHEDULED or asked is None or waiting.scheduled_for == at:
            return Scheduled(waiting.id, waiting.scheduled_for, asked, already=True)
        uow.calls.save(replace(waiting, scheduled_for=at, requested_at=asked,
                               thread_id=thread_id or waiting.thread_id), now)
        _enqueue(uow, waiting.id, at, now)
        log.info("call %s moved to the time the buyer asked", waiting.id)
        return Scheduled(waiting.id, at, asked)
    call_id = uow.calls.add(account_id=account.id, contact_id=contact.id, thread_id=thread_id,
                            reason="callback", attempt=1, requested_at=asked, scheduled_for=at,
                            now=now)
    _enqueue(uow, call_id, at, now)
    log.info("call %s scheduled for contact #%s", call_id, contact.id)
    return Scheduled(call_id, at, asked)


def _enqueue(uow: UnitOfWork, call_id: int, at: datetime, now: datetime) -> None:
    # One job per call and time: a moved call's old job finds the call not due and ends.
    uow.jobs.enqueue(CALL_KIND, f"call:{call_id}:{at.isoformat()}", {"call_id": call_id}, now,
                     due=at)


def cancel_calls(uow: UnitOfWork, *, contact_id: int | None = None, thread_id: int | None = None,
                 why: str, now: datetime) -> int:
    """Cancel the calls still waiting of a contact (their STOP) or a thread (it ended); how
    many. A call already ringing is left to end as it does."""
    cancelled = uow.calls.cancel_waiting(contact_id=contact_id, thread_id=thread_id, why=why,
                                         now=now)
    if cancelled:
        log.info("%d waiting call(s) cancelled: %s", cancelled, why)
    return cancelled


def callback_reply(result: Scheduled | Refusal, timezone: str, business: Business,
                   policy: GuardrailPolicy, w: Wording) -> str | None:
    """What the buyer is told about the call they asked for; None: the conversation's own reply
    stands (no channel places calls, or they have no phone: their account manager is asked)."""
    if isinstance(result, Refusal):
        if result == Refusal.OPTED_OUT:
            return (f"You opted out of calls and texts from {business.name}, so we will not "
                    f"call you. {w.Do('START')} to opt back in, or contact {business.support}.")
        if result == Refusal.NO_WINDOW:
            return (f"We could not find an hour we may call your number. Please contact "
                    f"{business.support}.")
        return None
    when = spoken_time(result.at, timezone)
    change = 'To change it, ask again with a time, like "call me tomorrow at 10am".'
    if result.already:
        return f"We already have a call to you booked for {when} (your time). {change}"
    if result.asked is not None and result.at > result.asked + timedelta(minutes=1):
        return (f"We only call between {_clock(policy.window_start)} and "
                f"{_clock(policy.window_end)} your time, so we will call you at {when}. "
                f"{change}")
    return (f"Sure, an automated call from {business.name} will ring you at {when} (your "
            f"time). {change}")


def _clock(t: time) -> str:
    return datetime.combine(date(2000, 1, 1), t).strftime("%I:%M %p").lstrip("0")


def spoken_time(at: datetime, timezone: str) -> str:
    """`at` as a person says it in `timezone`: "9:00 AM on Tue Dec 8"."""
    local = at.astimezone(ZoneInfo(timezone))
    clock = local.strftime("%I:%M %p").lstrip("0")
    return f"{clock} on {local:%a %b} {local.day}"


# --- placing (the outbox's "call" jobs) ---------------------------------------------------------

class Reschedule:
    """The verdict that a call due in quiet hours moves to `at`."""

    def __init__(self, at: datetime) -> None:
        self.at = at


def hipaa(catalog: Catalog, facts: CallFacts) -> bool:
    vertical = catalog.verticals.get(facts.vertical)
    return vertical is not None and vertical.hipaa


def verdict(facts: CallFacts | None, catalog: Catalog, policy: GuardrailPolicy, now: datetime
            ) -> PlacedCall | Settle | Reschedule:
    """Whether a claimed call is placed now, from the facts as they stand."""
    if facts is None:
        return Settle(CANCELLED, "nothing to place: the call is gone")
    call = facts.call
    if call.status != S.SCHEDULED:
        return Settle(CANCELLED, f"nothing to place: the call is {call.status}")
    if call.scheduled_for > now + LATE:
        return Settle(CANCELLED, "the call was moved; its own job places it")
    contact = facts.contact
    if contact is None or contact.erased_at is not None:
        return Settle(CANCELLED, "the contact is gone")
    if contact.opted_out_at is not None:
        return Settle(CANCELLED, "opted out")
    if not contact.phone:
        return Settle(FAILED, "the contact has no phone number")
    if facts.thread_state is not None and ThreadState(facts.thread_state) not in CALLABLE_THREADS:
        return Settle(CANCELLED, f"the thread is {facts.thread_state}")
    if facts.plan_changed:
        return Settle(CANCELLED, "the plan was changed since the call was asked for")
    try:
        allowed = next_allowed(now, recipient_zones(contact.phone, facts.timezone),
                               policy.window_start, policy.window_end)
    except NoCommonWindow:
        return Settle(FAILED, "no allowed hour in the number's time zones")
    if allowed > now:
        return Reschedule(allowed)
    return PlacedCall(call.id, contact.phone, call.account_id, hipaa(catalog, facts))


def _call_id(job: OutboxJob) -> int | None:
    value = job.payload.get("call_id") if isinstance(job.payload, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class CallJobs:
    """The outbox's "call" jobs (core.jobs.JobHandler), placed through the channel's placer."""

    def __init__(self, placer: CallPlacer, catalog: Catalog, policy: GuardrailPolicy) -> None:
        self._placer = placer
        self._catalog = catalog
        self._policy = policy

    def prepare(self, uow: UnitOfWork, jobs: list[OutboxJob],
                now: datetime) -> dict[int, PlacedCall | Settle]:
        prepared: dict[int, PlacedCall | Settle] = {}
        for job in jobs:
            call_id = _call_id(job)
            if call_id is None:
                prepared[job.id] = Settle(FAILED, "no call id in the job")
                continue
            facts = uow.calls.facts(call_id)
            decided = verdict(facts, self._catalog, self._policy, now)
            if isinstance(decided, Reschedule):
                assert facts is not None
                uow.calls.save(replace(facts.call, scheduled_for=decided.at), now)
                _enqueue(uow, call_id, decided.at, now)
                decided = Settle(CANCELLED, "quiet hours now: moved to the next allowed minute")
            elif isinstance(decided, Settle) and facts is not None \
                    and facts.call.status == S.SCHEDULED \
                    and facts.call.scheduled_for <= now + LATE:
                uow.calls.save(replace(facts.call, status=str(
                    S.FAILED if decided.status == FAILED else S.CANCELLED), note=decided.reason),
                    now)
            prepared[job.id] = decided
        return prepared

    def send(self, job: OutboxJob, call: PlacedCall) -> str:
        return self._placer.place(call)

    def record(self, uow: UnitOfWork, job: OutboxJob, call: PlacedCall | None,
               outcome: JobResult, now: datetime) -> None:
        if call is None or not outcome.current:
            return
        if outcome.status == SENT:
            lock_account(uow, call.account_id)
            stored = uow.calls.get(call.id)
            if stored is not None and stored.status == S.SCHEDULED:
                uow.calls.save(replace(stored, status=str(S.RINGING),
                                       provider_id=str(outcome.result)), now)
            return
        if outcome.status == FAILED:
            stored = uow.calls.get(call.id)
            if stored is not None and stored.status == S.SCHEDULED:
                uow.calls.save(replace(stored, status=str(S.FAILED),
                                       note=(outcome.error or "")[:200]), now)


# --- what the provider reports ------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """What recording a report did: the call's status after it, whether the report moved it, and
    whether this call was answered by a machine just now (the channel then plays the machine's
    message)."""

    status: str | None
    changed: bool = False
    machine_now: bool = False
    hipaa: bool = False


def call_progress(uows: Callable[[], UnitOfWork], catalog: Catalog, channels: Channels,
                  policy: GuardrailPolicy, business: Business, call_id: int, provider_id: str,
                  status: str | None, answered_by: str | None, now: datetime) -> Progress:
    """Record one report of the provider about call `call_id` (its status callback, or its
    answering-machine detection), once, in a unit of work of its own (retried on a lost race).
    A report with another call's provider id, or one that would move an ended call back,
    changes nothing. A call not recorded as placed yet takes the report's id (Twilio may report
    before our record of the send commits) unless another call has that id."""
    def attempt() -> Progress:
        uow = uows()
        with uow:
            progress = _progress(uow, catalog, channels, policy, business, call_id,
                                 provider_id, status, answered_by, now)
            uow.commit()
        return progress

    return retrying(attempt)


def _progress(uow: UnitOfWork, catalog: Catalog, channels: Channels, policy: GuardrailPolicy,
              business: Business, call_id: int, provider_id: str, status: str | None,
              answered_by: str | None, now: datetime) -> Progress:
    found = uow.calls.facts(call_id)
    if found is None or found.call.provider_id not in (None, provider_id):
        return Progress(None)
    if found.call.provider_id is None and uow.calls.by_provider_id(provider_id) is not None:
        return Progress(None)  # another call's id
    lock_account(uow, found.call.account_id)
    current: CallView | None = uow.calls.get(call_id, lock=True)
    if current is None:
        return Progress(None)
    old = CallStatus(current.status)
    if answered_by is not None:
        new = S.MACHINE if answered_by in MACHINE_ANSWERS else S.IN_PROGRESS
    else:
        new = PROVIDER_STATUS.get(status or "", old)
    if old == S.MACHINE and new == S.COMPLETED:
        new = S.MACHINE  # a machine's call ends "completed": it stays a machine's
    if old in ENDED or new == old or (old == S.IN_PROGRESS and new == S.RINGING):
        return Progress(str(old), hipaa=hipaa(catalog, found))
    uow.calls.save(replace(current, status=str(new), provider_id=provider_id), now)
    contact = found.contact
    if new in (S.BUSY, S.NO_ANSWER, S.FAILED) and contact is not None:
        if current.attempt < 2 and new != S.FAILED and found.thread_state is not None \
                and ThreadState(found.thread_state) in CALLABLE_THREADS \
                and contact.opted_out_at is None and contact.phone:
            _retry(uow, policy, current, contact, found.timezone, now)
        else:
            _tell_we_tried(uow, channels, business, current, contact, found, now)
    elif new == S.MACHINE and contact is not None:
        _tell_we_tried(uow, channels, business, current, contact, found, now)
    return Progress(str(new), changed=True, machine_now=new == S.MACHINE,
                    hipaa=hipaa(catalog, found))


def _retry(uow: UnitOfWork, policy: GuardrailPolicy, call: CallView, contact: ContactView,
           timezone: str, now: datetime) -> None:
    assert contact.phone
    try:
        at = next_allowed(now + RETRY_GAP, recipient_zones(contact.phone, timezone),
                          policy.window_start, policy.window_end)
    except NoCommonWindow:
        return
    retry_id = uow.calls.add(account_id=call.account_id, contact_id=contact.id,
                             thread_id=call.thread_id, reason="retry", attempt=call.attempt + 1,
                             requested_at=call.requested_at, scheduled_for=at, now=now)
    _enqueue(uow, retry_id, at, now)
    log.info("call %s not answered: tried again as call %s", call.id, retry_id)


def _tell_we_tried(uow: UnitOfWork, channels: Channels, business: Business, call: CallView,
                   contact: ContactView, facts: CallFacts, now: datetime) -> None:
    """A text saying we tried to call, on the best phone channel that may text them (none when
    they opted out); due at the next allowed minute like any text of ours."""
    if contact.opted_out_at is not None:
        return
    texting = sorted((c for c in channels if c.delivery == Delivery.PUSH and c.phone
                      and c.address_of(contact)), key=lambda c: c.rank)
    if not texting:
        return
    channel = texting[0]
    body = (f"{business.name}: we tried to call you back, as you asked, but could not reach "
            f"you. Reply here any time, or reply CALL ME to try again. Reply STOP to opt out.")
    queue_message(uow, thread_id=call.thread_id, contact_id=contact.id, channel=channel,
                  kind="call_missed", body=body, now=now)


def machine_message(business: Business, hipaa: bool) -> str:
    """What a machine hears: who called and that a text follows; no figures, and for a HIPAA
    vertical nothing about the account at all."""
    if hipaa:
        return f"Hello, this is {business.name} returning your call. Goodbye."
    return (f"Hello, this is {business.name} returning your call about your plan, as you "
            f"asked. Sorry we missed you; we will send you a text. Goodbye.")


def answer_gate(business: Business) -> str:
    """The first words of a call we placed, before anything about the account: the person
    answering says they are there (a machine does not), then hears the case."""
    return (f"Hello, this is {business.name}, an automated assistant, calling you back as you "
            f"asked. Press 1 or say yes to hear about your plan.")
