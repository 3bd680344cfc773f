"""Consent changes learnt other than from the buyer's own message, as a use case.

The buyer's STOP and START are answered in core.handlers; an opt-out that arrives another way (the
carrier's error 21610 on a send or a delivery report, a CSM's "do not contact") is recorded here
exactly as a STOP would be.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from core.conversation import ThreadEvent, ThreadState, transition
from core.ports import ContactView, UnitOfWork

log = logging.getLogger(__name__)


def revoke_consent(uow: UnitOfWork, contact: ContactView, channel: str, source: str,
                   now: datetime) -> None:
    """Recorded as a STOP would be, inside the caller's unit of work (which holds the account
    lock): a consent event, and the contact's live threads closed as opted_out."""
    for thread in uow.threads.live_threads_for_contact(contact.id):
        state = transition(ThreadState(thread.state), ThreadEvent.OPT_OUT)
        uow.threads.save_thread(replace(thread, state=str(state)), now)
    uow.contacts.record_consent(contact.id, "revoke", channel, source, now)
    uow.calls.cancel_waiting(contact_id=contact.id, why=f"opted out ({source})", now=now)
    # By row id: an operator's contact id may be an email.
    log.info("opt-out (%s) recorded for contact #%s", source, contact.id)
