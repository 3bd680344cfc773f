"""Twilio messaging, inbound half: SMS and WhatsApp as one channel with a `medium`.

`POST /twilio/messaging` answers a buyer's message with TwiML; `POST /twilio/status` records the
delivery reports of the messages we sent. Both verify Twilio's signature first and fail closed:
a missing or bad signature (or no auth token configured) is a 403 that touches nothing.

The adapter has the shape every channel has (docs/architecture.md, "How to add a channel"):
`verify(request)`, `parse(request) -> InboundMessage`, `render(replies) -> TwiML`. Sending is not
here: outbound messages leave only from the outbox, after the commit.

Privacy: phone numbers and message bodies are never logged. Exceptions are logged with their
traceback but without their message, which can carry either (a database error quotes its
parameters, a phone error its input).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, request
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from channels import Channel, Installed
from channels.twilio_outbound import (UNSUBSCRIBED, SandboxSender, TwilioApiHttpClient,
                                      TwilioMessagingSender)
from core import handlers
from core.handlers import DeliveryReport
from core.accounts import normalize_phone
from core.channels import Capabilities, Delivery, Input
from core.delivery import MessageSender
from core.errors import DomainError
from web.spool import SENDER, ReplayStats, Spool, storage_unavailable
from web.http import runtime, secret
from web.audit import not_audited

log = logging.getLogger(__name__)

bp = Blueprint("twilio_messaging", __name__, url_prefix="/twilio")

WHATSAPP_PREFIX = "whatsapp:"
# Keywords Twilio's Advanced Opt-Out handled (it has already sent its own confirmation).
OPT_OUT_TYPES = frozenset({"STOP", "START", "HELP"})
MAX_PROVIDER_ID = 200  # storage.models.MessageRow.provider_id


# --- what this channel is: two media ------------------------------------------------------------

# Typed keywords, sent by the outbox, to the buyer's phone (quiet hours, STOP/START, a named
# sender). WhatsApp first when the contact opted in to it: its own number, else the phone; free
# text only within 24 hours of the buyer's last message.
SMS = Capabilities("sms", Input.KEYWORDS, Delivery.PUSH, address=("phone",), phone=True,
                   max_chars=1600, rank=2)
WHATSAPP = Capabilities("whatsapp", Input.KEYWORDS, Delivery.PUSH, address=("whatsapp", "phone"),
                        opt_in="whatsapp_opt_in_at", activity="whatsapp_inbound_at",
                        session_window=timedelta(hours=24), phone=True, max_chars=4096, rank=1)


# --- the adapter --------------------------------------------------------------------------------

@dataclass(frozen=True)
class InboundMessage:
    """A buyer's message as the core needs it."""

    medium: str  # sms | whatsapp
    address: str  # E.164, without "whatsapp:"
    text: str
    provider_id: str | None
    keyword_handled: bool = False  # Twilio's Advanced Opt-Out already answered the keyword


# The shapes of Twilio's ids (a message's SM/MM + 32 hex, an account's AC + 32 hex). Twilio's
# signature joins sorted keys and values with no separator, so "MessageSid=SMx&NumMedia=0" signs
# the same string as "MessageSid=SMxNumMedia0": a captured request can be replayed with its
# parameters shifted. Requiring the parameters Twilio always sends, in their shapes, refuses such
# a copy (a shifted id no longer has its shape, or a required parameter went missing).
# (SB: the ids the sandbox sender makes up for what it "sends"; as long as Twilio's.)
MESSAGE_SID = re.compile(r"(SM|MM|SB)[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
ANY_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")  # every Twilio id: two letters, 32 hex
DIGITS = re.compile(r"[0-9]{1,3}")
ERROR_CODE = re.compile(r"[0-9]{1,9}")  # Twilio's error codes are numbers (30003, 21610)


def sids_in_shape(form) -> bool:
    """Every "...Sid" parameter of a form (messaging's and voice's) in Twilio's id shape."""
    return not any(key.endswith("Sid") and not ANY_SID.fullmatch(value)
                   for key, value in form.items(multi=True) if value)


def sent_by_twilio(form: Mapping[str, str], *, inbound: bool) -> bool:
    """Whether a signed form has the parameters Twilio sends, in their documented shapes: an
    AccountSid and a MessageSid (SmsSid and SmsMessageSid, when present, the same; every other
    "...Sid" in Twilio's id shape), on an inbound message a From and a NumMedia count, and on a
    delivery report an ErrorCode, when there is one, that is a number."""
    sid = form.get("MessageSid", "")
    if not MESSAGE_SID.fullmatch(sid) or not ACCOUNT_SID.fullmatch(form.get("AccountSid", "")):
        return False
    if any(form.get(alias, sid) != sid for alias in ("SmsSid", "SmsMessageSid")):
        return False
    if not sids_in_shape(form):
        return False
    if not inbound:
        code = form.get("ErrorCode")
        return not code or bool(ERROR_CODE.fullmatch(code))
    return bool(form.get("From")) and bool(DIGITS.fullmatch(form.get("NumMedia", "")))


class UnreadableSender(Exception):
    """The From of an inbound message is not a phone number we can read."""


def signed_url(base_url: str, environ: Mapping[str, object], path: str, query: bytes) -> str:
    """The URL Twilio signed: our public base URL and the request target exactly as received.

    The raw target (gunicorn's RAW_URI, else REQUEST_URI) keeps the query string's escapes
    ("%20" stays "%20"); rebuilding it from the decoded path would break the signature.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = str(raw)
        if raw.startswith(("http://", "https://")):  # an absolute-form request target
            parts = urlsplit(raw)
            raw = parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        raw = path + (f"?{query.decode('latin-1')}" if query else "")
    return base_url.rstrip("/") + raw


class TwilioMessagingChannel:
    """Verify, parse and render for Twilio's messaging webhooks (SMS and WhatsApp)."""

    def __init__(self, auth_token: str | None, public_base_url: str | None, phone_region: str,
                 shared_key_secret: str | None = None) -> None:
        self.auth_token = auth_token
        self.public_base_url = public_base_url
        self.phone_region = phone_region
        self.shared_key_secret = shared_key_secret

    @classmethod
    def from_app(cls) -> TwilioMessagingChannel:
        config = current_app.config
        return cls(secret("TWILIO_AUTH_TOKEN"), config.get("PUBLIC_BASE_URL"),
                   runtime().phone_region,
                   config.get("TWILIO_WEBHOOK_SHARED_KEY_SECRET"))

    def verify(self, req) -> bool:
        """True only for a request Twilio signed. Without a token nothing is accepted.

        Twilio signs with the auth token (HMAC-SHA1), or, when a Webhooks Rule applies, with a
        SharedKey and the algorithm named in X-Twilio-Webhooks-Signature-Settings; a request
        naming a SharedKey is checked against the configured SharedKey secret only, never
        against the auth token, so the header cannot be used to pick a weaker check.
        """
        signature = req.headers.get(SIGNATURE_HEADER, "")
        settings = req.headers.get(SIGNATURE_SETTINGS_HEADER)
        secret = self.shared_key_secret if settings else self.auth_token
        if not signature or not secret:
            if settings and not self.shared_key_secret:
                log.warning("twilio webhook signed with a SharedKey, but "
                            "TWILIO_WEBHOOK_SHARED_KEY_SECRET is not configured")
            return False
        # No public URL configured: the host this request says it was sent to.
        url = signed_url(self.public_base_url or req.host_url, req.environ, req.path,
                         req.query_string)
        # The form as a MultiDict: the validator signs every value of a repeated field.
        return RequestValidator(str(secret)).validate(url, req.form, signature,
                                                      get_signature_algorithm(settings))

    def parse(self, req) -> InboundMessage:
        """The buyer's message; raises UnreadableSender when From is not a phone number."""
        form = req.form
        raw_from = form.get("From", "")
        medium = "whatsapp" if raw_from.lower().startswith(WHATSAPP_PREFIX) else "sms"
        try:
            address = normalize_phone(raw_from, self.phone_region, "From")
        except DomainError:
            raise UnreadableSender(medium) from None  # the error quotes the number: dropped
        # A NUL cannot be stored (PostgreSQL text) and means nothing to a reader: dropped, so the
        # message is kept and answered rather than lost.
        text = form.get("Body", "").replace("\x00", "")
        opt_out = form.get("OptOutType", "").strip().upper()
        handled = opt_out in OPT_OUT_TYPES
        if handled:  # Twilio matched the keyword (its own list may be localised): say it plainly
            text = opt_out
        provider_id = form.get("MessageSid") or None  # its shape checked (sent_by_twilio)
        return InboundMessage(medium, address, text, provider_id, handled)

    @staticmethod
    def parse_status(req) -> DeliveryReport | None:
        form = req.form
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        if not sid or not status:
            return None
        code = form.get("ErrorCode") or None
        return DeliveryReport(sid[:MAX_PROVIDER_ID], status, code,
                              opted_out=code == str(UNSUBSCRIBED))

    @staticmethod
    def render(replies: Iterable[str]) -> Response:
        """TwiML: one <Message> per reply, an empty <Response/> when there is nothing to say."""
        twiml = MessagingResponse()
        for body in replies:
            twiml.message(body)
        return Response(str(twiml), status=200, mimetype="application/xml")


# --- the webhooks -------------------------------------------------------------------------------


def _not_twilios() -> Response:
    log.warning("twilio webhook refused: signed, but its parameters are not the ones Twilio "
                "sends (a replayed or altered request?) on %s", request.path)
    return Response("not a Twilio request", status=403, mimetype="text/plain")


def _forbidden() -> Response:
    log.warning("twilio webhook refused: missing or invalid signature on %s", request.path)
    return Response("invalid signature", status=403, mimetype="text/plain")


def _fallback_reply() -> str:
    support = current_app.config.get("SUPPORT_CONTACT") or "our support team"
    return (f"Sorry, something went wrong on our side. Please try again in a few minutes, "
            f"or contact support at {support}.")


# Twilio's webhook forms are small (a message body is at most 1,600 characters): a larger one is
# refused before it is read, so a forged 8 MiB form cannot hold a worker while it is parsed.
MAX_FORM_BYTES = 64 * 1024


@bp.before_request
def refuse_before_reading():
    """Before the form is parsed: a 413 for a body larger than any Twilio sends, a 403 for a
    request with no signature at all (nothing to verify it against)."""
    if request.content_length is None:
        return Response("length required", status=411, mimetype="text/plain")
    if request.content_length > MAX_FORM_BYTES:
        log.warning("twilio webhook refused: a body of %s bytes on %s", request.content_length,
                    request.path)
        return Response("request too large", status=413, mimetype="text/plain")
    if not request.headers.get(SIGNATURE_HEADER):
        return _forbidden()
    return None


@bp.post("/messaging")
@not_audited("a buyer's own conversation: Twilio-signed; consent changes are kept in "
              "consent_events")
def messaging():
    channel = TwilioMessagingChannel.from_app()
    if not channel.verify(request):
        return _forbidden()  # before anything else: a forged request is never spooled either
    if not sent_by_twilio(request.form, inbound=True):
        return _not_twilios()
    try:
        return _answer(channel)
    except Exception:  # noqa: BLE001 - Twilio always gets valid TwiML, never a stack trace
        log.exception("twilio inbound message failed")  # redacted: web/logs.py
        return channel.render([_fallback_reply()])


def _answer(channel: TwilioMessagingChannel) -> Response:
    rt = runtime()
    try:
        message = channel.parse(request)
    except UnreadableSender as exc:
        log.warning("twilio inbound %s message from an unreadable sender address", exc.args[0])
        return channel.render([handlers.unknown_sender_reply(runtime().settings.business)])
    now = rt.now()
    try:
        replies = process_inbound(rt, message, now)
    except Exception as exc:
        if not storage_unavailable(exc):
            raise
        # Twilio does not retry after an answer, not even a 5xx: keep the message on disk and
        # answer nothing now; the replies go out from the outbox once the spool is replayed.
        # A spool that cannot be written raises here, and the buyer gets the fallback reply.
        path = Spool.for_app(current_app).write(spool_entry(message, now))
        log.warning("twilio inbound %s message spooled as %s: database unreachable (%s)",
                    message.medium, path.name, type(exc).__name__)
        return channel.render([])
    return channel.render(replies)


def process_inbound(rt, message: InboundMessage, now: datetime | None = None, *,
                    replayed: bool = False, received_at: datetime | None = None) -> list[str]:
    """One buyer message through core.handlers.handle_inbound (deduped on contact, channel and provider id); the
    replies to answer with. Live traffic and the spool's replay both come through here.

    Live, the replies go back in the TwiML answer (the handler stores them as sent). Replayed,
    there is no answer to put them in: the handler's new reply rows are stored queued instead,
    each with its outbox job, in the same transaction, and the outbox sends them.
    """
    now = now or rt.now()
    # Twilio's Advanced Opt-Out already replied to a keyword: its replies are never sent.
    queued = replayed and not message.keyword_handled
    answer = handlers.handle_inbound(rt.uow(), rt.catalog, rt.settings, handlers.Inbound(
        message.medium, message.text, message.provider_id, address=message.address,
        replies=handlers.Replies.QUEUED if queued else handlers.Replies.INLINE,
        received_at=received_at), now)
    if not answer.known:
        if replayed and answer.replies:  # no contact to queue an answer for: the operator has it
            log.info("replayed %s message from a number that belongs to no contact: kept, "
                     "not answered", message.medium)
        return list(answer.replies)
    if answer.duplicate:  # a provider retry: answered the first time, never twice
        return []
    if message.keyword_handled:  # Twilio's Advanced Opt-Out has already replied to the keyword
        return []
    return list(answer.replies)


# --- the spool: inbound messages kept while the database is unreachable -------------------------

def spool_entry(message: InboundMessage, received_at: datetime) -> dict:
    """A verified, parsed inbound message as the spool keeps it (JSON)."""
    return {"v": 1, "medium": message.medium, SENDER: message.address, "body": message.text,
            "provider_id": message.provider_id,
            "opt_out_type": message.text if message.keyword_handled else None,
            "received_at": received_at.isoformat()}


def inbound_from_entry(entry: dict) -> InboundMessage:
    opt_out = entry.get("opt_out_type")
    return InboundMessage(str(entry["medium"]), str(entry[SENDER]), str(entry["body"]),
                          entry.get("provider_id") or None, opt_out in OPT_OUT_TYPES)


def received_at(entry: dict, now: datetime) -> datetime:
    """When a spooled message arrived (aware UTC), never later than `now`; entries without a
    readable time are taken as arriving now."""
    try:
        at = datetime.fromisoformat(str(entry["received_at"]))
    except (KeyError, ValueError):
        return now
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return min(at, now)


def replay_spool(rt, spool: Spool) -> ReplayStats:
    """Process the spooled messages, oldest first, exactly as live ones (`process_inbound`, so
    a message that did reach the database before is a duplicate and changes nothing); their
    replies are queued in the outbox. Stops, keeping the rest, while the database is still
    unreachable; an entry that fails any other way is set aside in the spool's rejected/."""
    def handle(entry: dict) -> None:
        process_inbound(rt, inbound_from_entry(entry), replayed=True,
                        received_at=received_at(entry, rt.now()))

    return spool.replay(handle, retry_later=storage_unavailable)


SPOOL_REPLAY_EVERY = 5.0  # seconds between a web process's looks at its host's spool


def start_spool_replayer(app: Flask, every: float = SPOOL_REPLAY_EVERY) -> threading.Event:
    """Replay this host's spool from this web process, every `every` seconds, in a daemon
    thread; set the returned event to stop it. deploy/gunicorn.conf.py starts one in every
    worker (post_worker_init).

    The spool is a folder on the web host that wrote it (SPOOL_DIR, default instance/spool):
    only a process on that host can replay it, and with several web hosts the scheduler runs on
    one of them at most. So each web host replays its own. The workers of one host share the
    folder: the spool's lock lets one replay at a time, and an entry replayed twice (a worker
    killed between handling and deleting it) is a duplicate MessageSid, which changes nothing.
    A look at an empty spool is one directory listing."""
    spool = Spool.for_app(app)
    rt = app.extensions["upgrade_chat"]
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                if not spool.pending():
                    continue
                with app.app_context():
                    replay_spool(rt, spool)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive one bad pass
                log.warning("spool replay in this web process failed (%s); trying again in "
                            "%s s", type(exc).__name__, every)

    threading.Thread(target=loop, name="spool-replayer", daemon=True).start()
    return stop


@bp.post("/status")
@not_audited("Twilio's delivery reports: no operator reads or changes anything")
def status():
    channel = TwilioMessagingChannel.from_app()
    if not channel.verify(request):
        return _forbidden()
    if not sent_by_twilio(request.form, inbound=False):
        return _not_twilios()
    report = channel.parse_status(request)
    if report is None:
        return Response(status=204)
    rt = runtime()
    try:
        if not handlers.record_delivery_report(rt.uow, report, rt.now()):
            log.info("twilio status %s for a message we do not know", report.status)
    except Exception:  # noqa: BLE001 - logged without personal data; Twilio sees a 500
        log.exception("twilio status callback failed")
        return Response("error", status=500, mimetype="text/plain")
    return Response(status=204)


def install(app: Flask, runtime: Any) -> Installed:
    """The webhooks, and the outbox's sender of queued SMS and WhatsApp messages: Twilio's
    Messages API when an account is configured; otherwise the sandbox, which stores instead."""
    app.register_blueprint(bp)
    config = app.config
    if config["SANDBOX"]:
        sender: MessageSender = SandboxSender()
    else:
        client = Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"],
                        http_client=TwilioApiHttpClient(timeout=5,
                                                        base_url=config.get("TWILIO_API_URL")))
        sender = TwilioMessagingSender(
            client, sms_from=config["TWILIO_SMS_FROM"],
            whatsapp_from=config["TWILIO_WHATSAPP_FROM"],
            status_callback_url=config["PUBLIC_BASE_URL"].rstrip("/") + "/twilio/status",
            whatsapp_template_sid=config["TWILIO_WHATSAPP_TEMPLATE_SID"])
    return Installed(messages={medium.name: sender for medium in (SMS, WHATSAPP)})


CHANNEL = Channel("twilio_messaging", (WHATSAPP, SMS), install)
