"""The operator console (/console) and the index page (/): server-rendered pages for the
people who run the service, behind a sign-in.

- Operators (core.operators) sign in with an email and a password at /console/sign-in. The
  session is Flask's signed cookie `upgrade_chat_console`: HttpOnly, SameSite=Lax, Secure unless
  the service is a sandbox on plain-http loopback (`cookie_secure`). It holds the operator's id,
  a stamp of their password hash (a new password ends older sessions), the sign-in time (12
  hours at most) and the CSRF token. Its key is SECRET_KEY, or `instance/secret_key` made by the
  start step; without either the console answers 503 saying what to run.
- Every POST carries the session's CSRF token (`csrf_token` field): without it, a 400 that
  changes nothing; a cross-site Origin or Sec-Fetch-Site is refused too.
- Every page but the sign-in form needs a signed-in operator who is not disabled: HTML requests
  are redirected to the sign-in page, others get a 401, and neither gets any data.
- Roles: admin and csm; csm is read-only. The console has no action besides signing in and
  out yet; `admin_only` guards any that is added.
- The pages read through the read replica when there is one (DATABASE_REPLICA_URL,
  `Runtime.replica_uow`): they may be a few seconds behind the primary. The sign-in, the
  operator check on every request, the throttle and the audit stay on the primary.
- Reads are audited as the operator (`operator:<id>`), and so are sign-in successes and
  failures (the email as a pseudonym, never the password).
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, Response, abort, current_app, g, redirect, render_template,
                   request, session, url_for)
from flask.sessions import SecureCookieSessionInterface

from channels import Channel, Installed, console_figures
from channels.api import account_filter
from core import handlers, ledger, listing, metrics, operators, services
from core.audit import Outcome, pseudonym
from core.errors import DomainError, NotFound
from web.api_key import ApiKeyUnavailable
from web.audit import audited, not_audited, note, set_actor
from web.http import error, runtime
from web.passwords import WerkzeugHasher, dummy_hash
from web.serialize import account_summary_json, case_json, iso, ledger_json, usage_json

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")
index_bp = Blueprint("index", __name__, template_folder="templates")

COOKIE = "upgrade_chat_console"
MAX_SESSION = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
OPEN_ENDPOINTS = {"console.sign_in_form", "console.sign_in", "console.stylesheet"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def console_audited(action: str, object_type: str, **kwargs: Any):
    return audited(action, object_type, source="console", **kwargs)


# --- the session --------------------------------------------------------------------------------

class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, keyed by the runtime's session key, read when a request
    needs it (create_app reads no file). No key: no session (the console says 503)."""

    def get_signing_serializer(self, app: Flask):  # type: ignore[override]
        try:
            key = app.extensions["upgrade_chat"].session_key.read()
        except ApiKeyUnavailable:
            return None
        from itsdangerous import URLSafeTimedSerializer

        return URLSafeTimedSerializer(key, salt=self.salt, serializer=self.serializer,
                                      signer_kwargs={"key_derivation": self.key_derivation,
                                                     "digest_method": self.digest_method})


def cookie_secure(config: Any) -> bool:
    """Secure, unless this is a sandbox served over plain http on loopback (scripts/serve on
    127.0.0.1): a browser would never send a Secure cookie back there. CONSOLE_COOKIE_SECURE
    overrides it."""
    if config.get("CONSOLE_COOKIE_SECURE") is not None:
        return bool(config["CONSOLE_COOKIE_SECURE"])
    if not config.get("SANDBOX"):
        return True
    base = urlsplit(str(config.get("PUBLIC_BASE_URL") or "http://127.0.0.1"))
    return not (base.scheme == "http" and (base.hostname or "") in LOOPBACK_HOSTS)


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > 0


@bp.before_request
def _guard():
    try:
        runtime().session_key.read()
    except ApiKeyUnavailable as exc:
        log.error("console refused: %s", exc)
        return Response("The console has no session key yet: run `flask --app app init` (or "
                        "scripts/serve) on the server, or set UPGRADE_CHAT_SECRET_KEY.",
                        status=503, mimetype="text/plain")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        refused = _cross_site() or _csrf_refused()
        if refused is not None:
            return refused
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    operator = _signed_in()
    if operator is None:
        session.clear()
        if _wants_html():
            g.audit_outcome = Outcome.DENIED
            return redirect(url_for("console.sign_in_form", next=request.full_path.rstrip("?")))
        return error(401, "unauthorized", "sign in to the console first")
    g.operator = operator
    set_actor(f"operator:{operator.id}")
    return None


def _signed_in():
    operator_id, stamp, at = (session.get("operator"), session.get("stamp"),
                              session.get("signed_in_at"))
    if not isinstance(operator_id, int) or not isinstance(stamp, str) or not isinstance(at, str):
        return None
    try:
        since = datetime.fromisoformat(at)
    except ValueError:
        return None
    if runtime().now() - since > MAX_SESSION:
        return None
    return operators.current_operator(runtime().uow(read_only=True), operator_id, stamp)


def _cross_site() -> Response | None:
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if (site is not None and site not in ("same-origin", "none")) or \
            (origin is not None and origin != "null" and
             urlsplit(origin).netloc != request.host):
        return Response("Forbidden: cross-site request", status=403, mimetype="text/plain")
    return None


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _csrf_refused() -> Response | None:
    expected, given = session.get("csrf"), request.form.get(CSRF_FIELD, "")
    if isinstance(expected, str) and given and hmac.compare_digest(expected.encode(),
                                                                   given.encode()):
        return None
    return Response(render_template("console/refused.html", csrf_token=csrf_token),
                    status=400, mimetype="text/html")


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """For a console action that changes something: a csm (read-only) gets a 403."""
    @functools.wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        if g.operator.role != "admin":
            abort(403)
        return view(*args, **kwargs)
    return run


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self'; "
                                                   "frame-ancestors 'none'; form-action 'self'")
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"console/{template}", operator=g.get("operator"),
                           csrf_token=csrf_token, iso=iso, **context), status


# --- signing in and out -------------------------------------------------------------------------

@bp.get("/static/console.css")
@not_audited("the console's stylesheet: no account data")
def stylesheet():
    text = resources.files("channels").joinpath("static/console.css").read_text(encoding="utf-8")
    return Response(text, mimetype="text/css")


def _safe_next(target: str | None) -> str:
    """Only a path of the console itself (no other site, no scheme-relative URL)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return url_for("console.home")


@bp.get("/sign-in")
@not_audited("the sign-in form: no account data; the sign-in itself is audited")
def sign_in_form():
    return _page("sign_in.html", next=_safe_next(request.args.get("next")))


@bp.post("/sign-in")
@console_audited("console.sign_in", "operator")
def sign_in():
    rt = runtime()
    email, password = request.form.get("email", ""), request.form.get("password", "")
    note(object_id=pseudonym(email.strip().lower()) if email.strip() else "-")
    result = operators.sign_in(rt.uow(), WerkzeugHasher(), dummy_hash(), email=email,
                               password=password, address=request.remote_addr, now=rt.now())
    target = _safe_next(request.form.get("next"))
    if result.outcome == operators.SignIn.THROTTLED:
        assert result.retry_after is not None
        minutes = max(1, -(-int((result.retry_after - rt.now()).total_seconds()) // 60))
        page, status = _page("sign_in.html", 429, next=target, email=email,
                             message=f"Too many failed sign-ins. Try again in {minutes} "
                                     f"minute{'s' if minutes > 1 else ''}.")
        response = Response(page, status=status, mimetype="text/html")
        response.headers["Retry-After"] = str(minutes * 60)
        return response
    if result.outcome != operators.SignIn.OK or result.operator is None:
        log.info("console sign-in failed")
        return _page("sign_in.html", 401, next=target, email=email,
                     message="That email and password do not match an operator.")
    session.clear()  # a new session: nothing of the anonymous one is carried over
    session["operator"] = result.operator.id
    session["stamp"] = operators.session_stamp(result.operator)
    session["signed_in_at"] = rt.now().astimezone(timezone.utc).isoformat()
    session["csrf"] = secrets.token_urlsafe(32)
    note(actor=f"operator:{result.operator.id}", object_id=f"operator:{result.operator.id}")
    return redirect(target, code=303)


@bp.post("/sign-out")
@console_audited("console.sign_out", "operator")
def sign_out():
    note(object_id=f"operator:{g.operator.id}")
    session.clear()
    return redirect(url_for("console.sign_in_form"), code=303)


# --- pages --------------------------------------------------------------------------------------

@bp.get("")
@console_audited("console.home", "accounts")
def home():
    rt = runtime()
    counts = listing.account_counts(rt.replica_uow())
    window = _window(rt.now())
    try:
        figures = metrics.figures(rt.replica_uow(), rt.catalog, rt.settings.policy,
                                  window["start"], window["end"], rt.now(), by=window["by"],
                                  conversion_days=int(current_app.config.get(
                                      "METRICS_CONVERSION_DAYS") or metrics.CONVERSION_DAYS))
        shown, problem = console_figures.render(figures), None
    except DomainError as exc:
        shown, problem = None, exc.message
    states = rt.source_states()
    sources = [{"name": name, "every": _period(source.every), "state": states.get(name)}
               for name, source in sorted(rt.usage_sources.items())]
    return _page("home.html", counts=counts, states=listing.STATES, figures=shown,
                 problem=problem, window=window, breakdowns=metrics.BY, sources=sources)


def _period(every: timedelta) -> str:
    """A source's period as the sources file writes it: 30s, 5m, 1h, 1h 30m."""
    seconds = int(every.total_seconds())
    parts = [f"{n}{unit}" for n, unit in ((seconds // 3600, "h"), (seconds % 3600 // 60, "m"),
                                           (seconds % 60, "s")) if n]
    return " ".join(parts) or "0s"


def _window(now: datetime) -> dict[str, Any]:
    """The figures' window from the page's form: days as YYYY-MM-DD (UTC), the last 90 days up
    to today by default, and a breakdown."""
    today = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)

    def day(name: str, default: datetime) -> datetime:
        value = request.args.get(name, "")
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            return default
        return day if 1970 <= day.year <= 9000 else default  # the API's bounds

    end = day("to", today + timedelta(days=1))
    start = day("from", end - timedelta(days=90))
    by = request.args.get("by") or None
    return {"start": start, "end": end, "by": by if by in metrics.BY else None,
            "from_text": start.date().isoformat(), "to_text": end.date().isoformat()}


@bp.get("/accounts")
@console_audited("console.accounts", "accounts")
def accounts():
    rt = runtime()
    filters = account_filter(request.args)
    raw_page = request.args.get("page", "1")
    page_number = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and \
        len(raw_page) < 9 and int(raw_page) > 0 else 1
    try:
        page = listing.list_accounts(rt.replica_uow(), rt.catalog, filters,
                                     page=page_number)
        problem = None
    except DomainError as exc:
        page, problem = listing.AccountPage((), 0, 1, listing.DEFAULT_PER_PAGE), exc.message
    note(results=len(page.items), total=page.total)
    args = {k: v for k, v in request.args.items() if k in ("plan", "vertical", "state", "q") and v}
    return _page("accounts.html", 422 if problem else 200, page=page, problem=problem,
                 items=[account_summary_json(a, rt.health_bounds) for a in page.items],
                 args=args, plans=list(rt.catalog.plans), verticals=list(rt.catalog.verticals),
                 states=listing.STATES)


@bp.get("/accounts/<external_id>")
@console_audited("console.account", "account", param="external_id")
def account(external_id: str):
    rt = runtime()
    now = rt.now()
    try:
        found, case = services.get_case(rt.replica_uow(), rt.catalog, external_id, now)
    except NotFound:
        return _page("missing.html", 404, external_id=external_id)
    _, matrix = services.get_account(rt.replica_uow(), external_id, now)
    detail = handlers.thread_detail(rt.replica_uow(), external_id)
    book = ledger_json(ledger.account_ledger(rt.replica_uow(), external_id))
    return _page("account.html", account=found, red=found.health.is_red(rt.health_bounds),
                 usage=usage_json(matrix, now),
                 case=case_json(found, case, rt.catalog, now) if case is not None else None,
                 detail=detail, entries=book["entries"])


# --- the index ----------------------------------------------------------------------------------

@index_bp.get("/")
@not_audited("the index page: links only, no account data")
def index():
    sandbox = bool(current_app.config.get("SANDBOX"))
    return render_template("console/index.html", sandbox=sandbox,
                           sandbox_pages=[("/demo", "Web chat demo"),
                                          ("/sandbox/phone", "Sandbox phone"),
                                          ("/sandbox/csm", "CSM lane")]
                           if sandbox else [])


def install(app: Flask, rt: Any) -> Installed:
    app.session_interface = ConsoleSessions()
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=cookie_secure(app.config))
    app.register_blueprint(bp)
    app.register_blueprint(index_bp)
    return Installed()


CHANNEL = Channel("console", (), install)  # operators, not buyers: no medium
