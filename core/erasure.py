"""Erasure: a buyer's personal data removed on request, the counts the metrics need kept.

`erase_contact` empties the contact's name, phone, WhatsApp number, web user id and email,
replaces every message body of the contact (theirs anywhere, and every message of the threads
addressed to them, ours included) by the marker `ERASED`, withdraws what was queued to them,
revokes their consent (a consent event, source "erasure", closing their live threads as a STOP
would), redraws the CSM lane's posted cards that quoted their messages, removes the inbound
messages they sent that wait in the spool, and gives the contact a pseudonym for an external id
(`pseudonym`: the old id may itself be personal, an email say). Rows stay: messages with their
direction, kind, channel, status and times, threads and their states, plan history, decline
reasons, consent events, escalations. So every count stays what it was.

Idempotent: the old id (or the pseudonym) erased again finds the erased contact and says so,
changing nothing. The old id given to a new contact later (PUT /accounts) makes a new contact;
nothing of the erased one comes back, and erasing that one too gives it a pseudonym of its own.

Locks: the account first, then the contact's threads, then the rest (core.locking). A message
from the contact racing the erasure either commits first (and is erased with the rest) or waits
on the account's lock and, reading the contact again under it, finds no contact any more
(core.handlers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from core import audit
from core.accounts import ERASED_PREFIX
from core.consent import revoke_consent
from core.conversation import LIVE, ThreadState
from core.csm import REDRAW_JOB
from core.errors import NotFound
from core.locking import lock_account
from core.ports import ContactView, InboundSpool, UnitOfWork
from core.retry import retrying

log = logging.getLogger(__name__)

ERASED = "[erased]"  # what an erased message's body says instead
CONSENT_CHANNEL = "all"  # the erasure's revocation holds on every channel
CONSENT_SOURCE = "erasure"


def pseudonym(external_id: str) -> str:
    """The id an erased contact goes by: "erased:" and the first 16 hex digits of the SHA-256 of
    its old id. The same old id always gives the same pseudonym (so erasing it again finds it);
    the old id cannot be read back from it, though a guess can be checked against it."""
    if external_id.startswith(ERASED_PREFIX):
        return external_id
    # The audit trail's pseudonym of the same id, under another prefix: the trail's events
    # about a contact (sha256:<digest>) and the erased contact (erased:<digest>) match.
    return ERASED_PREFIX + audit.pseudonym(external_id).split(":", 1)[1]


@dataclass(frozen=True)
class ErasureResult:
    """What an erasure did, for the operator and the audit trail. Names the contact by its
    pseudonym only, and holds counts, never what was erased.

    - `messages_blanked`: message bodies replaced by the marker (inbound and outbound);
    - `addresses_removed`: the phone, WhatsApp number, web user id and email the contact had;
    - `jobs_cancelled`: messages queued to them and withdrawn (an SMS or WhatsApp message's
      outbox job then settles cancelled, a web chat message is never shown);
    - `threads_closed`: their live threads, closed as opted out;
    - `escalations_redrawn`: CSM cards posted with their messages, queued to be drawn again;
    - `spool_entries_removed`: inbound messages from their numbers waiting on disk.

    `already_erased`: nothing was done now (the counts are 0); `erased_at` is when it was."""

    contact: str
    already_erased: bool
    erased_at: datetime
    messages_blanked: int = 0
    addresses_removed: int = 0
    jobs_cancelled: int = 0
    threads_closed: int = 0
    escalations_redrawn: int = 0
    spool_entries_removed: int = 0


def counts(result: ErasureResult) -> dict[str, int]:
    """What the audit trail records of an erasure (the edges write the event: the API's
    `contacts.erase`, the CLI's): counts only, and whether it had been done already."""
    return {"already_erased": int(result.already_erased),
            "messages_blanked": result.messages_blanked,
            "addresses_removed": result.addresses_removed, "jobs_cancelled": result.jobs_cancelled,
            "threads_closed": result.threads_closed,
            "escalations_redrawn": result.escalations_redrawn,
            "spool_entries_removed": result.spool_entries_removed}


def erase_contact(uow: UnitOfWork, spool: InboundSpool | None, external_id: str,
                  now: datetime) -> ErasureResult:
    """Erase the contact with this external id (or this pseudonym), in one unit of work,
    retried on a lost race. NotFound when no contact has, or had, this id."""

    def attempt() -> ErasureResult:
        with uow:
            result = _erase(uow, spool, external_id, now)
            uow.commit()
            return result

    result = retrying(attempt)
    if not result.already_erased:
        log.info("contact erased as %s: %d message bodies, %d addresses, %d queued messages, "
                 "%d live threads, %d escalation cards, %d spool entries", result.contact,
                 result.messages_blanked, result.addresses_removed, result.jobs_cancelled,
                 result.threads_closed, result.escalations_redrawn,
                 result.spool_entries_removed)
    return result


def _erase(uow: UnitOfWork, spool: InboundSpool | None, external_id: str,
           now: datetime) -> ErasureResult:
    found = uow.contacts.contact(external_id) or uow.contacts.erased_contact(
        pseudonym(external_id))
    if found is None:
        raise NotFound(f"no contact {external_id!r}", code="contact_not_found")
    if found.erased_at is not None:
        return ErasureResult(found.external_id, True, found.erased_at)
    lock_account(uow, found.account_id)
    contact = uow.contacts.contact_by_id(found.id)  # read again under the lock
    if contact is None:  # removed by the operator meanwhile
        raise NotFound(f"no contact {external_id!r}", code="contact_not_found")
    if contact.erased_at is not None:  # erased meanwhile
        return ErasureResult(contact.external_id, True, contact.erased_at)
    threads = uow.threads.lock_threads_of_contact(contact.id)
    name = pseudonym(contact.external_id)
    taken = uow.contacts.contact(name)
    if taken is not None and taken.id != contact.id:  # this id was erased before, on another
        name = f"{name}-{contact.id}"
    messages = uow.messages.erase_messages(contact.id, [t.id for t in threads], ERASED, now)
    addresses = uow.contacts.erase(contact.id, name, now)
    erased = replace(contact, external_id=name, phone=None, whatsapp=None, web_user_id=None,
                     erased_at=now)
    live = sum(1 for t in threads if ThreadState(t.state) in LIVE)
    revoke_consent(uow, erased, CONSENT_CHANNEL, CONSENT_SOURCE, now)
    _forget_calls_to_make(uow, contact, name, messages.thread_ids)
    redrawn = _redraw_cards(uow, contact, messages.thread_ids, now)
    numbers = {n for n in (contact.phone, contact.whatsapp) if n}
    spooled = spool.forget(numbers) if spool is not None and numbers else 0
    return ErasureResult(name, False, now, messages_blanked=messages.blanked,
                         addresses_removed=addresses, jobs_cancelled=messages.cancelled,
                         threads_closed=live, escalations_redrawn=redrawn,
                         spool_entries_removed=spooled)


def _forget_calls_to_make(uow: UnitOfWork, contact: ContactView, name: str,
                          thread_ids: frozenset[int]) -> None:
    """A CSM's scheduled call kept who to call (name, number) on the escalation: of this
    contact, only the pseudonym stays (the card is redrawn with the rest)."""
    for escalation in uow.escalations.of_account(contact.account_id):
        requested = escalation.lane.get("call_requested") or {}
        call = requested.get("call") or {}
        if call and (escalation.thread_id in thread_ids
                     or call.get("number") in {contact.phone, contact.whatsapp} - {None}):
            uow.escalations.update(escalation.id, call_requested={
                **requested, "call": {"contact": name, "number": None, "erased": True}})


def _redraw_cards(uow: UnitOfWork, contact: ContactView, thread_ids: frozenset[int],
                  now: datetime) -> int:
    """The CSM lane's posted cards of these threads showed the buyer's last messages: each is
    drawn again from what is stored now (the marker). A card not posted yet draws it anyway."""
    redrawn = 0
    for escalation in uow.escalations.of_account(contact.account_id):
        if escalation.thread_id in thread_ids and escalation.lane.get("slack"):
            if uow.jobs.enqueue(REDRAW_JOB,
                                f"escalation-update:{escalation.id}:erased:{now.isoformat()}",
                                {"escalation_id": escalation.id}, now):
                redrawn += 1
    return redrawn
