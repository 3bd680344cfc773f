"""The sandbox phone: without a Twilio account, a local page that acts as each buyer's phone.

Outbound messages are stored instead of sent (channels.twilio_outbound.SandboxSender) and shown
here per contact and medium. A reply typed on the page becomes a Twilio-shaped form, signed with
the sandbox's auth token exactly as Twilio signs, and goes through the WSGI stack to the same
`POST /twilio/messaging` that production uses — so the sandbox exercises the production code.
Each SMS phone can also call the business and be called back (devtools/call_panel.py).
The blueprint is registered only in sandbox mode (no TWILIO_ACCOUNT_SID), and answers only
requests from this machine.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from flask import Blueprint, current_app, redirect, render_template_string, request, url_for
from twilio.request_validator import RequestValidator
from werkzeug.test import Client

from channels import twilio_messaging
from devtools import call_panel, local
from storage.sandbox import phones, ringing_calls
from web.http import runtime, secret
from core.audit import pseudonym
from web.audit import audited, note

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

SANDBOX_NUMBER = "+15005550006"  # Twilio's magic test number: the service's side of the chat

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox phone · Upgrade Chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;background:#eef1f5;margin:0;padding:16px}
 h1{font-size:18px;margin:0 0 4px} p.note{color:#555;margin:0 0 16px}
 .phones{display:flex;flex-wrap:wrap;gap:16px}
 .phone{width:300px;height:560px;background:#111;border-radius:32px;padding:14px;display:flex;
        flex-direction:column;box-shadow:0 4px 16px #0003}
 .screen{background:#fff;border-radius:20px;flex:1;display:flex;flex-direction:column;overflow:hidden}
 .top{padding:8px 12px;border-bottom:1px solid #ddd;font-weight:600}
 .top small{display:block;font-weight:400;color:#666}
 .msgs{flex:1;overflow-y:auto;padding:8px;display:flex;flex-direction:column;gap:6px}
 .msg{max-width:80%;padding:6px 10px;border-radius:14px;white-space:pre-wrap;word-wrap:break-word}
 .out{background:#e5e5ea;align-self:flex-start} .in{background:#0b84ff;color:#fff;align-self:flex-end}
 .whatsapp .in{background:#25d366} .queued,.relayed{opacity:.55;border:1px dashed #888}
 .meta{font-size:11px;color:#777;align-self:flex-start}
 form{display:flex;border-top:1px solid #ddd} form input{flex:1;border:0;padding:10px}
 form button{border:0;background:#0b84ff;color:#fff;padding:0 14px}
""" + call_panel.CSS + """
</style></head><body>
<h1>Sandbox phone</h1>
<p class="note">No Twilio account is configured: messages are stored, not sent. Replies typed
here are signed like Twilio's and posted to <code>/twilio/messaging</code>; calls, to
<code>/twilio/voice</code>. <b>Call the business</b> calls in. For a call back, text
<b>call me</b>: the reply says when (between {{ window }} the buyer's time), and this phone
rings a few seconds after; answer, press 1, hear the case.</p>
<div class="phones">
{% for p in phones %}
 <div class="phone {{ p.medium }}" id="{{ p.contact }}-{{ p.medium }}" data-contact="{{ p.contact }}"
      data-medium="{{ p.medium }}">
  <div class="screen">
   <div class="top">{% if p.medium == 'sms' %}<button type="button" class="dial"
     title="Call {{ business }} from this number">Call the business</button>{% endif %}
     {{ p.contact_name or p.contact }} · {{ p.medium|upper }}
     <small>{{ p.account_name }} · {{ p.number }}</small></div>
   <div class="msgs">
   {% for m in p.messages %}
     <div class="msg {{ m.direction }} {{ m.status if m.status in ('queued', 'relayed') else '' }}"
          data-status="{{ m.status }}">{{ m.body }}</div>
     {% if m.status == 'queued' %}<div class="meta">queued{% if m.not_before %}, not before
       {{ m.not_before.strftime('%b %d %H:%M UTC') }}{% endif %}</div>{% endif %}
     {% if m.status == 'relayed' %}<div class="meta">relayed: returned to the API caller,
       not sent</div>{% endif %}
   {% else %}<div class="meta">No messages yet.</div>{% endfor %}
   </div>
   <form method="post" action="{{ url_for('sandbox.send') }}">
    <input type="hidden" name="number" value="{{ p.number }}">
    <input type="hidden" name="medium" value="{{ p.medium }}">
    <input type="hidden" name="anchor" value="{{ p.contact }}-{{ p.medium }}">
    <input name="body" placeholder="Reply as the buyer" autocomplete="off" required>
    <button type="submit">Send</button>
   </form>
   {% if p.medium == 'sms' %}{% with ringing = calls_ringing.get(p.contact) %}""" + call_panel.PHONE + """
   {% endwith %}{% endif %}
  </div>
 </div>
{% else %}<p>No contacts with a phone number yet.</p>{% endfor %}
</div>
<script>
 var SANDBOX_CALL_URL = {{ url_for('sandbox_call.call_step')|tojson }};
""" + call_panel.SCRIPT + """
 // Refresh every few seconds to show new messages (and calls ringing), unless the operator is
 // typing or on a call.
 setInterval(function(){ if (window.sandboxCallActive()) { return; }
   if(!document.activeElement || document.activeElement.tagName!=='INPUT'
   || !document.activeElement.value){ location.reload(); } }, 4000);
 document.querySelectorAll('.msgs').forEach(function(m){ m.scrollTop = m.scrollHeight; });
</script>
</body></html>"""


bp.after_request(local.no_framing)


@bp.before_request
def local_only():
    """The page shows every buyer's messages and has no login: it answers only on this machine,
    to a browser signed in with the instance's local token (a deployment without Twilio must
    not publish it); see devtools/local.py."""
    return local.guard(request)


@bp.get("/phone")
@audited("sandbox_phone.read", "contacts", source="sandbox", actor="local")
def phone():
    rt = runtime()
    # The phone of the Twilio messaging channel's media (SMS, WhatsApp): what this page stands in for.
    media = [(c.name, c.address[0]) for c in twilio_messaging.CHANNEL.media]
    with rt.uow(read_only=True) as uow:
        found = phones(uow.session, media)
        ringing = ringing_calls(uow.session)
    policy = rt.settings.policy
    window = f"{policy.window_start:%H:%M} and {policy.window_end:%H:%M}"
    return render_template_string(PAGE, phones=found, calls_ringing=ringing,
                                  business=rt.settings.business.name, window=window)


@bp.post("/phone/send")
@audited("sandbox_phone.send", "contact", source="sandbox", actor="local")
def send():
    """Post the typed reply to /twilio/messaging the way Twilio would: a signed form."""
    medium = request.form.get("medium", "sms")
    number = request.form.get("number", "")
    note(object_id=pseudonym(number))
    prefix = "whatsapp:" if medium == "whatsapp" else ""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "MessageSid": "SM" + uuid.uuid4().hex,
        "From": f"{prefix}{number}",
        "To": f"{prefix}{SANDBOX_NUMBER}",
        "Body": request.form.get("body", ""),
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    path = "/twilio/messaging"
    url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path
    token = secret("TWILIO_AUTH_TOKEN")  # the sandbox's own, the one /twilio/messaging checks
    if not token:
        return "The sandbox's Twilio token is not available (see the log)", 503
    signature = RequestValidator(token).compute_signature(url, params)
    response = Client(current_app).post(path, data=params,
                                        headers={"X-Twilio-Signature": signature})
    if response.status_code != 200:
        current_app.logger.warning("sandbox reply was refused: HTTP %s", response.status_code)
    # The phone to scroll back to ("<contact>-<medium>"), quoted into the URL's fragment: a CR or
    # LF in a redirect's Location was a 500.
    anchor = quote(request.form.get("anchor", "")[:200], safe="@._-+:")
    return redirect(url_for("sandbox.phone") + (f"#{anchor}" if anchor else ""))
