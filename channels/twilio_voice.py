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
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client
from twilio.twiml.voice_response import Gather, VoiceResponse

from channels import Channel, Installed
from channels.twilio_messaging import (ACCOUNT_SID, TwilioMessagingChannel, UnreadableSender,
                                       refuse_before_reading, sids_in_shape)
from channels.twilio_outbound import TwilioApiHttpClient, twilio_error
from core import calls, handlers
from core.jobs import RetryLater
from core.accounts import normalize_phone
from core.channels import Capabilities, Delivery, Input
from core.conversation import LIVE, ThreadState
from core.errors import DomainError
from core.intents import Intent, classify
from web.audit import not_audited
from web.http import runtime

log = logging.getLogger(__name__)

bp = Blueprint("twilio_voice", __name__, url_prefix="/twilio/voice")
bp.before_request(refuse_before_reading)  # the size and signature-header checks of /twilio

# A call: the keypad or speech; replies are spoken in the call itself (nothing is queued for a
# later call). The phone number is the address, consent is the phone's. It rings: the calls
# buyers ask for are placed on it (core.calls, through the outbox's "call" jobs).
VOICE = Capabilities("voice", Input.KEYPAD, Delivery.NONE, address=("phone",), phone=True,
                     rings=True)

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
KEYS = {"1": "yes", "2": "I would like to talk to a person", "3": "no, not now",
        "9": "stop", "0": "help"}
HINTS = "upgrade, yes, confirm, talk to a person, not now, no, stop, help, how much"
MAX_SILENCES = 2  # asked again this many times, then goodbye
# What to press, said after an answer that did not say it (a spoken question's answer).
MENU = {ThreadState.OFFERED: "Press 1 to upgrade, 2 to talk to a person, 3 if not now, or 9 to "
                             "stop our calls and texts. Or ask another question.",
        ThreadState.AWAITING_CONFIRMATION: "Press 1 to confirm, 3 if not now, or ask another "
                                           "question."}
GATHER_SECONDS = 6


def _call_form(form, *, caller: bool = True) -> bool:
    """A signed form has what Twilio's voice webhook sends, in its shapes: an AccountSid and a
    CallSid, a From (`caller`: the answering-machine callback has none), and every other
    "...Sid" in Twilio's id shape."""
    if not CALL_SID.fullmatch(form.get("CallSid", "")) or \
            not ACCOUNT_SID.fullmatch(form.get("AccountSid", "")):
        return False
    return sids_in_shape(form) and (bool(form.get("From")) or not caller)


# What XML 1.0 cannot carry (control characters, lone surrogates, U+FFFE/FFFF): never spoken.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _speakable(text: str) -> str:
    return _NOT_XML.sub(" ", text)


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), status=200, mimetype="application/xml")


def _goodbye(text: str) -> Response:
    response = VoiceResponse()
    response.say(_speakable(text))
    response.hangup()
    return _twiml(response)


def _no_account_answer() -> str:
    business = runtime().settings.business
    return (f"Thank you for calling {business.name}. We could not find an open offer for this "
            f"number. To talk to a person, contact {business.support}. Goodbye.")


def _shared_number_answer() -> str:
    business = runtime().settings.business
    return (f"Thank you for calling {business.name}. This number is linked to more than one "
            f"account, so we cannot discuss an account on this call. Please answer our text "
            f"message, which names the business, or contact {business.support}. Goodbye.")


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
        gather.say(_speakable(text))
    response.append(gather)
    return _twiml(response)


def _outbound() -> bool:
    """A call we placed (Twilio's Direction "outbound-api"): the buyer is the `To`."""
    return request.form.get("Direction", "").startswith("outbound")


def _caller(channel: TwilioMessagingChannel) -> str:
    field = "To" if _outbound() else "From"
    try:
        return normalize_phone(request.form.get(field, ""), channel.phone_region, field)
    except DomainError:  # an unreadable caller id (withheld: "anonymous", "+266696687")
        raise UnreadableSender("voice") from None


def _verified(*, caller: bool = True) -> TwilioMessagingChannel | Response:
    channel = TwilioMessagingChannel.from_app()
    if not channel.verify(request):
        log.warning("twilio voice webhook refused: missing or invalid signature on %s",
                    request.path)
        return Response("invalid signature", status=403, mimetype="text/plain")
    if not _call_form(request.form, caller=caller):
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
            return _goodbye(_shared_number_answer() if greeting.shared else _no_account_answer())
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
    speech = _speakable(request.form.get("SpeechResult") or "").strip()
    if request.args.get("step") == "gate":  # a call we placed: is a person there?
        stop = digits[:1] == "9" or (bool(speech) and classify(speech) == Intent.STOP)
        if not stop:
            return _past_the_gate(channel, bool(digits or speech), silences)
        digits, speech = "9", ""  # 9 at the gate stops calls and texts, as it does later
    if digits:
        text = "confirm" if digits == "1" and confirming else KEYS.get(digits[:1])
        if text is None:
            key = digits[:1] if digits[:1] in "0123456789*#" else "that"
            return _ask([f"Sorry, {key} is not an option. Press 1 to go ahead, 2 to talk "
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
    if not any("press" in r.lower() for r in replies):  # an answer alone: then what to press
        replies.append(MENU[state] if state in MENU else MENU[ThreadState.OFFERED])
    return _ask(replies, turn + 1, state == ThreadState.AWAITING_CONFIRMATION)


# --- the calls buyers asked for (placed by the outbox: core.calls) --------------------------------

def _call_id() -> int | None:
    value = request.args.get("call", "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def _past_the_gate(channel: TwilioMessagingChannel, answered: bool, silences: int) -> Response:
    """A call we placed, after its first words: someone pressed a key or spoke, so they hear
    their case as a caller does; silence is asked again once, then a goodbye with no figures (a
    machine that answered before its detection said so hears nothing of the account)."""
    if not answered:
        if silences >= 1:
            return _goodbye(f"Sorry we missed you. To talk to a person, contact "
                            f"{runtime().settings.business.support}. Goodbye.")
        return _gate(_call_id(), silences + 1)
    return _greet(channel)


def _greet(channel: TwilioMessagingChannel) -> Response:
    rt = runtime()
    greeting = handlers.call_greeting(rt.uow(read_only=True), rt.catalog, rt.settings,
                                      VOICE.name, _caller(channel), rt.now())
    if greeting.text is None:
        return _goodbye(_shared_number_answer() if greeting.shared else _no_account_answer())
    return _ask([greeting.text], 1, greeting.confirming)


def _gate(call_id: int | None, silences: int = 0) -> Response:
    response = VoiceResponse()
    query = "turn=0&step=gate" + (f"&call={call_id}" if call_id is not None else "") + \
        (f"&silences={silences}" if silences else "")
    gather = Gather(input="dtmf speech", num_digits=1, timeout=GATHER_SECONDS,
                    speech_timeout="auto", hints="yes, hello, go ahead",
                    action=f"/twilio/voice/gather?{query}", method="POST",
                    action_on_empty_result=True)
    gather.say(calls.answer_gate(runtime().settings.business))
    response.append(gather)
    return _twiml(response)


def _report(answered_by: str | None = None) -> calls.Progress:
    """Record what Twilio reports about a call we placed (its status, or what answered)."""
    call_id = _call_id()
    if call_id is None:
        return calls.Progress(None)
    rt = runtime()
    return calls.call_progress(
        rt.uow, rt.catalog, rt.settings.channels, rt.settings.policy, rt.settings.business,
        call_id, request.form["CallSid"], request.form.get("CallStatus"), answered_by, rt.now())


@bp.post("/answered")
@not_audited("a call the buyer asked for, answered: Twilio-signed")
def answered():
    """Twilio fetches this when a call we placed is answered: the first words say who calls and
    why, and wait for a key or a word before anything about the account is said."""
    checked = _verified()
    if isinstance(checked, Response):
        return checked
    try:
        _report()
        return _gate(_call_id())
    except Exception:  # noqa: BLE001 - Twilio always gets valid TwiML
        log.exception("twilio voice: answering a placed call failed")
        return _apology()


@bp.post("/status")
@not_audited("Twilio's report on a call we placed: Twilio-signed; recorded on the call")
def status():
    checked = _verified()
    if isinstance(checked, Response):
        return checked
    try:
        _report()
    except Exception:  # noqa: BLE001 - Twilio retries nothing; the log has it
        log.exception("twilio voice status callback failed")
        return Response("error", status=500, mimetype="text/plain")
    return Response(status=204)


@bp.post("/amd")
@not_audited("Twilio's answering-machine detection on a call we placed: Twilio-signed")
def amd():
    """What answered a call we placed. A machine: the call is recorded as such, the buyer is
    texted where that is allowed (core.calls), and the live call is redirected to a short
    neutral message with no figures (`machine`)."""
    # Twilio's answering-machine callback carries CallSid, AccountSid, AnsweredBy and
    # MachineDetectionDuration: no From or To.
    checked = _verified(caller=False)
    if isinstance(checked, Response):
        return checked
    try:
        progress = _report(answered_by=request.form.get("AnsweredBy", "unknown"))
        if progress.machine_now:
            controls = current_app.extensions["twilio_voice_control"]
            controls.redirect(request.form["CallSid"],
                              f"/twilio/voice/machine?call={_call_id()}")
    except Exception:  # noqa: BLE001
        log.exception("twilio voice answering-machine callback failed")
        return Response("error", status=500, mimetype="text/plain")
    return Response(status=204)


@bp.post("/machine")
@not_audited("what a machine hears on a call we placed: Twilio-signed, no account data")
def machine():
    checked = _verified()
    if isinstance(checked, Response):
        return checked
    rt = runtime()
    hipaa = False
    call_id = _call_id()
    if call_id is not None:
        with rt.uow(read_only=True) as uow:
            facts = uow.calls.facts(call_id)
            hipaa = facts is None or calls.hipaa(rt.catalog, facts)
    response = VoiceResponse()
    response.say(calls.machine_message(rt.settings.business, hipaa))
    response.hangup()
    return _twiml(response)


class TwilioCalls:
    """Calls through Twilio's Calls API: placed with a status callback and asynchronous
    answering-machine detection (`place`), and redirected to new TwiML (`redirect`). Errors are
    read as the messages' are (channels.twilio_outbound.twilio_error)."""

    def __init__(self, client: Client, *, from_: str, base_url: str) -> None:
        if not from_:
            raise ValueError("the Twilio number calls are placed from is required")
        self._client = client
        self._from = from_
        self._base = base_url.rstrip("/")

    def place(self, call: calls.PlacedCall) -> str:
        query = f"?call={call.id}"
        try:
            return self._client.calls.create(
                to=call.to, from_=self._from, url=f"{self._base}/twilio/voice/answered{query}",
                method="POST", status_callback=f"{self._base}/twilio/voice/status{query}",
                status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                machine_detection="DetectMessageEnd", async_amd="true",
                async_amd_status_callback=f"{self._base}/twilio/voice/amd{query}",
                async_amd_status_callback_method="POST", timeout=25).sid
        except (TwilioRestException, TwilioServiceException) as exc:
            http = self._client.http_client
            wait = http.retry_after() if isinstance(http, TwilioApiHttpClient) else None
            raise twilio_error(exc.code, exc.status, wait) from None
        except Exception as exc:  # timeouts, connection errors: try again later
            raise RetryLater(type(exc).__name__) from None

    def redirect(self, call_sid: str, path: str) -> None:
        self._client.calls(call_sid).update(url=f"{self._base}{path}", method="POST")


class SandboxCalls:
    """No Twilio account: a placed call rings on the sandbox phone page (devtools/sandbox.py),
    which answers it with signed requests as Twilio would. A redirect is kept for the page to
    follow (this process's memory: the sandbox runs in one)."""

    def __init__(self) -> None:
        self.redirects: dict[str, str] = {}

    def place(self, call: calls.PlacedCall) -> str:
        return "CA" + uuid.uuid4().hex

    def redirect(self, call_sid: str, path: str) -> None:
        self.redirects[call_sid] = path


def install(app: Flask, runtime: Any) -> Installed:
    """The webhooks, and the outbox's sender of "call" jobs: Twilio's Calls API when an account
    is configured, else the sandbox phone."""
    app.register_blueprint(bp)
    config = app.config
    placer: TwilioCalls | SandboxCalls
    if config["SANDBOX"]:
        placer = SandboxCalls()
    else:
        client = Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"],
                        http_client=TwilioApiHttpClient(timeout=5,
                                                        base_url=config.get("TWILIO_API_URL")))
        placer = TwilioCalls(client, from_=config["TWILIO_VOICE_FROM"] or config["TWILIO_SMS_FROM"],
                             base_url=config["PUBLIC_BASE_URL"])
    app.extensions["twilio_voice_control"] = placer
    return Installed(jobs={calls.CALL_KIND: calls.CallJobs(placer, runtime.catalog,
                                                           runtime.settings.policy)})


CHANNEL = Channel("twilio_voice", (VOICE,), install)
