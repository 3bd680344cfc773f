"""Outbound SMS and WhatsApp through Twilio's Messages API, from the durable outbox in `messages`.

Nothing is sent inside a request or a transaction. A use case stores the outbound message as a
queued row in the same unit of work as the change that wants it; `MessageDispatcher` (run by
the scheduler, never by a web request) later claims due rows (storage.delivery), sends each with
no database lock held, and records the outcome in a new short transaction.

Consent is checked again at claim time, not only when the message was queued: a prompt queued
before the buyer's STOP (deferred by quiet hours, or simply not yet sent) is cancelled by the
claim and never sent after the STOP. What remains is the claim-to-send gap of one batch
(milliseconds to seconds); a STOP that lands inside it cannot stop a request already made.

Delivery is exactly-once-ish, not exactly once. Twilio's Messages API has no idempotency key, so
a send whose HTTP request succeeded but whose outcome was never recorded — the process died, the
database was unreachable, or the read timed out after Twilio had accepted the message — is sent
again when its lease runs out (or, for a timeout, on the retry). Keep that window small: a short
HTTP timeout on the Twilio client (seconds, not the library's default of none), a lease that
covers a batch (limit x timeout) but not much more, and a batch that stops once it outlives its
lease. A permanent error is never retried.

Errors: Twilio codes 21610 (the recipient is unsubscribed: the contact is opted out as well),
21211 (invalid number), 63016 (WhatsApp free text outside the 24-hour window) and any other 4xx
except 408 and 429 fail the message at once. 5xx, 408, 429, timeouts and connection errors are
retried with exponential backoff (base_delay * 2**(attempt - 1), capped at max_delay) until
max_attempts, then failed. An error about our account rather than the message (HTTP 401, codes
20003 authentication and 20005 account not active) fails nothing: the batch stops, every message
in it is held for `hold_for` (5 minutes) without counting the attempt, and an error is logged, so a
wrong or rotated token loses no message and they go out once the credentials are fixed. Logs carry the message id, channel, attempt and error code, never a
body or a phone number (Twilio's own error texts can contain the number, so they are not kept).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

from storage.delivery import (OutboundMessage, claim_outbound, hold, mark_failed, mark_retry,
                              mark_sent, record_opt_out)

log = logging.getLogger(__name__)

UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient": the carrier has their STOP
PERMANENT_CODES = {
    UNSUBSCRIBED: "recipient unsubscribed",
    21211: "invalid 'To' number",
    63016: "WhatsApp free text outside the 24-hour window",
}
RETRYABLE_STATUSES = {408, 429}
ACCOUNT_CODES = {  # the account, not the message: hold everything, fail nothing
    20003: "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20005: "the Twilio account is not active",
}
_MAX_DOUBLINGS = 30  # keeps base_delay * 2**n inside timedelta's range whatever max_attempts is


class PermanentSendError(Exception):
    """A send that retrying cannot fix; `code` is the provider's error code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class MessageSender(Protocol):
    """Sends one claimed message and returns the provider's message id."""

    def send(self, msg: OutboundMessage) -> str: ...


class TwilioMessagingSender:
    """SMS and WhatsApp (one Twilio channel, two media) through Twilio's Messages API.

    WhatsApp inside the contact's 24-hour window goes as free text; outside it (business-
    initiated) as the approved template, the message as its one variable. The client should be
    built with a short timeout, e.g.
    `Client(sid, token, http_client=TwilioHttpClient(timeout=10))`.
    """

    def __init__(self, client: Client, *, sms_from: str, whatsapp_from: str | None,
                 status_callback_url: str | None, whatsapp_template_sid: str | None) -> None:
        if not sms_from:
            raise ValueError("sms_from (the Twilio number SMS goes out from) is required")
        self._client = client
        self._sms_from = sms_from
        self._whatsapp_from = whatsapp_from
        self._status_callback = status_callback_url
        self._template_sid = whatsapp_template_sid

    def send(self, msg: OutboundMessage) -> str:
        """Send `msg`; the Twilio MessageSid. Raises PermanentSendError for what cannot be sent
        as configured, and Twilio's and requests' errors as they come."""
        params: dict[str, str] = {}
        if self._status_callback:
            params["status_callback"] = self._status_callback
        if msg.channel == "sms":
            params.update(to=msg.to, from_=self._sms_from, body=msg.body)
        elif msg.channel == "whatsapp":
            if not self._whatsapp_from:
                raise PermanentSendError("no WhatsApp sender configured")
            params.update(to=f"whatsapp:{msg.to}", from_=f"whatsapp:{self._whatsapp_from}")
            if msg.in_window:
                params["body"] = msg.body
            elif self._template_sid:
                # Template variables may not hold newlines, tabs or runs of spaces.
                params.update(content_sid=self._template_sid,
                              content_variables=json.dumps({"1": " ".join(msg.body.split())}))
            else:
                raise PermanentSendError("no approved WhatsApp template configured for messages "
                                         "outside the 24-hour window")
        else:
            raise PermanentSendError(f"channel {msg.channel!r} is not sent through Twilio "
                                     "messaging")
        return self._client.messages.create(**params).sid


class SandboxSender:
    """No Twilio account (the embedded default): nothing leaves the machine. The message is
    marked sent with a made-up id and shown on the sandbox phone page (channels/sandbox.py)."""

    def send(self, msg: OutboundMessage) -> str:
        return f"SB{uuid.uuid4().hex[:32]}"


@dataclass
class DeliveryStats:
    """What one `dispatch_due` call did to due messages."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    held: int = 0  # given back untried: the provider refused our account (credentials)


@dataclass(frozen=True)
class _Outcome:
    provider_id: str | None = None
    error: str | None = None
    code: int | None = None
    permanent: bool = False
    account_error: bool = False  # about our account (credentials), not this message


class MessageDispatcher:
    """Sends due outbound phone messages through a sender; safe to run from several threads or
    processes at once (each row is claimed by one of them)."""

    def __init__(self, engine: Engine, sender: MessageSender, clock: Callable[[], datetime], *,
                 channels: set[str] | frozenset[str] = frozenset({"sms", "whatsapp"}),
                 max_attempts: int = 6, base_delay: timedelta = timedelta(seconds=15),
                 max_delay: timedelta = timedelta(minutes=30),
                 lease: timedelta = timedelta(minutes=5),
                 hold_for: timedelta = timedelta(minutes=5)) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if (base_delay <= timedelta(0) or max_delay < base_delay or lease <= timedelta(0)
                or hold_for <= timedelta(0)):
            raise ValueError("delays and lease must be positive, max_delay >= base_delay")
        if not channels:
            raise ValueError("channels must name at least one channel")
        self._engine = engine
        self._sender = sender
        self._clock = clock
        self._channels = set(channels)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lease = lease
        self._hold_for = hold_for

    def dispatch_due(self, limit: int = 50) -> DeliveryStats:
        """Claim up to `limit` due messages and send each; one message's error never stops the
        others."""
        batch = claim_outbound(self._engine, self._channels, self._clock(), limit=limit,
                               lease=self._lease, max_attempts=self._max_attempts)
        stats = DeliveryStats(cancelled=batch.cancelled, failed=batch.failed)
        for n, msg in enumerate(batch):
            if self._clock() >= msg.lease_until:
                # The batch outlived its lease (a slow provider): the rest may be another
                # dispatcher's by now. Leave them; they are due again already.
                log.warning("message batch outlived its lease; %d messages left for the next run",
                            len(batch) - n)
                break
            outcome = self._send(msg)
            if outcome.account_error:
                self._hold(batch[n:], outcome, stats)
                break
            try:
                self._record(msg, outcome, stats)
            except Exception:
                # The row stays leased and comes back when the lease ends: if this send went
                # out, it goes out again then (no idempotency key at Twilio).
                log.exception("message %s (%s) attempt %s: could not record the outcome",
                              msg.id, msg.channel, msg.attempts)
        return stats

    def _send(self, msg: OutboundMessage) -> _Outcome:
        try:
            return _Outcome(provider_id=self._sender.send(msg))
        except PermanentSendError as exc:
            return _Outcome(error=str(exc), code=exc.code, permanent=True)
        except (TwilioRestException, TwilioServiceException) as exc:
            code, status = exc.code, exc.status
            account_error = code in ACCOUNT_CODES or status == 401
            permanent = not account_error and (code in PERMANENT_CODES or (
                400 <= status < 500 and status not in RETRYABLE_STATUSES))
            what = PERMANENT_CODES.get(code) or ACCOUNT_CODES.get(code)
            error = f"twilio error {code} (HTTP {status})" + (f": {what}" if what else "")
            return _Outcome(error=error, code=code, permanent=permanent,
                            account_error=account_error)
        except Exception as exc:  # timeouts, connection errors, anything else: try again later
            return _Outcome(error=type(exc).__name__)

    def _hold(self, rest: list[OutboundMessage], outcome: _Outcome, stats: DeliveryStats) -> None:
        """Twilio refused our account: give this message and the rest of the batch back."""
        next_at = self._clock() + self._hold_for
        held = hold(self._engine, [m.id for m in rest], outcome.error, next_at,
                    lease_until=rest[0].lease_until)  # one claim, one lease
        stats.held += held
        log.error("Twilio refused the account (%s); %d messages held, not failed, until %s",
                  outcome.error, held, next_at.isoformat())

    def _record(self, msg: OutboundMessage, outcome: _Outcome, stats: DeliveryStats) -> None:
        now = self._clock()
        if outcome.error is None:
            if mark_sent(self._engine, msg.id, outcome.provider_id, now,
                         lease_until=msg.lease_until):
                log.info("message %s (%s) sent on attempt %s", msg.id, msg.channel, msg.attempts)
            else:
                log.warning("message %s (%s) attempt %s: sent, but the row was settled meanwhile",
                            msg.id, msg.channel, msg.attempts)
            stats.sent += 1
            return
        final = outcome.permanent or msg.attempts >= self._max_attempts
        if final:
            recorded = mark_failed(self._engine, msg.id, outcome.error, now,
                                   lease_until=msg.lease_until)
        else:
            doublings = min(msg.attempts - 1, _MAX_DOUBLINGS)
            next_at = now + min(self._max_delay, self._base_delay * 2 ** doublings)
            recorded = mark_retry(self._engine, msg.id, outcome.error, next_at,
                                  lease_until=msg.lease_until)
        # The carrier holds the buyer's opt-out: honour it on every phone channel at once.
        if outcome.code == UNSUBSCRIBED and record_opt_out(self._engine, msg.contact_id,
                                                           msg.channel, now, source="carrier"):
            log.warning("contact %s opted out (carrier error %s on message %s)",
                        msg.contact_id, UNSUBSCRIBED, msg.id)
        if not recorded:
            log.warning("message %s (%s) attempt %s: its lease ran out and another attempt took "
                        "over; this outcome (code %s) is not recorded", msg.id, msg.channel,
                        msg.attempts, outcome.code)
            return
        if final:
            stats.failed += 1
            log.error("message %s (%s) failed for good on attempt %s: %s", msg.id, msg.channel,
                      msg.attempts, outcome.error)
        else:
            stats.retried += 1
            log.warning("message %s (%s) attempt %s failed, next try at %s: %s", msg.id,
                        msg.channel, msg.attempts, next_at.isoformat(), outcome.error)
