"""Opening the local-only pages (/sandbox/phone, /sandbox/csm, /demo) as their user does: with
the link scripts/serve prints (app.sandbox_links), which signs the browser in with a cookie and
redirects to the page (devtools/local.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from app import sandbox_links


def printed_link(app, path: str = "/sandbox/phone", base: str = "") -> str:
    """The link scripts/serve prints for `path` (relative when `base` is "")."""
    for _, url in sandbox_links(app, base):
        if urlsplit(url).path == path:
            return url
    raise AssertionError(f"scripts/serve prints no link for {path}")


def signed_in(app, client: Any = None, **kw: Any):
    """A Flask test client (the one given, or a new one) whose cookie jar holds the local
    pages' cookie, got by opening the printed link; `kw` (e.g. headers={"Host": ...}) goes to
    that request, as a browser would send it."""
    client = client if client is not None else app.test_client()
    r = client.get(printed_link(app), **kw)
    assert r.status_code == 303, (r.status_code, r.get_data(as_text=True))
    return client
