"""Outbound messages through the outbox: what may go out, and what its going out changes.

Decisions and use cases only. Storage reads the facts and writes the outcomes (the ports'
`OutboxRepository`), the one dispatcher (storage.outbox) claims the jobs and runs this module's
handler in its transactions, and a channel's sender (channels.twilio_outbound) does the I/O.

- `queue_message` stores a queued outbound message and, on a channel the outbox pushes, its job
  (kind "message", key "message:<id>", due at the message's `not_before` or now), in the caller's
  unit of work: the message and its job commit together or not at all. Web chat's queued
  messages are pulled by the widget's poll (channels.webchat) and get no job.
- `verdict` is the check at claim time, from the facts as they stand then (consent is checked
  again, not only when the message was queued): send, to which number and whether inside the
  WhatsApp window, or settle (cancelled or failed, and why), or not yet: a message of ours the
  buyer did not ask for (an opening, the text after a missed call) on a phone channel that came
  due in the recipient's quiet hours — a send retried or held past 20:00, a provider outage
  that ended at night — waits for the next allowed minute (`Later`), as it was deferred when
  it was queued. Replies answer what the buyer just wrote, and go out when they are due.
- `MessageJobs` is the outbox's handler of "message" jobs: prepare (facts, then the verdict),
  send (the channel's `MessageSender`), record (the outcome on the message row).
- `message_sent` and `carrier_opt_out` are the use cases an outcome runs, inside the
  dispatcher's unit of work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from core.channels import Capabilities, Channels, Delivery
from core.consent import revoke_consent
from core.conversation import LIVE, ThreadEvent, ThreadState, transition
from core.locking import lock_account
from core.guardrails import GuardrailPolicy, text_allowed_at
from core.jobs import (CANCELLED, FAILED, SENT, Backoff, JobResult, Later, OutboxJob,
                       RecipientOptedOut, Settle)
from core.ports import MessageFacts, UnitOfWork

log = logging.getLogger(__name__)

MESSAGE_KIND = "message"  # the outbox job kind
QUEUED = "queued"
# Messages we send on our own, not in answer to the buyer: quiet hours hold at the send too.
UNASKED = frozenset({"opening", "call_missed"})
# A claimed send may go out a while after its claim (the batch's sends before it, a slow
# provider; at most the claim's lease): one claimed this close to the window's end waits.
SEND_MARGIN = timedelta(minutes=5)
# A free-form WhatsApp message sent after the window closed fails for good (Twilio 63016), a
# template inside the window is fine: so a channel's session window counts as closed a little
# early, to cover the time between the claim and the send.
WINDOW_MARGIN = timedelta(minutes=10)
# Messages are retried sooner and given up earlier than the default job: a late text is a worse
# text, and an opening that could not go out in minutes waits for the next crossing.
RETRY = Backoff(max_attempts=6, base_delay=timedelta(seconds=15), max_delay=timedelta(minutes=30))


@dataclass(frozen=True)
class OutboundMessage:
    """One claimed message as a sender sees it.

    `to` is the E.164 number (the phone for SMS; the WhatsApp number, else the phone, for
    WhatsApp). `in_window` is true when the contact wrote on WhatsApp within the last 24 hours
    (less the margin), so free text may go out; always false on channels without a session
    window. `account_id` (the thread's account, else the contact's) is what recording the send
    locks first.
    """

    id: int
    thread_id: int | None
    contact_id: int
    channel: str
    kind: str
    body: str
    to: str
    in_window: bool
    account_id: int | None = None


class MessageSender(Protocol):
    """Sends one claimed message and returns the provider's message id; raises as a core.jobs
    sender does (PermanentFailure, RecipientOptedOut, AccountRefused, anything else: retried)."""

    def send(self, msg: OutboundMessage) -> str: ...


@dataclass(frozen=True)
class Send:
    """The verdict that a claimed message goes out, to `to`."""

    to: str
    in_window: bool


# --- queueing -----------------------------------------------------------------------------------

def queue_message(uow: UnitOfWork, *, thread_id: int | None, contact_id: int | None,
                  channel: Capabilities, kind: str, body: str, now: datetime,
                  not_before: datetime | None = None, in_reply_to: int | None = None) -> int:
    """Store an outbound message as queued, with its outbox job when the channel's messages are
    pushed (a polled channel's client fetches them); the message's id. Inside the caller's unit
    of work, which commits both or neither."""
    message_id = uow.messages.add_message(
        thread_id=thread_id, contact_id=contact_id, channel=channel.name, direction="out",
        kind=kind, body=body, status=QUEUED, now=now, not_before=not_before,
        in_reply_to=in_reply_to)
    if channel.delivery == Delivery.PUSH:
        uow.jobs.enqueue(MESSAGE_KIND, f"message:{message_id}", {"message_id": message_id}, now,
                         due=not_before or now)
    return message_id


# --- the check at claim time --------------------------------------------------------------------

def address(facts: MessageFacts, channel: Capabilities) -> str | None:
    """The number a message goes to: the first of the channel's address fields the contact has
    (on WhatsApp its own number, else the phone)."""
    for field in channel.address:
        value = getattr(facts, field, None)
        if value:
            return str(value)
    return None


def in_window(facts: MessageFacts, channel: Capabilities, now: datetime) -> bool:
    """Whether free text may go out on a channel with a session window (WhatsApp): the contact
    wrote within it (less the margin). Always False on channels without one."""
    if channel.session_window is None or channel.activity is None:
        return False
    last = getattr(facts, channel.activity, None)
    return last is not None and now - last < channel.session_window - WINDOW_MARGIN


def verdict(facts: MessageFacts, channel: Capabilities | None, now: datetime,
            policy: GuardrailPolicy | None = None) -> Send | Settle | Later:
    """Whether a claimed message may go out now, from its facts as they stand and what its
    channel declares: a prompt queued before a STOP is cancelled, never sent; with `policy`, a
    message of ours (UNASKED) to a phone waits while it is quiet hours where the buyer is."""
    if facts.status != QUEUED:  # a reply carried the opening, or the thread expired
        return Settle(CANCELLED, f"nothing to send: the message is {facts.status}")
    if facts.contact_id is None:
        return Settle(FAILED, "no contact to send to")
    if facts.opted_out:
        return Settle(CANCELLED, "opted out")
    if channel is None:
        return Settle(FAILED, f"no channel {facts.channel!r} is registered to send it")
    if channel.opt_in is not None and getattr(facts, channel.opt_in, None) is None:
        return Settle(CANCELLED, f"no {channel.name} opt-in")
    if facts.kind == "opening" and facts.thread_state is not None \
            and facts.thread_state not in LIVE:
        return Settle(CANCELLED, "thread closed")
    to = address(facts, channel)
    if not to:
        return Settle(FAILED, f"the contact has no number for {facts.channel}")
    if policy is not None and channel.phone and facts.kind in UNASKED:
        zone = facts.timezone or "UTC"
        allowed = text_allowed_at(now, to, zone, policy)
        if allowed == now:  # still allowed when it goes out?
            later = text_allowed_at(now + SEND_MARGIN, to, zone, policy)
            allowed = later if later > now + SEND_MARGIN else now
        if allowed > now:
            return Later(allowed, f"quiet hours where the recipient is: due again at "
                                  f"{allowed.isoformat()}")
    return Send(to, in_window(facts, channel, now))


# --- the handler of "message" jobs --------------------------------------------------------------

def _message_id(job: OutboxJob) -> int | None:
    value = job.payload.get("message_id") if isinstance(job.payload, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class MessageJobs:
    """The outbox's "message" jobs (core.jobs.JobHandler), each sent through the sender of its
    message's channel: `senders` by channel name, or one sender for every pushed channel."""

    def __init__(self, senders: MessageSender | Mapping[str, MessageSender],
                 channels: Channels, policy: GuardrailPolicy | None = None) -> None:
        self._policy = policy
        if isinstance(senders, Mapping):
            self._senders = dict(senders)
        else:
            self._senders = {c.name: senders for c in channels if c.delivery == Delivery.PUSH}
        self._channels = channels

    def prepare(self, uow: UnitOfWork, jobs: list[OutboxJob],
                now: datetime) -> dict[int, OutboundMessage | Settle | Later]:
        ids = {job.id: _message_id(job) for job in jobs}
        facts = uow.outbox.message_facts([m for m in ids.values() if m is not None])
        prepared: dict[int, OutboundMessage | Settle | Later] = {}
        for job in jobs:
            message_id = ids[job.id]
            found = facts.get(message_id) if message_id is not None else None
            if found is None:
                prepared[job.id] = Settle(CANCELLED, "nothing to send: the message is gone") \
                    if message_id is not None else Settle(FAILED, "no message id in the job")
                continue
            decided = verdict(found, self._channels.get(found.channel), now, self._policy)
            if not isinstance(decided, Settle) and found.channel not in self._senders:
                decided = Settle(FAILED, f"no sender is registered for {found.channel}")
            if isinstance(decided, (Settle, Later)):
                prepared[job.id] = decided
                continue
            assert found.contact_id is not None  # the verdict settles a message without one
            prepared[job.id] = OutboundMessage(
                id=found.id, thread_id=found.thread_id, contact_id=found.contact_id,
                channel=found.channel, kind=found.kind, body=found.body, to=decided.to,
                in_window=decided.in_window, account_id=found.account_id)
        return prepared

    def send(self, job: OutboxJob, message: OutboundMessage) -> str:
        return self._senders[message.channel].send(message)

    def record(self, uow: UnitOfWork, job: OutboxJob, message: OutboundMessage | None,
               outcome: JobResult, now: datetime) -> None:
        message_id = _message_id(job)
        if message_id is None:
            return
        if outcome.status == SENT:
            if message is None or not message_sent(uow, message, outcome.result,
                                                   outcome.attempts, now):
                log.warning("message %s: sent, but it was settled meanwhile", message_id)
            return
        # The carrier holds the buyer's opt-out: honour it on every phone channel at once,
        # whoever holds the claim now (before the message row: account, threads, message).
        if isinstance(outcome.cause, RecipientOptedOut) and message is not None \
                and carrier_opt_out(uow, message.contact_id, message.channel, now):
            log.warning("contact %s opted out (carrier error %s on message %s)",
                        message.contact_id, outcome.cause.code, message_id)
        if not outcome.current:
            return
        if outcome.status in (FAILED, CANCELLED):
            uow.outbox.settle(message_id, outcome.status, outcome.error or "", outcome.attempts)
        else:  # RETRY, HELD: still queued; the job says when it is due again
            uow.outbox.note_attempt(message_id, outcome.error or "", outcome.attempts)


# --- what an outcome changes --------------------------------------------------------------------

def message_sent(uow: UnitOfWork, message: OutboundMessage, provider_id: Any, attempts: int,
                 now: datetime) -> bool:
    """The provider accepted `message` (as claimed: its kind, thread and account never change):
    it is sent, with the provider's id; an opening whose thread is still `open` moves the thread
    to `offered`. False when there was nothing to record (the message is gone, or was recorded
    sent or failed already).

    Recorded while the message is queued, and also when it was cancelled during the send (a
    reply carried the opening while it was in flight): it went out all the same, and counts as a
    prompt. The account, then the thread are locked first: the order every writer keeps.
    """
    thread = None
    if message.kind == "opening" and message.thread_id is not None \
            and message.account_id is not None:
        lock_account(uow, message.account_id)
        thread = uow.outbox.lock_thread(message.thread_id)
    # A cancelled message went out all the same if it was cancelled while in flight; it cannot
    # have been cancelled before its claim, which would have settled it instead of sending.
    if not uow.outbox.mark_sent(message.id, str(provider_id), attempts, now,
                                if_status=(QUEUED, CANCELLED)):
        return False
    if thread is not None and thread.state == ThreadState.OPEN:
        state = transition(ThreadState.OPEN, ThreadEvent.OFFER_SENT)
        uow.threads.save_thread(replace(thread, state=str(state)), now)
    return True


def carrier_opt_out(uow: UnitOfWork, contact_id: int, channel: str, now: datetime) -> bool:
    """The carrier has the contact unsubscribed (Twilio error 21610: a STOP we never saw): recorded
    as their opt-out (core.consent.revoke_consent, source "carrier"). False, with nothing
    written, when there is no such contact or they were opted out already."""
    account_id = uow.outbox.contact_account(contact_id)
    if account_id is None:
        return False
    lock_account(uow, account_id)
    contact = uow.contacts.contact_by_id(contact_id)  # read under the lock
    if contact is None or contact.opted_out_at is not None:
        return False
    revoke_consent(uow, contact, channel, "carrier", now)
    return True
