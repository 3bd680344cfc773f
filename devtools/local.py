"""The guard of the pages that have no login and answer only on this machine (/sandbox/phone,
/sandbox/csm, /demo): they show every buyer's messages or sign in as a demo user.

"This machine" is decided on three things, because each alone can be fooled:
- the peer address is loopback (not a header: X-Forwarded-For is never believed);
- no proxy headers at all: behind a reverse proxy on the same host every request comes from
  127.0.0.1, so a request that went through one is refused whatever it says;
- the Host is a loopback name (127.0.0.1, localhost, [::1], any port): a page on another site
  cannot reach these pages through DNS rebinding.
A request that changes something (POST) must also come from one of these pages: a browser's
`Sec-Fetch-Site` other than same-origin/none, or an `Origin` that is not loopback, is refused
(cross-site request forgery from any page the operator has open). And no other site may frame
them (`no_framing`): a framed page's own clicks would pass as same-origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Request

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})  # the last: a dual-stack bind
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP",
                 "Forwarded")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_name(host: str) -> str:
    """The host part of a Host header or URL netloc, without port or IPv6 brackets."""
    try:
        return (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:  # an unparsable Host
        return ""


def refusal(request: Request) -> tuple[str, int] | None:
    """None when `request` may be served by a local-only page; else the (body, status) to send:
    404 for anything not from this machine (the page does not exist for it), 403 for a
    cross-site write from this machine."""
    if request.remote_addr not in LOOPBACK:
        return "Not Found", 404
    if any(h in request.headers for h in PROXY_HEADERS):
        return "Not Found", 404
    if _host_name(request.host) not in LOOPBACK_HOSTS:
        return "Not Found", 404
    if request.method not in SAFE_METHODS:
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return "Forbidden: cross-site request", 403
        origin = request.headers.get("Origin")
        if origin is not None and _host_name(urlsplit(origin).netloc) not in LOOPBACK_HOSTS:
            return "Forbidden: cross-site request", 403
    return None


def no_framing(response):
    """after_request for the local pages: no other page may put them in a frame (clickjacking)."""
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response
