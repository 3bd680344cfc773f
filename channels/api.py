"""The operator's JSON API under /api/v1: accounts, usage, health, the case, the signals,
conversations, and a contact's erasure.

Every request needs `Authorization: Bearer <API_KEY>`. Every error is
`{"error": {"code", "message", "field"?, "index"?}}`: 400 malformed, 401 no or bad key,
404 unknown account or route, 405, 409 a write that kept losing a race, 422 well-formed but invalid,
503 no_api_key when no key is configured and the start step has not written instance/api_key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any
from importlib import resources

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from channels import Channel, Installed
from core import erasure, handlers, ledger, listing, services
from core.accounts import Contact
from core.usage import UsageEvent
from core.errors import DomainError, Malformed, NotFound
from core.ports import AccountFilter, Conflict, StorageBusy, StorageUnavailable
from web.api_key import ApiKeyUnavailable
from web.audit import audited, not_audited, note, set_actor
from web.http import error, runtime
from web.inputs import (check_id, json_body, parse_decimal, parse_events, parse_time,
                             refuse_nul, require)
from web.serialize import (account_json, account_page_json, case_json, erasure_json,
                           ledger_json, plan_history_json, signal_json, thread_json)
from web.spool import Spool

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)
MAX_BATCH = 10_000


def body() -> dict:
    data = json_body(request)
    if data is None:
        raise Malformed("request body must be JSON (Content-Type: application/json)")
    if not isinstance(data, dict):
        raise Malformed("request body must be a JSON object")
    return data


MAX_TEXT = 4096  # the longest message any channel carries (WhatsApp; SMS stops at 1,600)


@bp.before_request
def authenticate():
    if request.endpoint == "api.openapi":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    try:
        key = runtime().api_key.read()  # never created by a request: the start step does that
    except ApiKeyUnavailable as exc:
        log.error("API request refused: %s", exc)
        return error(503, "no_api_key", "the service has no API key yet: run `flask --app app "
                                        "init` (or scripts/serve) on the server, or set "
                                        "UPGRADE_CHAT_API_KEY; the server log says more")
    if scheme.lower() != "bearer" or not token:
        return error(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <API_KEY>'")
    if not hmac.compare_digest(token.encode(), key.encode()):
        return error(401, "unauthorized", "invalid API key")
    set_actor(key_actor(key))
    return None


def key_actor(key: str) -> str:
    """The API key as the audit trail names it: a fingerprint (never the key), so a rotation
    shows."""
    return "api-key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def api_audited(action: str, object_type: str, **kwargs: Any):
    return audited(action, object_type, source="api", **kwargs)


@bp.get("/openapi.json")
@not_audited("the public API description: no account data")
def openapi():
    text = resources.files("channels").joinpath("openapi.json").read_text(encoding="utf-8")
    return Response(text, mimetype="application/json")


def _contacts(raw) -> tuple[Contact, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Malformed("contacts: expected an array", field="contacts")
    out = []
    for i, c in enumerate(raw):
        path = f"contacts[{i}]"
        if not isinstance(c, dict):
            raise Malformed(f"{path}: expected an object", field=path)
        out.append(Contact(
            external_id=str(require(c, "external_id", (str, int), path)),
            name=require(c, "name", str, path, required=False),
            role=require(c, "role", str, path, required=False) or "member",
            web_user_id=require(c, "web_user_id", str, path, required=False),
            email=require(c, "email", str, path, required=False),
            phone=require(c, "phone", str, path, required=False),
            whatsapp=require(c, "whatsapp", str, path, required=False),
        ))
    return tuple(out)


def whole_number(name: str, default: int) -> int:
    """A query parameter that must be a whole number when given (400 otherwise: an empty
    `per_page=` is not a number, as the document says)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise Malformed(f"{name}: expected a whole number, got {raw!r}", field=name)
    return int(raw)


def account_filter(args) -> AccountFilter:
    """The listing's filters from a query string (the API's and the console's)."""
    return AccountFilter(plan=args.get("plan"), vertical=args.get("vertical"),
                         state=args.get("state"), q=args.get("q"))


@bp.get("/accounts")
@api_audited("accounts.list", "accounts")
def list_accounts():
    """The accounts, paged and filtered (core.listing); read through the read replica when
    there is one (DATABASE_REPLICA_URL), so a change may show a few seconds late."""
    if request.args.get("state") == "":  # (the console drops an empty filter; a caller must not)
        raise DomainError("state: one of awaiting_confirmation, offered, open, none",
                          code="invalid_state", field="state")
    rt = runtime()
    page = listing.list_accounts(rt.replica_uow(), rt.catalog, account_filter(request.args),
                                 page=whole_number("page", 1),
                                 per_page=whole_number("per_page", listing.DEFAULT_PER_PAGE))
    note(results=len(page.items), total=page.total)
    return jsonify(account_page_json(page, rt.health_bounds))


@bp.get("/accounts/<external_id>/ledger")
@api_audited("ledger.read", "account", param="external_id")
def get_ledger(external_id: str):
    """Why the account was prompted, or not: everything that happened to it, in time order."""
    return jsonify(ledger_json(ledger.account_ledger(runtime().uow(read_only=True), external_id)))


@bp.put("/accounts/<external_id>")
@api_audited("account.write", "account", param="external_id")
def put_account(external_id: str):
    rt = runtime()
    data = body()
    now = rt.now()
    since = require(data, "plan_since", str, "", required=False)
    billing_day = require(data, "billing_day", int, "")
    account_input = services.AccountInput(
        external_id=external_id,
        name=require(data, "name", str, ""),
        plan=require(data, "plan", str, ""),
        vertical=require(data, "vertical", str, "", required=False) or "generic",
        timezone=require(data, "timezone", str, ""),
        billing_day=billing_day,
        contacts=_contacts(data.get("contacts")),
        plan_since=parse_time(since, "plan_since") if since is not None else None,
    )
    account, matrix, created = services.upsert_account(rt.uow(), rt.catalog, account_input, now,
                                                       rt.phone_region)
    return jsonify(account_json(account, matrix, rt.catalog, now, rt.health_bounds)), (201 if created else 200)


@bp.get("/accounts/<external_id>")
@api_audited("account.read", "account", param="external_id")
def get_account(external_id: str):
    rt = runtime()
    now = rt.now()
    account, matrix = services.get_account(rt.uow(read_only=True), external_id, now)
    return jsonify(account_json(account, matrix, rt.catalog, now, rt.health_bounds))


@bp.post("/usage")
@api_audited("usage.write", "usage_batch")
def post_usage():
    rt = runtime()
    data = body()
    raw = require(data, "events", list, "")
    if len(raw) > MAX_BATCH:
        raise DomainError(f"events: at most {MAX_BATCH} events per batch, got {len(raw)}",
                          code="batch_too_large", field="events")
    now = rt.now()
    events = parse_events(raw)
    note(events=len(raw), accounts=len({e.account for e in events if isinstance(e, UsageEvent)}))
    result = services.record_usage(rt.uow(), rt.catalog, events, now, rt.settings)
    return jsonify({"accepted": result.accepted, "duplicates": result.duplicates,
                    "signals": [signal_json(c, now, d) for c, d in result.crossings]})


@bp.post("/accounts/<external_id>/health")
@api_audited("health.write", "account", param="external_id")
def post_health(external_id: str):
    rt = runtime()
    data = body()
    escalations = require(data, "open_escalations", int, "", required=False) or 0
    now = rt.now()
    account, matrix = services.record_health(
        rt.uow(), external_id, parse_decimal(data.get("csat"), "csat", "invalid_health"),
        parse_decimal(data.get("sentiment"), "sentiment", "invalid_health"), escalations, now)
    return jsonify(account_json(account, matrix, rt.catalog, now, rt.health_bounds))


@bp.get("/accounts/<external_id>/case")
@api_audited("case.read", "account", param="external_id")
def get_case(external_id: str):
    rt = runtime()
    now = rt.now()
    account, case = services.get_case(rt.uow(read_only=True), rt.catalog, external_id, now)
    if case is None:
        return error(404, "no_case", f"no tier change applies to account {external_id!r} now")
    return jsonify(case_json(account, case, rt.catalog, now))


@bp.get("/accounts/<external_id>/plan-history")
@api_audited("plan_history.read", "account", param="external_id")
def get_plan_history(external_id: str):
    rt = runtime()
    entries = services.plan_history(rt.uow(read_only=True), external_id)
    return jsonify(plan_history_json(external_id, entries))


@bp.get("/accounts/<external_id>/signals")
@api_audited("signals.read", "account", param="external_id")
def get_signals(external_id: str):
    rt = runtime()
    signals = services.list_signals(rt.uow(read_only=True), external_id)
    return jsonify({"account": external_id,
                    "signals": [signal_json(c, d, decision) for c, d, decision in signals]})


@bp.get("/accounts/<external_id>/thread")
@api_audited("thread.read", "account", param="external_id")
def get_thread(external_id: str):
    detail = handlers.thread_detail(runtime().uow(read_only=True), external_id)
    return jsonify(thread_json(detail))


@bp.post("/conversations/<contact_external_id>/messages")
@api_audited("conversation.relay", "contact", param="contact_external_id",
             personal=True)
def post_message(contact_external_id: str):
    """A buyer's message relayed by an integrator. The replies come back in the response; they
    are stored relayed (the caller delivers them) unless "deliver" is true: then they are queued
    on the message's channel, and a channel of ours delivers them."""
    rt = runtime()
    data = body()
    channel = require(data, "channel", str, "")
    text = require(data, "text", str, "")
    if len(text) > MAX_TEXT:
        raise DomainError(f"text: at most {MAX_TEXT:,} characters (WhatsApp's limit)",
                          code="text_too_long", field="text")
    message_id = require(data, "id", (str, int), "", required=False)
    if message_id is not None:
        check_id(str(message_id), "id")
    deliver = require(data, "deliver", bool, "", required=False) or False
    answer = handlers.handle_inbound(rt.uow(), rt.catalog, rt.settings, handlers.Inbound(
        channel, text, str(message_id) if message_id is not None else None,
        contact=contact_external_id,
        replies=handlers.Replies.QUEUED if deliver else handlers.Replies.RELAYED), rt.now())
    return jsonify({"replies": list(answer.replies), "thread_id": answer.thread_id,
                    "state": answer.state, "duplicate": answer.duplicate})


@bp.post("/contacts/<contact_external_id>/erase")
@api_audited("contacts.erase", "contact", param="contact_external_id", personal=True)
def erase_contact(contact_external_id: str):
    """Erase a contact's personal data (core.erasure); again: 200, saying it was done already."""
    rt = runtime()
    result = erasure.erase_contact(rt.uow(), Spool.for_app(current_app), contact_external_id,
                                   rt.now())
    note(**erasure.counts(result))
    return jsonify(erasure_json(result))


def register_errors(app: Flask) -> None:
    """JSON errors for everything under /api/ (including unknown routes and crashes)."""

    @app.before_request
    def _no_nul():
        if request.path.startswith(("/api/", "/webchat/")):
            refuse_nul(request.path, *request.args.values(),
                       *(request.headers.get(h) for h in ("X-User-Id", "X-Account",
                                                          "X-User-Hash", "Idempotency-Key")))

    @app.errorhandler(Malformed)
    def _malformed(exc: Malformed):
        return error(400, exc.code, exc.message, field=exc.field, index=exc.index)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return error(404, exc.code, exc.message)

    @app.errorhandler(DomainError)
    def _invalid(exc: DomainError):
        return error(422, exc.code, exc.message, field=exc.field, index=exc.index)

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        log.warning("write conflict persisted after retries: %s", exc)
        return error(409, "conflict", "the request kept conflicting with concurrent writes; retry it")

    @app.errorhandler(StorageUnavailable)
    def _unavailable(exc: StorageUnavailable):
        # The database, or the read replica the console and the metrics read (a replica that is
        # down leaves every other route working), cannot be reached: say so, not a 500.
        log.warning("database unreachable: %s", exc)
        message = "the database cannot be reached; retry in a moment"
        if request.path.startswith(("/api/", "/webchat/")):
            response, status = error(503, "unavailable", message)
        else:
            response, status = Response(message, mimetype="text/plain"), 503
        response.headers["Retry-After"] = "5"
        return response, status

    @app.errorhandler(StorageBusy)
    def _busy(exc: StorageBusy):
        log.warning("database busy: %s", exc)
        response, status = error(503, "busy", "the database is busy; retry in a moment")
        response.headers["Retry-After"] = "1"
        return response, status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if not request.path.startswith(("/api/", "/webchat/")):
            return exc
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.code or 500, (exc.name or "error").lower().replace(" ", "_"))
        response, status = error(exc.code or 500, code, exc.description or exc.name)
        allow = dict(exc.get_headers()).get("Allow")
        if allow:  # a 405 must say which methods are allowed
            response.headers["Allow"] = allow
        return response, status

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        if isinstance(exc, HTTPException):
            return _http(exc)
        # The rule, not the path: a path may hold a contact's id (an email, for some operators).
        # The exception shows by type and code only (web/logs.py).
        log.exception("unhandled error on %s %s", request.method,
                      request.url_rule.rule if request.url_rule else "(no route)")
        if request.path.startswith(("/api/", "/webchat/")):
            return error(500, "internal_error", "internal error; the server log has the details")
        return Response("internal error", status=500)


def install(app: Flask, runtime: Any) -> Installed:
    app.register_blueprint(bp)
    register_errors(app)
    return Installed()


CHANNEL = Channel("api", (), install)  # its relays name a channel of another module


import channels.api_metrics  # noqa: E402,F401  (its routes are this blueprint's: /metrics)
