"""Outbound SMS and WhatsApp through Twilio's Messages API: the senders of "message" jobs.

Nothing is sent inside a request or a transaction. A use case stores the outbound message as a
queued row with its outbox job in the same unit of work as the change that wants it
(core.delivery.queue_message); the one outbox dispatcher (storage.outbox, run by the scheduler,
never by a web request) later claims the due job, checks the message again (core.delivery:
consent, the thread, the number, the WhatsApp window), hands it to a sender here with no
database lock held, and records the outcome in a new short transaction.

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

Errors, as the sender raises them (core.jobs): Twilio codes 21610 (the recipient is
unsubscribed: `RecipientOptedOut`, the contact is opted out as well), 21211 (invalid number),
63016 (WhatsApp free text outside the 24-hour window) and any other 4xx except 408 and 429 are
`PermanentFailure`: the message fails at once. 429 (too many requests) and 503 (service
unavailable) are Twilio asking us to wait, not about the message: `ProviderBusy`, with the
answer's Retry-After; nothing fails and the attempt is not counted, the batch's messages are held
until the Retry-After has passed (15 s when there is none) and no message is sent before then, so
an outage of any length loses nothing (bench/faults.py outage found a 10-minute one failed every
queued message after 6 attempts). Other 5xx, 408, timeouts and connection errors are
`RetryLater`: retried with the messages' backoff (core.delivery.RETRY). An error about our
account rather than the message (HTTP 401, codes 20003 authentication and 20005 account not
active) is `AccountRefused`: nothing fails, the batch's messages are held for 5 minutes without
counting the attempt and an error is logged, so a wrong or rotated token loses no message and
they go out once the credentials are fixed. Error texts carry the code and the HTTP status,
never a body or a phone number (Twilio's own error texts can contain the number, so they are
not kept).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from core.delivery import OutboundMessage
from core.jobs import (AccountRefused, JobError, PermanentFailure, ProviderBusy, RecipientOptedOut,
                       RetryLater)

UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient": the carrier has their STOP
PERMANENT_CODES = {
    UNSUBSCRIBED: "recipient unsubscribed",
    21211: "invalid 'To' number",
    63016: "WhatsApp free text outside the 24-hour window",
}
RETRYABLE_STATUSES = {408, 429}
WAIT_STATUSES = {429, 503}  # Twilio asking us to wait (Retry-After): about Twilio, not the message
ACCOUNT_CODES = {  # the account, not the message: hold everything, fail nothing
    20003: "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20005: "the Twilio account is not active",
}


class TwilioMessagingSender:
    """SMS and WhatsApp (one Twilio channel, two media) through Twilio's Messages API.

    WhatsApp inside the contact's 24-hour window goes as free text; outside it (business-
    initiated) as the approved template, the message as its one variable. The client should be
    built with a short timeout, e.g.
    `Client(sid, token, http_client=TwilioApiHttpClient(timeout=10))`.
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
        """Send `msg`; the Twilio MessageSid. Raises core.jobs errors (see the module)."""
        params: dict[str, str] = {}
        if self._status_callback:
            params["status_callback"] = self._status_callback
        if msg.channel == "sms":
            params.update(to=msg.to, from_=self._sms_from, body=msg.body)
        elif msg.channel == "whatsapp":
            if not self._whatsapp_from:
                raise PermanentFailure("no WhatsApp sender configured")
            params.update(to=f"whatsapp:{msg.to}", from_=f"whatsapp:{self._whatsapp_from}")
            if msg.in_window:
                params["body"] = msg.body
            elif self._template_sid:
                # Template variables may not hold newlines, tabs or runs of spaces.
                params.update(content_sid=self._template_sid,
                              content_variables=json.dumps({"1": " ".join(msg.body.split())}))
            else:
                raise PermanentFailure("no approved WhatsApp template configured for messages "
                                       "outside the 24-hour window")
        else:
            raise PermanentFailure(f"channel {msg.channel!r} is not sent through Twilio "
                                   "messaging")
        try:
            return self._client.messages.create(**params).sid
        except (TwilioRestException, TwilioServiceException) as exc:
            http = self._client.http_client
            wait = http.retry_after() if isinstance(http, TwilioApiHttpClient) else None
            raise twilio_error(exc.code, exc.status, wait) from None
        except Exception as exc:  # timeouts, connection errors: try again later
            raise RetryLater(type(exc).__name__) from None  # its text may hold the number


def twilio_error(code: int | None, status: int, retry_after: timedelta | None = None) -> JobError:
    """What an error answer from Twilio means for the message (see the module); `retry_after`
    is the answer's Retry-After, if it had one."""
    what = (PERMANENT_CODES.get(code) or ACCOUNT_CODES.get(code)) if code is not None else None
    text = f"twilio error {code} (HTTP {status})" + (f": {what}" if what else "")
    if code in ACCOUNT_CODES or status == 401:
        return AccountRefused(f"Twilio refused the account ({text})", code)
    if status in WAIT_STATUSES:
        waited = f", Retry-After {retry_after.total_seconds():g} s" if retry_after else ""
        return ProviderBusy(f"{text}: Twilio asked us to wait{waited}", code,
                            retry_after=retry_after)
    if code == UNSUBSCRIBED:
        return RecipientOptedOut(text, code)
    if code in PERMANENT_CODES or (400 <= status < 500 and status not in RETRYABLE_STATUSES):
        return PermanentFailure(text, code)
    return RetryLater(text, code)


class TwilioApiHttpClient(TwilioHttpClient):
    """twilio's HTTP client with a timeout (never the library's default of none) that keeps the
    Retry-After of the last error answer this thread received (twilio's exceptions do not carry
    headers) and, when `base_url` is given (TWILIO_API_URL: a fake Twilio in tests and
    benchmarks), sends every request there (https://api.twilio.com/2010-04-01/... ->
    <base_url>/2010-04-01/...)."""

    def __init__(self, timeout: float = 5, base_url: str | None = None, **kwargs) -> None:
        super().__init__(timeout=timeout, **kwargs)
        target = urlsplit(base_url) if base_url else None
        self._target = (target.scheme, target.netloc) if target else None
        self._last = threading.local()

    def request(self, method, url, *args, **kwargs):
        if self._target is not None:
            parts = urlsplit(url)
            url = urlunsplit((*self._target, parts.path, parts.query, parts.fragment))
        self._last.retry_after = None
        response = super().request(method, url, *args, **kwargs)
        if response.status_code >= 400:
            self._last.retry_after = parse_retry_after((response.headers or {}).get("Retry-After"))
        return response

    def retry_after(self) -> timedelta | None:
        """The Retry-After of this thread's last request, if it was an error answer with one."""
        return getattr(self._last, "retry_after", None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """A Retry-After header (RFC 9110: seconds, or an HTTP date) as a wait; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(timedelta(0), when - (now or datetime.now(timezone.utc)))


class SandboxSender:
    """No Twilio account (the embedded default): nothing leaves the machine. The message is
    marked sent with a made-up id and shown on the sandbox phone page (devtools/sandbox.py)."""

    def send(self, msg: OutboundMessage) -> str:
        return f"SB{uuid.uuid4().hex[:32]}"
