"""Real-browser test support: Debian's Chromium driven by Playwright, and a Flask app served for real.

Playwright's own browser download does not work here, so tests drive the system Chromium
(`apt-get install chromium`, /usr/bin/chromium) through `executable_path`. Without a Chromium the
browser tests are skipped, unless UPGRADE_CHAT_REQUIRE_BROWSER=1 (scripts/test sets it), where
they fail instead, so that CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import pytest
from werkzeug.serving import make_server

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Headless, no sandbox (tests run as root), and nothing that phones home: this machine's closed
# network refuses Chromium's background connections. Playwright adds a new empty --user-data-dir
# of its own for each launch (it refuses one passed in `args`).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

REQUIRE_ENV = "UPGRADE_CHAT_REQUIRE_BROWSER"


class BrowserUnavailable(RuntimeError):
    """No Chromium (or no Playwright) to run the browser tests with."""


def find_chromium() -> str | None:
    """The path of a Chromium executable: Debian's first, then whatever is on PATH."""
    for path in CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    """Fail when the run requires the browser (CI), skip otherwise."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"a browser is required for this run ({REQUIRE_ENV}=1) but {reason}",
                    pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@contextmanager
def chromium(**launch: Any) -> Iterator[Any]:
    """A headless Chromium `playwright.sync_api.Browser`, closed on exit.

    Keyword arguments go to `BrowserType.launch` (for example `slow_mo=250`).
    """
    executable = find_chromium()
    if executable is None:
        _unavailable("no Chromium was found (looked for " + ", ".join(CANDIDATES)
                     + " and chromium on PATH); install it with "
                     "`apt-get install -y --no-install-recommends chromium`")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package is missing ({exc}); "
                     "install the test extra: pip install -e '.[test]'")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, headless=True,
                                         chromium_sandbox=False, args=list(FLAGS), **launch)
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {executable} did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serving(app: Callable | None = None, *,
            build: Callable[[str], Callable] | None = None) -> Iterator[str]:
    """Serve a WSGI app for real on 127.0.0.1 at a free port; yields the base URL
    ("http://127.0.0.1:<port>", no trailing slash) and shuts the server down on exit.

    Pass either the app, or `build`: a function given the base URL that returns the app, for an
    app that must know its own URL before it exists (the sandbox signs requests over
    PUBLIC_BASE_URL). The port is bound first, so there is no race for it.
    """
    if (app is None) == (build is None):
        raise TypeError("serving() takes an app or build=, not both or neither")
    server = make_server("127.0.0.1", 0, app or _not_ready, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        if build is not None:
            server.app = build(base_url)
    except BaseException:
        server.server_close()
        raise
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"serving-{server.server_port}", daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _not_ready(environ, start_response):  # pragma: no cover - replaced before serving starts
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready"]
