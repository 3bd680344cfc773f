"""The voice channel: a buyer calls the business's Twilio number and has the upgrade
conversation by keypad or speech (Twilio's voice webhook).

`POST /twilio/voice` answers a call: signed like the messaging webhooks (PUBLIC_BASE_URL plus the
raw path and query; 403 and nothing stored otherwise). A caller with a live offer hears the
business's name and the case in their numbers (core.handlers.call_greeting), then a
`<Gather input="dtmf speech">`: 1 upgrade, 2 a person, 3 not now, 9 stop calling and texting, 0
help; a spoken answer is read like a typed one (core.intents, with hints). Each answer posts to
`/twilio/voice/gather?turn=N` (signed too) and is one inbound message of the thread, its provider
id `<CallSid>:<turn>`, so a retry by Twilio of the same turn gets the same answer and acts once
(core.handlers.handle_inbound). The key 1 means "confirm" only right after the confirmation
step was read in full in this call (`step=confirm` in the signed action URL); otherwise "yes",
which reads the step. No answer: asked again twice, then a goodbye with how to reach a person.
A stranger, a number several contacts share, or a caller with no live offer gets a polite answer
with no account's data. Whatever fails, Twilio gets valid TwiML (an apology and a hang-up).

Not built yet: callbacks the buyer asks for (outbound calls), answering-machine detection.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Flask, Response, request
from twilio.twiml.voice_response import Gather, VoiceResponse

from channels import Channel, Installed
from channels.twilio_messaging import (ACCOUNT_SID, TwilioMessagingChannel, UnreadableSender,
                                       refuse_before_reading, sids_in_shape)
from core import handlers
from core.accounts import normalize_phone
from core.channels import Capabilities, Delivery, Input
from core.conversation import LIVE, ThreadState
from core.errors import DomainError
from web.audit import not_audited
from web.http import runtime

log = logging.getLogger(__name__)

bp = Blueprint("twilio_voice", __name__, url_prefix="/twilio/voice")
bp.before_request(refuse_before_reading)  # the size and signature-header checks of /twilio

# A call: the keypad or speech; replies are spoken in the call itself (nothing is queued for a
# later call: no outbound calls yet). The phone number is the address, consent is the phone's.
VOICE = Capabilities("voice", Input.KEYPAD, Delivery.NONE, address=("phone",), phone=True)

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
KEYS = {"1": "yes", "2": "I would like to talk to a person", "3": "no, not now",
        "9": "stop", "0": "help"}
HINTS = "upgrade, yes, confirm, talk to a person, not now, no, stop, help, how much"
MAX_SILENCES = 2  # asked again this many times, then goodbye
GATHER_SECONDS = 6


def _call_form(form) -> bool:
    """A signed form has what Twilio's voice webhook sends, in its shapes: an AccountSid and a
    CallSid, a From, and every other "...Sid" in Twilio's id shape."""
    if not CALL_SID.fullmatch(form.get("CallSid", "")) or \
            not ACCOUNT_SID.fullmatch(form.get("AccountSid", "")):
        return False
    return sids_in_shape(form) and bool(form.get("From"))


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), status=200, mimetype="application/xml")


def _goodbye(text: str) -> Response:
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return _twiml(response)


def _no_account_answer() -> str:
    business = runtime().settings.business
    return (f"Thank you for calling {business.name}. We could not find an open offer for this "
            f"number. To talk to a person, contact {business.support}. Goodbye.")


def _apology() -> Response:
    business = runtime().settings.business
    return _goodbye(f"Sorry, something went wrong on our side. Please try again later, or "
                    f"contact {business.support}. Goodbye.")


def _ask(texts: list[str], turn: int, confirming: bool, silences: int = 0, *,
         why: bool = False) -> Response:
    """Say `texts` inside a gather whose answer posts to the next turn."""
    response = VoiceResponse()
    query = f"turn={turn}" + ("&step=confirm" if confirming else "") + \
        (f"&silences={silences}" if silences else "") + ("&why=1" if why else "")
    gather = Gather(input="dtmf speech", num_digits=1, timeout=GATHER_SECONDS,
                    speech_timeout="auto", hints=HINTS, action=f"/twilio/voice/gather?{query}",
                    method="POST", action_on_empty_result=True)
    for text in texts:
        gather.say(text)
    response.append(gather)
    return _twiml(response)


def _caller(channel: TwilioMessagingChannel) -> str:
    try:
        return normalize_phone(request.form.get("From", ""), channel.phone_region, "From")
    except DomainError:  # an unreadable caller id (withheld: "anonymous", "+266696687")
        raise UnreadableSender("voice") from None


def _verified() -> TwilioMessagingChannel | Response:
    channel = TwilioMessagingChannel.from_app()
    if not channel.verify(request):
        log.warning("twilio voice webhook refused: missing or invalid signature on %s",
                    request.path)
        return Response("invalid signature", status=403, mimetype="text/plain")
    if not _call_form(request.form):
        log.warning("twilio voice webhook refused: signed, but not the parameters Twilio sends")
        return Response("not a Twilio request", status=403, mimetype="text/plain")
    return channel


@bp.post("")
@not_audited("a buyer's own call: Twilio-signed; what they decide is in their thread")
def call():
    checked = _verified()
    if isinstance(checked, Response):
        return checked
    try:
        rt = runtime()
        greeting = handlers.call_greeting(rt.uow(read_only=True), rt.catalog, rt.settings,
                                          VOICE.name, _caller(checked), rt.now())
        if greeting.text is None:
            return _goodbye(_no_account_answer())
        log.info("voice call answered with the caller's offer")
        return _ask([greeting.text], 1, greeting.confirming)
    except UnreadableSender:
        return _goodbye(_no_account_answer())
    except Exception:  # noqa: BLE001 - Twilio always gets valid TwiML (redacted: web/logs.py)
        log.exception("twilio voice call failed")
        return _apology()


@bp.post("/gather")
@not_audited("a buyer's own answer in their call: Twilio-signed")
def gather():
    checked = _verified()
    if isinstance(checked, Response):
        return checked
    try:
        return _answer_turn(checked)
    except UnreadableSender:
        return _goodbye(_no_account_answer())
    except Exception:  # noqa: BLE001 - Twilio always gets valid TwiML
        log.exception("twilio voice answer failed")
        return _apology()


def _number(name: str, default: int = 0) -> int:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 4 else default


def _answer_turn(channel: TwilioMessagingChannel) -> Response:
    turn, silences = _number("turn", 1), _number("silences")
    confirming = request.args.get("step") == "confirm"
    digits = (request.form.get("Digits") or "").strip()
    speech = (request.form.get("SpeechResult") or "").replace("\x00", "").strip()
    if digits:
        text = "confirm" if digits == "1" and confirming else KEYS.get(digits[:1])
        if text is None:
            return _ask([f"Sorry, {digits[:1]} is not an option. Press 1 to go ahead, 2 to talk "
                         f"to a person, 3 if not now, or 9 to stop these calls and texts."],
                        turn, confirming)
    elif speech:
        text = speech
    else:
        if silences >= MAX_SILENCES:
            return _goodbye(f"We did not hear an answer. To talk to a person, contact "
                            f"{runtime().settings.business.support}. Goodbye.")
        if request.args.get("why") == "1":  # no reason given: that is fine
            return _goodbye("Thank you. Goodbye.")
        return _ask(["Sorry, we did not hear you. Press 1 to go ahead, 2 to talk to a "
                     "person, 3 if not now, or 9 to stop."], turn, confirming, silences + 1)
    rt = runtime()
    answer = handlers.handle_inbound(rt.uow(), rt.catalog, rt.settings, handlers.Inbound(
        VOICE.name, text, f"{request.form['CallSid']}:{turn}", address=_caller(channel)),
        rt.now())
    if not answer.known:
        return _goodbye(_no_account_answer())
    replies = list(answer.replies) or ["Thank you."]
    current = answer.state
    if answer.duplicate and answer.thread_id is not None:  # Twilio retrying this turn
        current = handlers.thread_state(rt.uow(read_only=True), answer.thread_id)
    state = ThreadState(current) if current else None
    asking_why = request.args.get("why") == "1"
    if state == ThreadState.DECLINED and not asking_why:
        # A decline: its reason is asked (the reply says so) and heard once, then goodbye.
        return _ask(replies, turn + 1, False, why=True)
    if state is not None and state not in LIVE or asking_why:
        return _goodbye(" ".join(replies) + " Goodbye.")
    return _ask(replies, turn + 1, state == ThreadState.AWAITING_CONFIRMATION)


def install(app: Flask, runtime: Any) -> Installed:
    app.register_blueprint(bp)
    return Installed()


CHANNEL = Channel("twilio_voice", (VOICE,), install)
