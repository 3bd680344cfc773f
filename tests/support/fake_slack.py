"""A real local HTTP server standing in for Slack's Web API in tests.

It implements `chat.postMessage`, `chat.update`, `auth.test` and `users.info` as far as slack_sdk's
`WebClient(base_url=fake.base_url)` needs: the bearer token checked, JSON or form bodies parsed,
every call recorded, and answers from a script per method — the default success, a Slack error
(`{"ok": false, "error": ...}` with its HTTP status, e.g. 429 "ratelimited"), or a plain 500.

    with serving() as slack:
        slack.fail("chat.postMessage", status=500)          # the next post gets a 500
        slack.fail("chat.postMessage", "ratelimited", 429)  # then a rate limit
        ...
        [post] = slack.calls_to("chat.postMessage")
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_TOKEN = "xoxb-test-token"
TEAM_ID, BOT_USER_ID = "T0TEST", "U0BOT"


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake received it."""

    method: str
    args: dict[str, Any]
    token: str | None


@dataclass(frozen=True)
class Scripted:
    status: int
    body: dict[str, Any] | None  # None: a plain-text 500 page


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.users: dict[str, dict[str, Any]] = {}
        self._script: dict[str, deque[Scripted]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._ts = 0
        self.base_url = ""

    # -- scripting --------------------------------------------------------------------------------

    def fail(self, method: str, error: str | None = None, status: int = 200) -> None:
        """The next call to `method` fails: with `{"ok": false, "error": error}`, or, without an
        error, with a plain HTTP `status` (500 when left at 200)."""
        with self._lock:
            if error is None:
                self._script[method].append(Scripted(status if status != 200 else 500, None))
            else:
                self._script[method].append(Scripted(status, {"ok": False, "error": error}))

    def add_user(self, user_id: str, first_name: str, real_name: str | None = None) -> None:
        self.users[user_id] = {"id": user_id, "name": first_name.lower(), "profile": {
            "first_name": first_name, "real_name": real_name or first_name,
            "display_name": first_name}}

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # -- answering --------------------------------------------------------------------------------

    def answer(self, method: str, args: dict[str, Any], token: str | None) -> Scripted:
        with self._lock:
            self.calls.append(Call(method, args, token))
            if self._script[method]:
                return self._script[method].popleft()
            if token != BOT_TOKEN:
                return Scripted(200, {"ok": False, "error": "invalid_auth"})
            if method == "auth.test":
                return Scripted(200, {"ok": True, "url": "https://test.slack.com/", "team": "Test",
                                      "user": "upgrade-chat", "team_id": TEAM_ID,
                                      "user_id": BOT_USER_ID, "bot_id": "B0BOT"})
            if method == "chat.postMessage":
                self._ts += 1
                ts = f"1700000000.{self._ts:06d}"
                return Scripted(200, {"ok": True, "channel": args.get("channel"), "ts": ts,
                                      "message": {"text": args.get("text"), "ts": ts}})
            if method == "chat.update":
                return Scripted(200, {"ok": True, "channel": args.get("channel"),
                                      "ts": args.get("ts"), "text": args.get("text")})
            if method == "users.info":
                user = self.users.get(str(args.get("user")))
                if user is None:
                    return Scripted(200, {"ok": False, "error": "user_not_found"})
                return Scripted(200, {"ok": True, "user": user})
            return Scripted(200, {"ok": False, "error": "unknown_method"})


def _handler(fake: FakeSlack):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet test output
            pass

        def _handle(self) -> None:
            path, _, query = self.path.partition("?")
            method = path.rsplit("/", 1)[-1]
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            args: dict[str, Any] = {}
            if raw and "json" in ctype:
                args = json.loads(raw)
            elif raw or query:
                form = parse_qs(raw.decode() if raw else query)
                args = {k: v[-1] for k, v in form.items()}
                for key in ("blocks", "attachments"):  # form posts carry these as JSON text
                    if isinstance(args.get(key), str):
                        args[key] = json.loads(args[key])
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
            scripted = fake.answer(method, args, token)
            if scripted.body is None:
                body, ctype_out = b"<html>500 Internal Server Error</html>", "text/html"
            else:
                body, ctype_out = json.dumps(scripted.body).encode(), "application/json"
            self.send_response(scripted.status)
            self.send_header("Content-Type", ctype_out)
            self.send_header("Content-Length", str(len(body)))
            if scripted.status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(body)

        do_POST = _handle
        do_GET = _handle

    return Handler


@contextmanager
def serving() -> Iterator[FakeSlack]:
    """A fake Slack on 127.0.0.1 and a free port; `fake.base_url` ends with /api/."""
    fake = FakeSlack()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
