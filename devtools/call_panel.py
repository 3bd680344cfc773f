"""The sandbox phone's calls: without a Twilio account, each buyer's phone on /sandbox/phone can
call the business and be called back, and the page plays Twilio's part.

The page (the fragments below, put into devtools/sandbox.py's page) shows, on each SMS phone, a
"Call the business" button and, when the service placed a call the buyer asked for (status
`ringing`, storage/sandbox.py), an incoming call with Answer, Decline and "Let voicemail answer".
During a call it shows what the voice says (each `<Say>`, in order), a keypad and a box to
"speak" by typing. Each step goes to `POST /sandbox/phone/call`, which posts the form Twilio
would post to the voice webhook named (`/twilio/voice...` only), signed with the sandbox's
token over PUBLIC_BASE_URL plus the path and query, through the WSGI stack, so the production
code answers; it returns the TwiML, which the browser reads (DOMParser) for the texts and the
Gather's action, the next step's path. A machine's answer (AMD) makes the service redirect the
call; the redirect is kept by channels.twilio_voice.SandboxCalls and handed back to the page to
follow, as Twilio would fetch it.

Registered in sandbox mode only, beside the phone page, with the same guard: this machine, the
instance's local token, same-origin writes (devtools/local.py).
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request
from twilio.request_validator import RequestValidator
from werkzeug.test import Client

from core.audit import pseudonym
from devtools import local
from web.audit import audited, note
from web.http import secret

bp = Blueprint("sandbox_call", __name__, url_prefix="/sandbox")
bp.after_request(local.no_framing)

ACCOUNT_SID = "AC" + "0" * 32  # as devtools/sandbox.py's messages
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
# The voice webhooks, and nothing else: the path and a query of plain parameters.
VOICE_PATH = re.compile(r"/twilio/voice(/[a-z]+)?")
VOICE_QUERY = re.compile(r"[A-Za-z0-9_=&.-]{0,200}")
DIRECTIONS = ("inbound", "outbound-api")
# What the page may add to the form, as Twilio names it: the answer (keypad, speech), the call's
# status (status callbacks) and what answered (answering-machine detection).
ANSWERS = ("Digits", "SpeechResult", "Confidence", "CallStatus", "AnsweredBy")


@bp.before_request
def local_only():
    """Like the phone page: this machine, signed in with the local token (devtools/local.py)."""
    return local.guard(request)


def _refuse(why: str) -> Response:
    response = jsonify(error=why)
    response.status_code = 400
    return response


@bp.post("/phone/call")
@audited("sandbox_phone.call", "contact", source="sandbox", actor="local")
def call_step():
    """One step of a sandbox call, posted as Twilio posts it: the form's `path` (a voice webhook
    with its query), the buyer's `number`, the call's `direction` (inbound: the buyer called;
    outbound-api: a call the service placed) and `call_sid` (none: a new inbound call gets one),
    and the answer. Returns JSON: the CallSid, the webhook's HTTP status, its TwiML, and the
    path the call was redirected to (a machine answered), if any."""
    form = request.form
    path = form.get("path", "")
    number = form.get("number", "").strip()
    direction = form.get("direction", "inbound")
    note(object_id=pseudonym(number) if number else "-")
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or parts.fragment or not VOICE_PATH.fullmatch(parts.path) \
            or not VOICE_QUERY.fullmatch(parts.query) or any(c in path for c in "\r\n\\#"):
        return _refuse("only the voice webhooks (/twilio/voice...) may be posted here")
    if not number or direction not in DIRECTIONS:
        return _refuse("a call needs the buyer's number and its direction")
    call_sid = form.get("call_sid") or ("CA" + uuid.uuid4().hex)
    if not CALL_SID.fullmatch(call_sid):
        return _refuse("not a CallSid")
    note(step=parts.path)
    from devtools.sandbox import SANDBOX_NUMBER

    buyer, business = number, SANDBOX_NUMBER
    params = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid,
              "From": buyer if direction == "inbound" else business,
              "To": business if direction == "inbound" else buyer,
              "Direction": direction, "CallStatus": "in-progress", "ApiVersion": "2010-04-01"}
    params.update({k: form[k] for k in ANSWERS if form.get(k)})
    token = secret("TWILIO_AUTH_TOKEN")  # the sandbox's own, the one the webhooks check
    if not token:
        return Response("The sandbox's Twilio token is not available (see the log)", 503)
    url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path
    signature = RequestValidator(token).compute_signature(url, params)
    answer = Client(current_app).post(path, data=params, headers={"X-Twilio-Signature": signature})
    if answer.status_code >= 400:
        current_app.logger.warning("sandbox call step was refused: HTTP %s", answer.status_code)
    control = current_app.extensions.get("twilio_voice_control")
    redirects = getattr(control, "redirects", None)
    redirect = redirects.pop(call_sid, None) if isinstance(redirects, dict) else None
    return jsonify(call_sid=call_sid, status=answer.status_code,
                   twiml=answer.get_data(as_text=True) if answer.mimetype.endswith("xml") else "",
                   redirect=redirect)


# --- the page's fragments (devtools/sandbox.py puts them into /sandbox/phone) --------------------

CSS = """
 .screen{position:relative}
 .top .dial{float:right;border:0;border-radius:12px;background:#34c759;color:#fff;font:inherit;
            font-size:12px;padding:3px 9px;cursor:pointer}
 .call{position:absolute;inset:0;background:linear-gradient(#2c2c2e,#111);color:#fff;
       display:flex;flex-direction:column;padding:12px;gap:8px;z-index:2;border-radius:inherit}
 .call .line{text-align:center;color:#8e8e93;font-size:11px}
 .call[hidden]{display:none}
 .call .who{text-align:center} .call .who b{display:block;font-size:20px}
 .call .who span{color:#bbb;font-size:12px}
 .call .said{flex:1;overflow-y:auto;display:flex;flex-direction:column;gap:5px;margin:0;
             padding:0;list-style:none;min-height:90px}
 .call .said li{padding:6px 9px;border-radius:12px;font-size:12.5px;line-height:1.35;
                max-width:88%;white-space:pre-wrap}
 .call .said .voice{background:#3a3a3c;align-self:flex-start}
 .call .said .you{background:#0b84ff;align-self:flex-end}
 .call .said .sys{align-self:center;color:#aaa;font-style:italic;font-size:11.5px}
 .call .said .machine{background:#5e4b1f;align-self:flex-start}
 .call .keypad{display:grid;grid-template-columns:repeat(3,1fr);gap:6px}
 .call .keypad button{border:0;border-radius:18px;background:#48484a;color:#fff;font-size:17px;
                      height:34px;cursor:pointer}
 .call .keypad .zero{grid-column:2}
 .call .speak{display:flex;border:0;gap:6px}
 .call .speak input{flex:1;border:0;border-radius:14px;padding:7px 10px;font:inherit}
 .call .speak button{border:0;border-radius:14px;background:#0b84ff;color:#fff;padding:0 12px}
 .call .end,.call .answer,.call .decline,.call .voicemail,.call .close{border:0;
       border-radius:18px;color:#fff;font:inherit;font-weight:600;height:36px;cursor:pointer}
 .call .end,.call .decline{background:#ff3b30} .call .answer{background:#34c759}
 .call .voicemail,.call .close{background:#636366}
 .call .ringing{display:flex;flex-direction:column;gap:8px;margin-top:auto}
 .call .ringing p{margin:0 0 8px;text-align:center;font-size:16px;animation:pulse 1.2s infinite}
 @keyframes pulse{50%{opacity:.45}}
 .call button:disabled{opacity:.5;cursor:default}
 .call:not(.live) .keypad,.call:not(.live) .speak,.call:not(.live) .end{display:none}
 .call:not(.incoming) .ringing{display:none} .call:not(.over) .close{display:none}
 .call.incoming .said{display:none}
"""

# One SMS phone's call screen: `p` the phone (storage.sandbox.Phone), `ringing` its ringing call
# or None, `business` the business's name.
PHONE = """
   <div class="call{% if ringing %} incoming{% endif %}" {% if not ringing %}hidden{% endif %}
        data-number="{{ p.number }}"{% if ringing %} data-call-id="{{ ringing.id }}"
        data-call-sid="{{ ringing.call_sid }}"{% endif %}>
    <div class="line">{{ p.contact_name or p.contact }} · {{ p.number }}</div>
    <div class="who"><b>{{ business }}</b><span class="state">{% if ringing %}is calling you
      back{% endif %}</span></div>
    <ol class="said" aria-live="polite"></ol>
    <div class="ringing">
     <p>{{ business }} is calling you back</p>
     <button type="button" class="answer">Answer</button>
     <button type="button" class="decline">Decline</button>
     <button type="button" class="voicemail">Let voicemail answer</button>
    </div>
    <div class="keypad">{% for k in "123456789" %}<button type="button" data-key="{{ k }}">{{ k
      }}</button>{% endfor %}<button type="button" class="zero" data-key="0">0</button></div>
    <form class="speak"><input name="speech" placeholder="Speak (type your words)"
      autocomplete="off"><button type="submit">Say</button></form>
    <button type="button" class="end">Hang up</button>
    <button type="button" class="close">Close</button>
   </div>
"""

SCRIPT = r"""
(function(){
 // A call in a panel stops the page's reload (see the refresh below) until the panel is closed.
 var active = null;
 window.sandboxCallActive = function(){ return active !== null; };
 var STATUS = '/twilio/voice/status?call=', AMD = '/twilio/voice/amd?call=';

 function line(panel, cls, text){
  var li = document.createElement('li'); li.className = cls; li.textContent = text;
  var list = panel.querySelector('.said'); list.appendChild(li); list.scrollTop = list.scrollHeight;
 }
 function state(panel, text){ panel.querySelector('.state').textContent = text; }
 function busy(panel, on){
  panel.querySelectorAll('button, input').forEach(function(b){ b.disabled = on; });
 }
 // One step: the sandbox posts the form Twilio would post to `path`, signed; the answer is JSON
 // with the webhook's TwiML.
 function post(panel, path, extra){
  var c = panel.call, body = new URLSearchParams({path: path, number: panel.dataset.number,
    direction: c.direction});
  if (c.sid) body.set('call_sid', c.sid);
  Object.keys(extra || {}).forEach(function(k){ body.set(k, extra[k]); });
  return fetch(SANDBOX_CALL_URL, {method: 'POST', body: body, credentials: 'same-origin'})
   .then(function(r){
     if (!r.ok) throw new Error('the sandbox refused the step (HTTP ' + r.status + ')');
     return r.json();
   }).then(function(answer){
     c.sid = answer.call_sid;
     if (answer.status >= 400) throw new Error('the voice webhook answered HTTP ' + answer.status);
     return answer;
   });
 }
 // TwiML: every <Say>, in order, then the Gather's action (the next step) or the end.
 function hear(panel, twiml, cls){
  var doc = new DOMParser().parseFromString(twiml, 'application/xml');
  Array.prototype.forEach.call(doc.getElementsByTagName('Say'), function(s){
   line(panel, cls || 'voice', s.textContent.trim());
  });
  var gather = doc.getElementsByTagName('Gather')[0];
  panel.call.next = gather ? gather.getAttribute('action') : null;
  return panel.call.next;
 }
 function start(panel, call){
  active = panel; panel.call = call;
  panel.hidden = false; panel.classList.remove('incoming', 'over'); panel.classList.add('live');
  panel.querySelector('.said').innerHTML = '';
 }
 function over(panel, why){
  panel.classList.remove('live', 'incoming'); panel.classList.add('over');
  state(panel, why); line(panel, 'sys', why); busy(panel, false);
 }
 // The call ends: a call the service placed gets Twilio's last status callback, "completed".
 function ended(panel, why){
  var c = panel.call;
  var last = c.placed && !c.reported ? post(panel, STATUS + c.id, {CallStatus: 'completed'})
                                     : Promise.resolve();
  c.reported = true;
  return last.then(function(){ over(panel, why); }, function(e){ over(panel, e.message); });
 }
 function step(panel, path, extra){
  busy(panel, true);
  return post(panel, path, extra).then(function(answer){
   if (hear(panel, answer.twiml)) { busy(panel, false); return; }
   return ended(panel, 'Call ended');
  }).catch(function(e){ over(panel, e.message); });
 }
 function answer(panel, text, extra){
  if (!panel.call || !panel.call.next) return;
  line(panel, 'you', text);
  step(panel, panel.call.next, extra);
 }

 document.querySelectorAll('.phone .call').forEach(function(panel){
  var phone = panel.closest('.phone'), dial = phone.querySelector('.dial');
  if (dial) dial.addEventListener('click', function(){
   if (active) return;
   start(panel, {direction: 'inbound', placed: false});
   state(panel, 'Calling…');
   step(panel, '/twilio/voice').then(function(){ if (panel.call.next) state(panel, 'On the call'); });
  });
  var id = panel.dataset.callId;
  function placed(){
   start(panel, {direction: 'outbound-api', placed: true, id: id, sid: panel.dataset.callSid});
  }
  panel.querySelector('.answer').addEventListener('click', function(){
   placed(); state(panel, 'On the call');
   // Twilio fetches the call's URL when it is answered; its detection then says a person did.
   busy(panel, true);
   post(panel, '/twilio/voice/answered?call=' + id, {}).then(function(a){
    var next = hear(panel, a.twiml);
    return post(panel, AMD + id, {AnsweredBy: 'human'}).then(function(){
     if (next) busy(panel, false); else return ended(panel, 'Call ended');
    });
   }).catch(function(e){ over(panel, e.message); });
  });
  panel.querySelector('.decline').addEventListener('click', function(){
   placed(); busy(panel, true);
   // Declined like a phone nobody picks up: Twilio reports "no-answer".
   post(panel, STATUS + id, {CallStatus: 'no-answer'}).then(function(){
    panel.call.reported = true; over(panel, 'Declined: reported as not answered');
   }).catch(function(e){ over(panel, e.message); });
  });
  panel.querySelector('.voicemail').addEventListener('click', function(){
   placed(); state(panel, 'Voicemail answered'); busy(panel, true);
   line(panel, 'sys', 'Voicemail picked up; the voice hears its greeting and the beep');
   post(panel, '/twilio/voice/answered?call=' + id, {}).then(function(a){
    hear(panel, a.twiml, 'machine');
    return post(panel, AMD + id, {AnsweredBy: 'machine_end_beep'});
   }).then(function(a){
    if (!a.redirect) return ended(panel, 'No redirect for the machine: call ended');
    line(panel, 'sys', 'The service redirected the call; the voicemail recorded:');
    return post(panel, a.redirect, {}).then(function(m){
     hear(panel, m.twiml, 'machine');
     return ended(panel, 'Voicemail: call ended');
    });
   }).catch(function(e){ over(panel, e.message); });
  });
  panel.querySelectorAll('.keypad button').forEach(function(b){
   b.addEventListener('click', function(){
    answer(panel, 'You pressed ' + b.dataset.key, {Digits: b.dataset.key});
   });
  });
  panel.querySelector('.speak').addEventListener('submit', function(ev){
   ev.preventDefault();
   var box = panel.querySelector('.speak input'), words = box.value.trim();
   if (!words) return;
   box.value = '';
   answer(panel, 'You said: ' + words, {SpeechResult: words, Confidence: '0.9'});
  });
  panel.querySelector('.end').addEventListener('click', function(){
   if (!panel.call) return;
   line(panel, 'you', 'You hung up'); busy(panel, true); ended(panel, 'Call ended');
  });
  panel.querySelector('.close').addEventListener('click', function(){
   active = null; location.reload();
  });
 });
})();
"""
