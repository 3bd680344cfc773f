"""The web chat channel: `/embed.js`, its JSON endpoints under /webchat/v1, and the /demo host page.

The host product includes the script with the signed-in user's identity and an HMAC-SHA256 of
the user id under WEB_CHAT_SECRET (as support-chat widgets do). Every request carries that
identity (headers `X-User-Id`, `X-Account`, `X-User-Hash`, or the query parameters `user_id`,
`account`, `user_hash`); a missing or wrong hash, or a user id that is no contact of the account,
is a 403 that reads and writes nothing (fail closed, also when no secret is configured).

The widget polls `GET /webchat/v1/thread?after=<message id>` (no long-held connections); a poll
marks the buyer as in the product (§7: openings may then go to web chat) and delivers the web
opening waiting for this visit. Messages go through the same engine as every other channel.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from channels import Channel, Installed
from core import calls, handlers
from core.case import Case
from core.catalog import Catalog
from core.channels import Capabilities, Delivery, Input
from core.conversation import LIVE, ThreadState
from core.errors import DomainError, Malformed
from core.framing import card_lines, card_summary, crossed_phrase
from core.money import money_str
from core.ports import MessageView
from web.http import error, runtime, secret
from web.inputs import json_body
from web.serialize import iso
from web.audit import not_audited

log = logging.getLogger(__name__)

PREFIX = "/webchat/v1"
bp = Blueprint("webchat", __name__)
MAX_TEXT = 2000
MAX_MESSAGES = 200  # per poll; the widget asks again from the new cursor
MAX_ID = 2**63 - 1  # the largest message id either database can hold
IDENTITY_HEADERS = "X-User-Id, X-Account, X-User-Hash, Content-Type"


def user_hash(secret: str, user_id: str) -> str:
    """The identity signature the host product computes: hex HMAC-SHA256(secret, user id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebIdentity:
    user_id: str
    account: str


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


IDENTITY_PARAMETERS = ("user_id", "account", "user_hash")


def verify(req) -> WebIdentity:
    """The request's signed identity; Forbidden when it is missing or the hash is wrong."""
    if any(p in req.args for p in IDENTITY_PARAMETERS):
        # A URL's query string lands in access logs, proxies' logs and browser history: an
        # identity hash there is a credential on disk. Refused (nothing read), so an
        # integration that sends it that way learns it at once.
        raise Forbidden("send the identity in the X-User-Id, X-Account and X-User-Hash headers, "
                        "never in the query string")

    def value(header: str) -> str:
        return (req.headers.get(header) or "").strip()

    user_id, account = value("X-User-Id"), value("X-Account")
    given = value("X-User-Hash").lower()
    key = secret("WEB_CHAT_SECRET")  # sandbox: the instance's generated one
    if not key:
        log.warning("web chat request refused: WEB_CHAT_SECRET is not configured")
        raise Forbidden("web chat is not configured on this server")
    if not user_id or not account or not given:
        raise Forbidden("missing identity: send X-User-Id, X-Account and X-User-Hash")
    if not hmac.compare_digest(given.encode(), user_hash(key, user_id).encode()):
        raise Forbidden("invalid user hash")
    return WebIdentity(user_id, account)


# --- what this channel is -----------------------------------------------------------------------

# Buttons beside a text box; queued messages wait for the widget's next poll; the buyer counts as
# present while it polls (openings may then come here).
WEB = Capabilities("web", Input.BUTTONS, Delivery.POLL, address=("web_user_id",),
                   activity="web_active_at", max_chars=MAX_TEXT)


# --- JSON shapes --------------------------------------------------------------------------------

def _message_json(m: MessageView) -> dict[str, Any]:
    return {"id": m.id, "direction": m.direction, "channel": m.channel, "kind": m.kind,
            "body": m.body, "at": iso(m.at)}


def card_json(case: Case, catalog: Catalog, vertical: str, *, call: bool = False) -> dict[str, Any]:
    """The case card: the figures (cost now vs on the target, the difference, a saving only when
    the target costs less, the charge today, the thresholds crossed, what the target adds or
    lacks, as catalog ids and in the vertical's words), and the card's text built here, worded
    as the opening message words the same case (core.framing): as conditional ("would have
    cost"), never "save", the crossings in the vertical's words, buttons that say what they do
    (with `call`, a Call me button: the buyer has a phone we may call)."""
    v = catalog.vertical(vertical)
    difference = case.monthly_difference
    current, target = case.current.name.capitalize(), case.target.name.capitalize()
    down = case.direction == "down"
    return {
        "current_plan": case.current.name, "target_plan": case.target.name,
        "direction": case.direction,
        "cost_current": money_str(case.cost_current.total),
        "cost_target": money_str(case.cost_target.total),
        "claims_saving": case.claims_saving,
        "monthly_saving": money_str(difference) if case.claims_saving else None,
        "monthly_difference": money_str(abs(difference)),
        "prorated_charge_today": money_str(case.prorated_charge_today),
        "thresholds_crossed": [{"metric": m.metric, "value": m.value, "threshold": m.threshold}
                               for m in case.thresholds_crossed],
        "unlocks": list(case.unlocks.features),
        "unlock_names": [catalog.feature_name(f, v) for f in case.unlocks.features],
        "gives_up": list(case.gives_up),
        "gives_up_names": [catalog.feature_name(f, v) for f in case.gives_up],
        "effective": case.effective.isoformat(),
        "title": f"{current} \u2192 {target}",
        "summary": card_summary(case),
        "lines": card_lines(case, catalog),
        "crossed": [crossed_phrase(case, m, catalog) for m in case.thresholds_crossed],
        "buttons": ({"offered": f"Move to {target}",
                     "awaiting_confirmation": f"Confirm move to {target}"} if down else
                    {"offered": f"Upgrade to {target}",
                     "awaiting_confirmation": f"Confirm upgrade to {target}"})
        | ({"call": "Call me"} if call else {}),  # "Please call me": a call is booked
    }


# --- HTTP ---------------------------------------------------------------------------------------

def _forbidden(message: str):
    return error(403, "forbidden", message)


def _identity_or_403():
    try:
        return verify(request), None
    except Forbidden as exc:
        return None, _forbidden(exc.message)


@bp.after_request
def cors(response: Response) -> Response:
    # The host product serves the page from its own origin. Identity travels in headers, never
    # cookies, so any origin may call; the signature is what protects the data.
    if request.path.startswith(PREFIX + "/") or request.path == "/embed.js":
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = IDENTITY_HEADERS
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    if request.path.startswith(PREFIX + "/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    if not request.path.startswith(PREFIX + "/"):
        return exc
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.code or 500, (exc.name or "error").lower().replace(" ", "_"))
    return error(exc.code or 500, code, exc.description or exc.name)


def _after() -> int:
    raw = request.args.get("after", "").strip()
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
        raise Malformed(f"after: expected a message id (a whole number >= 0), got {raw!r}",
                        field="after")
    return int(raw)


@bp.get(PREFIX + "/thread")
@not_audited("the signed-in buyer reading their own conversation")
def get_thread():
    identity, refusal = _identity_or_403()
    if refusal:
        return refusal
    after = _after()
    rt = runtime()
    view = handlers.poll(rt.uow, rt.catalog, rt.settings, WEB.name,
                       (identity.account, identity.user_id),
                       after, MAX_MESSAGES, rt.now())
    if view is None:
        return _forbidden("this user is not a contact of this account")
    case, thread = view.case, view.thread
    messages = [_message_json(m) for m in view.messages]
    new_opening = any(m["kind"] == "opening" for m in messages) or bool(view.delivered)
    opens = (view.contact.opted_out_at is None and new_opening
             and view.unanswered_opening is not None
             and thread is not None and ThreadState(thread.state) in LIVE)
    return jsonify({
        "thread_id": thread.id if thread else None,
        "state": thread.state if thread else None,
        "current_plan": view.account.plan,
        "messages": messages,
        "cursor": messages[-1]["id"] if messages else after,
        "more": len(messages) == MAX_MESSAGES,
        "case": card_json(case, rt.catalog, view.account.vertical, call=bool(
            view.contact.phone and view.contact.opted_out_at is None
            and calls.caller(rt.settings.channels))) if case is not None else None,
        "open": opens,
        "opening_id": view.unanswered_opening if opens else None,
        "opted_out": view.contact.opted_out_at is not None,
    })


@bp.post(PREFIX + "/messages")
@not_audited("the signed-in buyer's own message; consent changes are kept in "
              "consent_events")
def post_message():
    identity, refusal = _identity_or_403()
    if refusal:
        return refusal
    data = json_body(request)
    if not isinstance(data, dict):
        raise Malformed("request body must be a JSON object with 'text'")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Malformed("text: expected a non-empty string", field="text")
    if len(text) > MAX_TEXT:
        raise DomainError(f"text: at most {MAX_TEXT} characters", code="text_too_long",
                          field="text")
    message_id = data.get("id")
    if message_id is not None and (not isinstance(message_id, (str, int))
                                   or isinstance(message_id, bool) or len(str(message_id)) > 200
                                   or not str(message_id).strip()):
        raise Malformed("id: expected a non-empty string of at most 200 characters", field="id")
    rt = runtime()
    answer = handlers.handle_inbound(rt.uow(), rt.catalog, rt.settings, handlers.Inbound(
        WEB.name, text.strip(), str(message_id) if message_id is not None else None,
        web_user=(identity.account, identity.user_id)), rt.now())
    if not answer.known:
        return _forbidden("this user is not a contact of this account")
    return jsonify({"replies": list(answer.replies), "thread_id": answer.thread_id,
                    "state": answer.state, "duplicate": answer.duplicate})


@bp.get("/embed.js")
@not_audited("a static script")
def embed_js():
    text = resources.files("channels").joinpath("static/embed.js").read_text(encoding="utf-8")
    response = Response(text, mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def install(app: Flask, runtime: Any) -> Installed:
    app.register_blueprint(bp)
    return Installed()  # queued messages are pulled by the widget: no sender


CHANNEL = Channel("webchat", (WEB,), install)
