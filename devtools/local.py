"""The guard of the pages that have no login and answer only on this machine (/sandbox/phone,
/sandbox/csm, /demo): they show every buyer's messages or sign in as a demo user.

What decides "this machine" is a secret only this machine has: the instance's local token
(`LOCAL_TOKEN` in `<instance folder>/sandbox_secrets`, mode 0600, the same for every process:
web/sandbox_secrets.py), like Jupyter's. scripts/serve and `flask --app app init` print each
page's link with `?token=…`; opening it sets an HttpOnly, SameSite=Strict cookie holding the
token and redirects (303) to the same URL without it, so the token does not stay in the address
bar. Without that cookie a page answers 404, as to anyone else; a wrong token is a 404 that sets
nothing. Someone reaching the pages must have seen the terminal that started the service or be
able to read its instance folder.

The token is what closes the hole; headers cannot. A reverse proxy on this host
(`proxy_pass http://127.0.0.1:5000;` with `proxy_set_header Host 127.0.0.1;`, or nginx's
default Host, and no X-Forwarded-*) makes a remote visitor's request look exactly like a local
one: peer 127.0.0.1, a loopback Host, no proxy header. The older checks stay, as defence in
depth, each refused with the same 404 before the token is looked at:
- the peer address is loopback (not a header: X-Forwarded-For is never believed);
- no proxy headers at all: a request that says it went through a proxy is refused;
- the Host is a loopback name (127.0.0.1, localhost, [::1], any port): a page on another site
  cannot reach these pages through DNS rebinding (its requests would carry its own Host).
A request that changes something (POST) must also come from one of these pages: a browser's
`Sec-Fetch-Site` other than same-origin/none, or an `Origin` that is not loopback, is refused
(cross-site request forgery from any page the operator has open; SameSite=Strict already keeps
the cookie off such a request). And no other site may frame them (`no_framing`): a framed page's
own clicks would pass as same-origin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import urlencode, urlsplit

from flask import Request, Response, redirect

from web.http import secret

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})  # the last: a dual-stack bind
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP",
                 "Forwarded")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_PARAM = "token"
COOKIE_PREFIX = "upgrade_chat_local_"


def sign_in_link(path: str, token: str) -> str:
    """The link that opens `path` on this machine with `token` (what scripts/serve prints)."""
    return f"{path}?{urlencode({TOKEN_PARAM: token})}"


def cookie_name(token: str) -> str:
    """The cookie of the instance whose token is `token`. Cookies ignore ports, so two services
    on one machine (two checkouts on ports 5000 and 5001) each get a name of their own, from a
    digest of their token, instead of overwriting each other's."""
    return COOKIE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:12]


def _host_name(host: str) -> str:
    """The host part of a Host header or URL netloc, without port or IPv6 brackets."""
    try:
        return (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:  # an unparsable Host
        return ""


def _not_found() -> Response:
    return Response("Not Found", status=404, mimetype="text/plain")


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def guard(request: Request) -> Response | None:
    """None when `request` may be served by a local-only page; else the response to send: 404
    for anything not from this machine or without the local token's cookie (the page does not
    exist for it), 403 for a cross-site write from this machine, and for the sign-in link (the
    right `?token=` on a GET) a 303 to the same URL without the token that sets the cookie."""
    if request.remote_addr not in LOOPBACK:
        return _not_found()
    if any(h in request.headers for h in PROXY_HEADERS):
        return _not_found()
    if _host_name(request.host) not in LOOPBACK_HOSTS:
        return _not_found()
    token = secret("LOCAL_TOKEN")
    if not token:  # the sandbox's secrets cannot be had (logged): nothing opens the pages
        return _not_found()
    if TOKEN_PARAM in request.args:
        if request.method not in SAFE_METHODS or not _same(request.args[TOKEN_PARAM], token):
            return _not_found()
        return _signed_in(request, token)
    if not _same(request.cookies.get(cookie_name(token)), token):
        log.info("local page %s refused: this browser is not signed in; open the link "
                 "scripts/serve printed (`flask --app app init` prints it again)", request.path)
        return _not_found()
    if request.method not in SAFE_METHODS:
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return Response("Forbidden: cross-site request", status=403, mimetype="text/plain")
        origin = request.headers.get("Origin")
        if origin is not None and _host_name(urlsplit(origin).netloc) not in LOOPBACK_HOSTS:
            return Response("Forbidden: cross-site request", status=403, mimetype="text/plain")
    return None


def _signed_in(request: Request, token: str) -> Response:
    """The sign-in link's answer: the cookie, and a redirect to the clean URL (the same path
    and query without the token), so the token leaves the address bar and the history."""
    rest = [(k, v) for k, v in request.args.items(multi=True) if k != TOKEN_PARAM]
    response = redirect(request.path + (f"?{urlencode(rest)}" if rest else ""), code=303)
    # A session cookie: it ends with the browser; the printed link signs in again.
    response.set_cookie(cookie_name(token), token, httponly=True, samesite="Strict", path="/")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return no_framing(response)


def no_framing(response):
    """after_request for the local pages: no other page may put them in a frame (clickjacking)."""
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response
