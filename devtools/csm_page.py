"""The CSM lane's local stand-in (`/sandbox/csm`): the escalations a CSM would get in Slack, with
the same buttons acting through the same use cases (core.csm). Registered when no Slack
workspace is configured, in sandbox mode; this machine only."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template_string, request, url_for

from channels.slack import CsmLane, lane_from
from core import csm
from devtools import local
from web.http import runtime
from web.audit import audited, note

bp = Blueprint("sandbox_csm", __name__, url_prefix="/sandbox/csm")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CSM lane · Upgrade Chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;background:#f4f4f6;margin:0;padding:16px;max-width:760px}
 h1{font-size:18px;margin:0 0 4px} p.note{color:#555;margin:0 0 16px}
 .esc{background:#fff;border-left:4px solid #611f69;border-radius:6px;padding:12px 16px;margin:0 0 12px;
      box-shadow:0 1px 3px #0002} .esc.resolved{opacity:.6;border-color:#2eb67d}
 .esc h2{font-size:15px;margin:0 0 8px} dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
 dt{font-weight:600} blockquote{margin:4px 0;padding-left:8px;border-left:3px solid #ddd;color:#333}
 .notes{color:#555;font-size:12px;margin-top:6px} form.actions{display:flex;gap:8px;margin-top:10px;align-items:center}
 button{border:1px solid #bbb;background:#fff;border-radius:4px;padding:4px 12px;cursor:pointer}
 button.claim{background:#007a5a;color:#fff;border-color:#007a5a}
</style></head><body>
<h1>CSM lane (sandbox)</h1>
<p class="note">No Slack workspace is configured: escalations are shown here with the message a CSM
would get in Slack, and the buttons act the same way.</p>
{% for v in views %}
 <div class="esc {{ v.status }}" id="escalation-{{ v.id }}" data-status="{{ v.status }}">
  <h2>Escalation #{{ v.id }}: {{ v.reason }}</h2>
  <dl><dt>Account</dt><dd>{{ v.account }}</dd><dt>Reason</dt><dd>{{ v.reason }}</dd>
  {% for label, value in v.fields %}<dt>{{ label }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
  {% if v.case_lines %}<p><strong>Case</strong><br>{% for line in v.case_lines %}{{ line }}<br>{% endfor %}</p>{% endif %}
  {% if v.messages %}<p><strong>Last buyer messages</strong></p>
   {% for m in v.messages %}<blockquote>{{ m }}</blockquote>{% endfor %}{% endif %}
  {% if v.link %}<p><a href="{{ v.link }}">Open {{ v.account }} in Upgrade Chat</a></p>{% endif %}
  {% if v.call %}<p class="call"><strong>Call</strong><br>{{ v.call }}</p>{% endif %}
  {% if v.notes %}<div class="notes">{% for label, who in v.notes %}{{ label }} {{ who.name }}{% if not loop.last %} · {% endif %}{% endfor %}</div>{% endif %}
  {% if v.actions %}
  <form class="actions" method="post" action="{{ url_for('sandbox_csm.act', escalation_id=v.id) }}">
   <input name="csm" value="{{ csm }}" aria-label="Your name" size="12">
   {% for action, label in v.actions %}
    <button type="submit" name="action" value="{{ action }}" class="{{ action }}">{{ label }}</button>
   {% endfor %}
  </form>{% endif %}
 </div>
{% else %}<p>No escalations yet.</p>{% endfor %}
</body></html>"""


bp.after_request(local.no_framing)


@bp.before_request
def local_only():
    """Every escalation with buyer messages and no login: this machine only (devtools/local.py)."""
    return local.guard(request)


def _sandbox_lane() -> CsmLane:
    rt = runtime()
    return lane_from(current_app.config, rt.uow, rt.settings.channels, rt.now, rt.catalog,
                     rt.settings.policy)


@bp.get("")
@audited("escalations.read", "escalations", source="sandbox", actor="local")
def page():
    lane = _sandbox_lane()
    views = [lane.view(card) for card in csm.recent(lane.uows)]
    return render_template_string(PAGE, views=views, csm=request.args.get("csm", "Sandbox CSM"))


@bp.post("/<int:escalation_id>")
@audited("escalation.act", "escalation", source="sandbox", actor="local", param="escalation_id")
def act(escalation_id: int):
    lane = _sandbox_lane()
    action = request.form.get("action", "")
    note(action=f"escalation.{action}" if action in lane.actions else "escalation.act")
    if action not in lane.actions:
        return "Unknown action", 400
    name = (request.form.get("csm") or "").strip()[:100] or "Sandbox CSM"
    outcome = lane.act(action, escalation_id, None, name)
    if outcome.card is None:
        return "Not Found", 404
    return redirect(url_for("sandbox_csm.page", csm=name) + f"#escalation-{escalation_id}")
