"""Slack, the CSM lane: escalations posted to a channel, Claim / Schedule call / Resolved buttons,
the `/upgrade-chat <account>` slash command, and a local stand-in page without Slack.

- `SlackEscalationSender` is the outbox sender of "csm_escalation" jobs (core.csm enqueues one
  per escalation, after the commit). It posts one message per escalation and records the post's
  channel and ts on the escalation; a retried job that finds them does not post again. It also
  sends "csm_escalation_update" jobs: a button updates its message at once, and when that
  `chat.update` fails (Slack down, rate limited) a job redraws the message from the escalation's
  state later, with the outbox's retries.
- `create_slack(config, uows, channels, clock, catalog)` builds a slack-bolt `App` (request signing verified by
  bolt, failing closed with a 401) and a blueprint mounting it at `POST /slack/events` — events,
  interactivity and the slash command all arrive there.
- `LoggingCsmNotifier` is the lane without Slack: escalations are logged, and in sandbox mode
  devtools/csm_page.py (`/sandbox/csm`, this machine only) shows them with the same buttons,
  calling the same use cases (core.csm).

Minimum necessary: for accounts whose vertical has `hipaa = true` in the catalog (or a vertical
the catalog does not know), a message carries only the account id, the reason and a link to the
operator's page — no usage, no figures, no message text. Buttons act once whatever Slack retries
or double clicks do (core.csm locks and checks the state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, jsonify, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.request.internals import (build_normalized_headers, extract_content_type,
                                          parse_body)
from web.audit import audited, note
from web.inputs import check_storable
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from channels import Channel, Installed
from core import csm
from core.catalog import Catalog
from core.channels import Channels
from core.csm import CLAIMED, OPEN, RESOLVED, Action, ActionResult
from core.errors import Malformed, NotFound
from core.guardrails import GuardrailPolicy
from core.money import dollars
from core.ports import EscalationCard, UnitOfWork
from core.jobs import OutboxJob, PermanentFailure

log = logging.getLogger(__name__)

REQUIRED = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_CHANNEL")
POST_KIND, UPDATE_KIND = csm.POST_JOB, csm.REDRAW_JOB  # the outbox job kinds this sends
CLAIM, SCHEDULE_CALL, RESOLVE = Action.CLAIM.value, Action.SCHEDULE_CALL.value, Action.RESOLVE.value
COMMAND = "/upgrade-chat"
REASONS = {
    "health": "Health red",
    "leaving": "Leaving",
    "human": "Asked for a person",
    "discount": "Asked for a discount",
    "callback": "Asked for a call back",
}
# Slack errors that a retry cannot fix: the job fails at once (and the log says why).
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
    "account_inactive", "token_revoked", "token_expired", "missing_scope", "invalid_blocks",
    "invalid_arguments", "msg_too_long", "no_text", "restricted_action",
})
MESSAGE_CHARS = 300  # per quoted buyer message


class SlackConfigError(ValueError):
    """Slack is half configured: the message names the missing keys."""


def configured(config: Mapping[str, Any]) -> bool:
    """True when Slack credentials are set; raises when only some are (fail closed)."""
    present = [k for k in REQUIRED if config.get(k)]
    if present and len(present) < len(REQUIRED):
        missing = ", ".join(k for k in REQUIRED if not config.get(k))
        raise SlackConfigError(f"Slack is partly configured: {missing} must be set as well "
                               f"(the bot token, the signing secret and the channel id)")
    return bool(present)


def web_client(config: Mapping[str, Any], timeout: int = 5) -> WebClient:
    """The Web API client: a short timeout (a sender runs in a batch), SLACK_API_URL in tests."""
    kwargs: dict[str, Any] = {"token": config["SLACK_BOT_TOKEN"], "timeout": timeout}
    if config.get("SLACK_API_URL"):
        kwargs["base_url"] = str(config["SLACK_API_URL"]).rstrip("/") + "/"
    return WebClient(**kwargs)


# --- what a CSM sees ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EscalationView:
    """An escalation as shown to a CSM, channel-neutral; minimal for HIPAA verticals."""

    id: int
    account: str
    reason: str
    status: str
    link: str | None
    minimal: bool
    fields: tuple[tuple[str, str], ...] = ()  # (label, value): name, plan, vertical, health
    case_lines: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    notes: tuple[tuple[str, dict], ...] = ()  # ("Claimed by", who), ...
    actions: tuple[tuple[str, str], ...] = ()  # (action_id, label)
    call: str | None = None  # once a call is scheduled: who to call, on what number, from when


def is_minimal(catalog: Catalog, vertical: str) -> bool:
    found = catalog.verticals.get(vertical)
    return found is None or found.hipaa  # a vertical we cannot read is treated as sensitive


def account_link(operator_url: str | None, account: str) -> str | None:
    return (f"{operator_url.rstrip('/')}/accounts/{quote(account, safe='')}"
            if operator_url else None)


def view(card: EscalationCard, catalog: Catalog, operator_url: str | None) -> EscalationView:
    minimal = is_minimal(catalog, card.vertical)
    notes = tuple((label, who) for label, who in (
        ("Claimed by", card.claimed_by), ("Call requested by", card.call_requested),
        ("Resolved by", card.resolved_by)) if who)
    actions: list[tuple[str, str]] = []
    if card.status == OPEN:
        actions.append((CLAIM, "Claim"))
    if card.status in (OPEN, CLAIMED) and not card.call_requested:
        actions.append((SCHEDULE_CALL, "Schedule call"))
    if card.status != RESOLVED:
        actions.append((RESOLVE, "Resolved"))
    base: dict[str, Any] = {
        "id": card.id, "account": card.account, "reason": REASONS.get(card.reason, card.reason),
        "status": card.status, "link": account_link(operator_url, card.account),
        "minimal": minimal, "notes": notes, "actions": tuple(actions),
        "call": call_line(card.call_requested)}
    if minimal:
        return EscalationView(**base)
    vertical = catalog.verticals[card.vertical]
    return EscalationView(
        **base,
        fields=(("Name", card.account_name), ("Plan", card.plan), ("Vertical", vertical.label),
                ("Health", _health(card))),
        case_lines=_case_lines(card.case),
        messages=tuple(_clip(m) for m in card.last_messages))


def call_line(requested: Mapping[str, Any] | None) -> str | None:
    """The call a CSM scheduled, as the card says it: who, which number, the channel they last
    wrote on, and the first allowed time (their time)."""
    call = (requested or {}).get("call")
    if not requested:
        return None
    if not call:
        return "No contact to call on this account."
    if call.get("erased"):
        return "The contact was erased: nothing on file to call."
    who = str(call.get("contact") or "the buyer")
    if call.get("opted_out"):
        return f"{who} opted out of calls and texts: do not call."
    if not call.get("number"):
        return f"{who} has no phone number on file."
    last = f", last wrote by {CHANNEL_WORDS.get(call.get('last_channel'), call.get('last_channel'))}" \
        if call.get("last_channel") else ""
    when = f" from {call['local']} their time ({call['zone']})" if call.get("local") else ""
    return f"Call {who} at {call['number']} (phone{last}){when}."


CHANNEL_WORDS = {"sms": "SMS", "whatsapp": "WhatsApp", "web": "web chat", "voice": "phone",
                 "api": "the API"}


def _health(card: EscalationCard) -> str:
    csat = "n/a" if card.csat is None else f"{card.csat.normalize():f}"
    sentiment = "n/a" if card.sentiment is None else f"{card.sentiment.normalize():f}"
    text = f"CSAT {csat} · sentiment {sentiment} · open escalations {card.open_here}"
    if card.reported_escalations:
        text += f" (operator reports {card.reported_escalations})"
    return text


def _usd(value: Any) -> str:
    """A stored case figure ("529.00") as money ("$529.00"); anything else as it is."""
    try:
        return dollars(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return str(value)


def _case_lines(case: Mapping[str, Any]) -> tuple[str, ...]:
    if not case or "cost_current" not in case:
        return ()
    current, target = case.get("current_plan", "?"), case.get("target_plan", "?")
    usage = case.get("usage") or {}
    return (
        f"{current} → {target}",
        (f"Cost now {_usd(case['cost_current'])}/mo vs {_usd(case.get('cost_target'))}/mo "
         f"on {target}"),
        (f"Difference {_usd(case.get('monthly_difference'))}/mo"
         + (" (a saving)" if case.get("claims_saving") else "")),
        f"Charge today {_usd(case.get('prorated_charge_today'))}",
        (f"Usage: {usage.get('messages', 0):,} messages, {usage.get('seats', 0)} seats, "
         f"{usage.get('integrations', 0)} integrations (30 days)"),
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 1] + "…"


# --- Slack rendering (pure) ---------------------------------------------------------------------

def _esc(text: str) -> str:
    """Slack mrkdwn escaping: user text must never become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(entry: Mapping[str, Any]) -> str:
    return f"<@{entry['id']}>" if entry.get("id") else _esc(str(entry.get("name") or "someone"))


def fallback_text(v: EscalationView) -> str:
    """The notification text: account id and reason only, whatever the vertical."""
    return f"Escalation #{v.id}: {v.reason} (account {v.account})"


def blocks(v: EscalationView) -> list[dict[str, Any]]:
    """Block Kit for an escalation message (the post and every later update)."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Escalation #{v.id}: {v.reason}"}},
        {"type": "section", "block_id": "account", "fields": [
            {"type": "mrkdwn", "text": f"*Account*\n{_esc(v.account)}"},
            {"type": "mrkdwn", "text": f"*Reason*\n{_esc(v.reason)}"},
            *({"type": "mrkdwn", "text": f"*{label}*\n{_esc(value)}"} for label, value in v.fields),
        ]},
    ]
    if v.case_lines:
        out.append({"type": "section", "block_id": "case", "text": {
            "type": "mrkdwn", "text": "*Case*\n" + "\n".join(_esc(x) for x in v.case_lines)}})
    if v.messages:
        out.append({"type": "section", "block_id": "messages", "text": {
            "type": "mrkdwn", "verbatim": True,  # a buyer's URL or @name stays plain text
            "text": "*Last buyer messages*\n" + "\n".join(f"> {_esc(m)}" for m in v.messages)}})
    if v.link:
        out.append({"type": "context", "block_id": "link", "elements": [
            {"type": "mrkdwn", "text": f"<{v.link}|Open {_esc(v.account)} in Upgrade Chat>"}]})
    if v.call:
        out.append({"type": "section", "block_id": "call", "text": {
            "type": "mrkdwn", "text": f"*Call*\n{_esc(v.call)}"}})
    if v.notes:
        out.append({"type": "context", "block_id": "status", "elements": [
            {"type": "mrkdwn", "text": f"{label} {_who(who)}"} for label, who in v.notes]})
    if v.actions:
        out.append({"type": "actions", "block_id": f"escalation-{v.id}", "elements": [
            {"type": "button", "action_id": action, "value": str(v.id),
             "text": {"type": "plain_text", "text": label},
             **({"style": "primary"} if action == CLAIM else {})}
            for action, label in v.actions]})
    return out


# --- the outbox sender --------------------------------------------------------------------------

class SlackEscalationSender:
    """Posts one message per escalation to the CSM channel (outbox kind "csm_escalation").

    Raises to be retried (Slack down, rate limited), `PermanentFailure` for what a retry cannot
    fix (a wrong channel or token). The post's channel and ts are stored on the escalation; a
    retry that finds them does not post again. (A post whose ts could not be stored — the
    database failing right after Slack answered — is posted again on the retry: at least once.)
    """

    def __init__(self, client: WebClient, channel: str, uows: Callable[..., UnitOfWork],
                 catalog: Catalog, operator_url: str | None = None) -> None:
        self._client = client
        self._channel = channel
        self._uows = uows
        self._catalog = catalog
        self._operator_url = operator_url

    @classmethod
    def from_config(cls, config: Mapping[str, Any], uows: Callable[..., UnitOfWork],
                    catalog: Catalog) -> SlackEscalationSender:
        return cls(web_client(config), str(config["SLACK_CHANNEL"]), uows, catalog,
                   config.get("OPERATOR_URL"))

    def __call__(self, job: OutboxJob) -> None:
        escalation_id = int(job.payload["escalation_id"])
        card = csm.card(self._uows, escalation_id)
        if card is None:
            raise PermanentFailure(f"escalation {escalation_id} does not exist")
        if job.kind == UPDATE_KIND:
            self._redraw(card)
            return
        if card.slack:
            log.info("escalation %s was already posted to Slack", escalation_id)
            return
        v = view(card, self._catalog, self._operator_url)
        try:
            response = self._client.chat_postMessage(channel=self._channel,
                                                     text=fallback_text(v), blocks=blocks(v))
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in PERMANENT_ERRORS:
                raise PermanentFailure(f"Slack refused the post: {error}") from None
            raise RuntimeError(f"Slack post failed: {error or 'unexpected answer'}") from None
        csm.posted(self._uows, escalation_id, {"channel": response["channel"], "ts": response["ts"]})
        log.info("escalation %s posted to Slack (account %s)", escalation_id, card.account)

    def _redraw(self, card: EscalationCard) -> None:
        """The posted message, drawn again from the escalation as it is now (so redrawing twice,
        or after a later click, shows the same thing). Before the post there is nothing to
        redraw: the post itself draws the current state."""
        if not card.slack:
            log.info("escalation %s: not posted yet, nothing to redraw", card.id)
            return
        v = view(card, self._catalog, self._operator_url)
        try:
            self._client.chat_update(channel=card.slack["channel"], ts=card.slack["ts"],
                                     text=fallback_text(v), blocks=blocks(v))
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in PERMANENT_ERRORS or error in ("message_not_found", "cant_update_message"):
                raise PermanentFailure(f"Slack refused the update: {error}") from None
            raise RuntimeError(f"Slack update failed: {error or 'unexpected answer'}") from None
        log.info("escalation %s: Slack message redrawn", card.id)


def _error_code(exc: SlackApiError) -> str | None:
    response = exc.response
    try:
        return response.get("error") if response is not None else None
    except AttributeError:
        return None


class LoggingCsmNotifier:
    """The CSM lane without Slack: escalations are logged for the operator (and shown on the
    sandbox's /sandbox/csm page). The line carries the account id, the reason and the thread,
    never message text or phone numbers."""

    def __call__(self, job: OutboxJob) -> None:
        p = job.payload
        log.warning("CSM escalation: account %s, reason %s, thread %s", p.get("account"),
                    p.get("reason"), p.get("thread_id"))


# --- bolt: interactivity and the slash command --------------------------------------------------

@dataclass
class CsmLane:
    """The CSM actions behind the buttons, shared by Slack and the sandbox page."""

    uows: Callable[..., UnitOfWork]
    channels: Channels
    catalog: Catalog
    clock: Callable[[], datetime]
    business: str
    operator_url: str | None = None
    policy: GuardrailPolicy = GuardrailPolicy()  # quiet hours: when a CSM may call
    actions: frozenset[str] = field(default=frozenset(a.value for a in Action), init=False)

    def act(self, action: str, escalation_id: int, csm_id: str | None,
            csm_name: str) -> ActionResult:
        return csm.act(self.uows, self.channels, escalation_id, Action(action), csm_id, csm_name,
                       self.business, self.clock(), self.policy)

    def redraw_later(self, escalation_id: int, action: str) -> bool:
        """Queue an outbox job that redraws the escalation's Slack message (one per action: each
        acts once). False when it was queued already."""
        return csm.redraw_later(self.uows, escalation_id, action, self.clock())

    def view(self, card: EscalationCard) -> EscalationView:
        return view(card, self.catalog, self.operator_url)


def lane_from(config: Mapping[str, Any], uows: Callable[..., UnitOfWork], channels: Channels,
              clock: Callable[[], datetime], catalog: Catalog,
              policy: GuardrailPolicy = GuardrailPolicy()) -> CsmLane:
    return CsmLane(uows, channels, catalog, clock, str(config.get("BUSINESS_NAME") or "Upgrade Chat"),
                   config.get("OPERATOR_URL"), policy)


def create_slack(config: Mapping[str, Any], uows: Callable[..., UnitOfWork], channels: Channels,
                 clock: Callable[[], datetime], catalog: Catalog,
                 policy: GuardrailPolicy = GuardrailPolicy()) -> tuple[App, Blueprint]:
    """The bolt app and a blueprint serving it at POST /slack/events (register it only when
    `configured(config)`). Every request is verified against SLACK_SIGNING_SECRET by bolt."""
    if not configured(config):
        raise SlackConfigError("Slack is not configured: set " + ", ".join(REQUIRED))
    lane = lane_from(config, uows, channels, clock, catalog, policy)
    bolt = App(signing_secret=str(config["SLACK_SIGNING_SECRET"]), client=web_client(config),
               # the listener runs before the answer, so a button's effect is committed when
               # Slack sees the 200 (no work left in a background thread of a web worker)
               process_before_response=True,
               # no Web API call at start: a Slack outage must not stop the service booting
               token_verification_enabled=False)
    for action in lane.actions:
        bolt.action(action)(_button(lane, action))
    bolt.command(COMMAND)(_command(lane))

    handler = SlackRequestHandler(bolt)
    verifier = SignatureVerifier(str(config["SLACK_SIGNING_SECRET"]))
    bp = Blueprint("slack", __name__)

    @bp.post("/slack/events")
    @audited("slack.request", "slack", source="slack")  # each listener notes what it did
    def events():
        text = signed_text(verifier, request.get_data(), request.headers)
        if text is None:
            return jsonify({"error": "invalid request"}), 401  # as bolt answers it
        problem = not_slacks(text, request.headers)
        if problem is not None:
            log.warning("Slack request refused: signed, but %s", problem)
            return jsonify({"error": "malformed", "message": problem}), 400
        return handler.handle(request)

    return bolt, bp


# --- verify and read, before bolt ---------------------------------------------------------------
# bolt reads the body before it checks the signature, reads the timestamp with int() and takes
# Slack's shapes for granted: an unsigned body it could not parse, a timestamp that was a word,
# or a signed payload whose "event" was a string or whose "actions" was empty were each a 500.
# So the signature is checked here first, and then what bolt will read is read here, by bolt's
# own parser, and must have the shapes Slack sends; only then does bolt see the request.

MAX_TIMESTAMP_DIGITS = 12  # seconds since 1970 for the next 30,000 years
# bolt takes these for an id or an object holding one, wherever they are (extract_user_id, ...)
ID_OR_OBJECT = frozenset({"user", "team", "channel", "enterprise"})
# ... and these for objects (payload.get("event", {}).get(...), ...)
OBJECTS = frozenset({"event", "message", "previous_message", "item", "assistant_thread", "view",
                     "function_data", "container"})


def signed_text(verifier: SignatureVerifier, raw: bytes, headers: Mapping[str, str]) -> str | None:
    """The body, when Slack signed it (its timestamp within five minutes); else None."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (signature and signature.isascii() and timestamp.isascii() and timestamp.isdigit()
            and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        return None  # (hmac.compare_digest refuses a str that is not ASCII with a TypeError)
    try:
        text = raw.decode("utf-8")  # Slack sends UTF-8; bolt signs the text
    except UnicodeDecodeError:
        return None
    return text if verifier.is_valid(text, timestamp, signature) else None


def not_slacks(text: str, headers: Mapping[str, str]) -> str | None:
    """Why a signed body is not one Slack sends (None: it is): bolt's reading of it must be an
    object, whose ids are strings or objects, whose events, messages and views are objects,
    whose actions are objects (a click has some, each with its action_id), with no NUL or lone
    surrogate anywhere."""
    try:
        body = parse_body(text, extract_content_type(build_normalized_headers(dict(headers))))
    except (ValueError, RecursionError):
        return "the body is neither a form nor JSON"
    if not isinstance(body, dict):
        return "the body is not an object"
    if body.get("type") in ("block_actions", "interactive_message"):
        actions = body.get("actions")
        if not actions or not isinstance(actions, list):
            return "a click without actions"
        if body["type"] == "block_actions" and not all(
                isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
            return "a click whose actions have no action_id"
    pending: list[Any] = [body]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ID_OR_OBJECT and not isinstance(value, (str, dict, type(None))):
                    return f"{key} is neither an id nor an object"
                if key in OBJECTS and not isinstance(value, dict) and (
                        value is not None or key == "event"):
                    return f"{key} is not an object"
                if key in ("actions", "authorizations") and not (
                        (value is None and key == "authorizations") or isinstance(value, list)
                        and all(isinstance(item, dict) for item in value)):
                    return f"{key} is not a list of objects"
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    try:
        check_storable(body)
    except Malformed as exc:
        return exc.message
    return None


def _button(lane: CsmLane, action: str):
    def on_button(ack, body, client: WebClient) -> None:
        ack()
        actions = body.get("actions")  # a click's; a dialog's submission has none
        escalation_id = _escalation_id(actions[0].get("value") if actions else None)
        if escalation_id is None:
            log.warning("Slack %s button without an escalation id", action)
            return
        user = _object(body.get("user"))
        user_id = user.get("id") if isinstance(user.get("id"), str) else None
        note(action=f"escalation.{action}", object_type="escalation",
             object_id=str(escalation_id), actor=f"slack:{user_id or 'unknown'}")
        outcome = lane.act(action, escalation_id, user_id, _name(client, user))
        note(changed=int(outcome.changed))
        if not outcome.changed or outcome.card is None:
            # A retry, a double click or a second CSM: the first one acted.
            log.info("escalation %s: %s changed nothing", escalation_id, action)
            return
        container = _object(body.get("container"))
        channel = _string(container.get("channel_id")) or (outcome.card.slack or {}).get("channel")
        ts = _string(container.get("message_ts")) or (outcome.card.slack or {}).get("ts")
        if not (channel and ts):
            return
        v = lane.view(outcome.card)
        try:
            client.chat_update(channel=channel, ts=ts, text=fallback_text(v), blocks=blocks(v))
        except Exception as exc:  # noqa: BLE001 - the escalation changed; its message catches up
            error = _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            queued = lane.redraw_later(escalation_id, action)
            log.warning("escalation %s: Slack message not updated (%s); %s", escalation_id,
                        error, "a redraw is queued" if queued else "a redraw was queued already")

    on_button.__name__ = f"on_{action}"
    return on_button


MAX_ID = 2**63 - 1  # the largest id either database holds


def _escalation_id(value: Any) -> int | None:
    """The escalation a button names: its value is the id we wrote (a string of digits)."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(client: WebClient, user: Mapping[str, Any]) -> str:
    """The CSM's first name as the buyer should read it; the payload's name when Slack cannot
    say (users:read not granted)."""
    fallback = (_string(user.get("name")) or _string(user.get("username"))
                or "Your account manager")
    if not _string(user.get("id")):
        return fallback
    try:
        profile = client.users_info(user=user["id"])["user"].get("profile") or {}
    except (SlackApiError, KeyError, TypeError):
        return fallback
    return (profile.get("first_name") or profile.get("real_name")
            or profile.get("display_name") or fallback)


def _command(lane: CsmLane):
    def on_command(ack, command) -> None:
        account = (_string(command.get("text")) or "").strip().split(" ")[0]
        note(action="account.report", object_type="account", object_id=account or "-",
             actor=f"slack:{_string(command.get('user_id')) or 'unknown'}")
        if not account:
            ack(response_type="ephemeral", text=f"Usage: {COMMAND} <account id>")
            return
        text = account_report(lane, account)
        ack(response_type="ephemeral", text=text,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])

    return on_command


def account_report(lane: CsmLane, external_id: str) -> str:
    """The slash command's answer (mrkdwn): usage, case and thread state; for HIPAA verticals
    only the id, the escalations' reasons and the link."""
    try:
        report = csm.account_report(lane.uows, lane.catalog, external_id, lane.clock())
    except NotFound:
        return f"No account {_esc(external_id)}."
    row, case, matrix = report.account, report.case, report.usage
    state, target = report.thread_state, report.thread_target
    link = account_link(lane.operator_url, row.external_id)
    lines = [f"*{_esc(row.external_id)}*"]
    open_cards = [c for c in report.escalations if c.status != RESOLVED]
    escalated = ", ".join(f"#{c.id} {REASONS.get(c.reason, c.reason)} ({c.status})"
                          for c in open_cards) or "none open"
    if is_minimal(lane.catalog, row.vertical):
        lines.append(f"Escalations: {escalated}")
        if link:
            lines.append(f"<{link}|Open in Upgrade Chat>")
        return "\n".join(lines)
    vertical = lane.catalog.verticals[row.vertical]
    lines += [
        f"{_esc(row.name)} · {row.plan} · {vertical.label}",
        (f"Usage (30 days): {matrix.messages:,} messages, {matrix.seats} seats, "
         f"{matrix.integrations} integrations"),
    ]
    if case is None:
        lines.append("Case: no tier change applies now")
    else:
        lines.append("Case: " + "; ".join(_case_lines(csm.case_summary(case))[:4]))
    lines.append(f"Thread: {state} (to {target})" if state else "Thread: none")
    lines.append(f"Escalations: {escalated}")
    if link:
        lines.append(f"<{link}|Open in Upgrade Chat>")
    return "\n".join(lines)


def install(app: Flask, runtime: Any) -> Installed:
    """With Slack configured: `/slack/events`, and the outbox's senders of escalation posts and
    redraws. Without: escalations are logged (LoggingCsmNotifier). Half configured: refused."""
    if not configured(app.config):
        return Installed(jobs={POST_KIND: LoggingCsmNotifier()})
    _, blueprint = create_slack(app.config, runtime.uow, runtime.settings.channels,
                                runtime.now, runtime.catalog, runtime.settings.policy)
    app.register_blueprint(blueprint)
    sender = SlackEscalationSender.from_config(app.config, runtime.uow, runtime.catalog)
    # UPDATE: a button's failed chat.update, redrawn later
    return Installed(jobs={POST_KIND: sender, UPDATE_KIND: sender})


CHANNEL = Channel("slack", (), install)
