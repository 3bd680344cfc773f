"""The demo host page (`/demo`): a fake product page signed in as a demo buyer, with the web chat
widget included as a host product includes it. The sandbox only, this machine only."""

from __future__ import annotations

import html
from typing import Any

from flask import Blueprint, Response, current_app, request

from channels.webchat import user_hash
from core.money import count
from devtools import demo, local
from web.http import runtime, secret
from web.audit import audited

bp = Blueprint("demo_page", __name__)
DEMO_ACCOUNT = "acme-clinic"  # /demo signs in as its web contact (Dana) unless ?account=


bp.after_request(local.no_framing)


@bp.before_request
def local_only():
    """It signs in as a demo buyer with no login: this machine only (devtools/local.py)."""
    return local.guard(request)


DEMO_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} · Dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{{margin:0;font:15px/1.4 system-ui,sans-serif;background:#f3f4f6;color:#1f2937}}
 header{{background:#0f766e;color:#fff;padding:14px 24px;display:flex;justify-content:space-between}}
 main{{padding:24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:16px}}
 .tile{{background:#fff;border-radius:10px;padding:16px;box-shadow:0 1px 3px #0002}}
 .tile b{{display:block;font-size:28px;margin-top:6px}}
 p,nav{{padding:0 24px;color:#6b7280;max-width:620px}} p a,nav a{{color:#0f766e}}
 /* host CSS that would break a widget not living in a shadow root */
 button{{background:hotpink!important;font-size:30px!important}} div{{letter-spacing:.02em}}
</style></head><body>
<header><span>{name} — {label}</span><span>{person} · {role}</span></header>
<main>
 <div class="tile">{messages} (30 days)<b>{messages_used}</b></div>
 <div class="tile">{seats}<b>{seats_used} of {seats_included}</b></div>
 <div class="tile">{integrations}<b>{integrations_used}</b></div>
 <div class="tile">Plan<b>{plan}</b></div>
</main>
<p>A demo host page: the chat bubble in the corner is the Upgrade Chat widget, included with
{first}'s signed identity.</p>
<p>Ask for a call back: type <b>call me</b> in the chat. The reply says when (between
{window} {first}'s time); then {first}'s phone rings on the
<a href="/sandbox/phone">sandbox phone</a> page: answer, press 1, and hear the case.</p>
<nav>Sign in as another demo buyer: {others}</nav>
<script src="/embed.js" data-user-id="{user}" data-account="{account}" data-user-hash="{hash}"></script>
</body></html>"""


def _demo_accounts() -> dict[str, tuple[Any, Any, dict[str, int]]]:
    """The demo accounts a /demo page can sign in as: id -> (account, web contact, usage)."""
    out = {}
    for account, _, usage in demo.ACCOUNTS:
        contact = next((c for c in account.contacts if c.web_user_id), None)
        if contact is not None:
            out[account.external_id] = (account, contact, usage)
    return out


@bp.get("/demo")
@audited("demo.sign_in", "account", source="sandbox", actor="local")
def demo_page():
    """A fake product page signed in as a demo buyer (?account=<demo account>, by default the
    demo clinic's Dana): the sandbox, this machine only."""
    if not current_app.config.get("SANDBOX"):
        return Response("Not Found", status=404, mimetype="text/plain")
    key = secret("WEB_CHAT_SECRET")
    if not key:
        return Response("web chat is not configured: set UPGRADE_CHAT_WEB_CHAT_SECRET",
                        status=503, mimetype="text/plain")
    accounts = _demo_accounts()
    chosen = accounts.get(request.args.get("account") or DEMO_ACCOUNT)
    if chosen is None:
        return Response("no such demo account", status=404, mimetype="text/plain")
    account, contact, usage = chosen
    catalog = runtime().catalog
    v, plan = catalog.vertical(account.vertical), catalog.plan(account.plan)
    e = html.escape
    others = " · ".join(f'<a href="/demo?account={e(a.external_id)}">{e(a.name)}</a>'
                        for a, _, _ in accounts.values() if a.external_id != account.external_id)
    page = DEMO_PAGE.format(
        name=e(account.name), label=e(v.label), person=e(contact.name or contact.external_id),
        first=e((contact.name or contact.external_id).split()[0]), role=e(contact.role.title()),
        messages=e(v.messages.capitalize()), messages_used=count(usage.get("messages", 0)),
        seats=e(v.seats.capitalize()), seats_used=count(usage.get("seats", 0)),
        seats_included=count(plan.included_seats),
        integrations=e(v.integrations[:1].upper() + v.integrations[1:]),
        integrations_used=count(usage.get("integrations", 0)), plan=e(plan.name.capitalize()),
        others=others, window=e(_window()), user=e(contact.web_user_id), account=e(account.external_id),
        hash=user_hash(key, contact.web_user_id))
    return Response(page, mimetype="text/html")


def _window() -> str:
    policy = runtime().settings.policy
    return f"{policy.window_start:%H:%M} and {policy.window_end:%H:%M}"


def host_snippet(secret: str, user_id: str, account: str, **attrs: str) -> str:
    """The <script> tag a host page includes for `user_id` (used by /demo and the tests)."""
    extra = "".join(f' data-{html.escape(k.replace("_", "-"))}="{html.escape(v)}"'
                    for k, v in attrs.items())
    return (f'<script src="/embed.js" data-user-id="{html.escape(user_id)}" '
            f'data-account="{html.escape(account)}" '
            f'data-user-hash="{user_hash(secret, user_id)}"{extra}></script>')


