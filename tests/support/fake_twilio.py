"""A real local HTTP server standing in for Twilio's Messages and Calls APIs in tests.

It implements `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` as far as twilio's `Client`
needs: HTTP Basic auth with the account SID, the form body parsed, every request recorded, and
answers from a script — a created message resource (201, the default), a Twilio error JSON with
its HTTP status (and a Retry-After header if the error has one), a plain 5xx, or HANG (no answer
until well past the client's timeout) — or from a `responder` function (an outage that lasts a
while). Each recorded request keeps when it arrived and what it was answered.

Calls have their own record and script, so a test of calls does not disturb the messages' (an
app sends both to one fake): `POST .../Calls.json` (`client.calls.create`) is recorded in
`calls` (To, From, Url, Method, StatusCallback, every StatusCallbackEvent, MachineDetection,
AsyncAmd, AsyncAmdStatusCallback, the whole form) and answered from `answer_calls`' script as
messages are (201 by default: a call resource with a new `CA...` sid, kept on the record); and
`POST .../Calls/{CallSid}.json` (`client.calls(sid).update`: a live call redirected) is recorded
in `call_updates` (Url, Method, Twiml) and answered 200 with the call resource.

`FakeTwilioHttpClient` is twilio's own HTTP client with every request's scheme and host rewritten
to the fake's (https://api.twilio.com -> http://127.0.0.1:<port>) and a short timeout (the
service's client with TWILIO_API_URL set: an app configured with it talks to the fake too), so

    client = twilio.rest.Client(fake.account_sid, fake.auth_token,
                                http_client=FakeTwilioHttpClient(fake.base_url, timeout=0.5))

goes through the real library, requests and a socket to the fake.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from channels.twilio_outbound import TwilioApiHttpClient

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "token"
HANG = "hang"
HANG_SECONDS = 3.0  # far past any test client's timeout; the server's stop ends it early


@dataclass(frozen=True)
class TwilioError:
    """A scripted Twilio error: its code, HTTP status and message, and a Retry-After header
    (seconds) when `retry_after` is set."""

    code: int
    status: int = 400
    message: str = "error"
    retry_after: int | None = None


def twilio_error(code: int, status: int = 400, message: str | None = None, *,
                 retry_after: int | None = None) -> TwilioError:
    return TwilioError(code, status, message or f"Twilio error {code}", retry_after)


@dataclass(frozen=True)
class SentRequest:
    """One request to the Messages resource, as the fake received it."""

    account_sid: str
    to: str | None
    from_: str | None
    body: str | None
    content_sid: str | None
    content_variables: str | None
    status_callback: str | None
    form: dict[str, str]
    authorized: bool
    at: float = 0.0  # time.time() when it arrived
    answer: int | TwilioError | str | None = None  # what the fake answered (set by take)


Answer = int | TwilioError | str


@dataclass(frozen=True)
class CallRequest:
    """One request to create a call (the Calls resource), as the fake received it; `sid` is the
    call's id when the fake created it (answered 201), else None."""

    account_sid: str
    to: str | None
    from_: str | None
    url: str | None
    method: str | None
    status_callback: str | None
    status_callback_events: tuple[str, ...]
    machine_detection: str | None
    async_amd: str | None
    async_amd_status_callback: str | None
    form: dict[str, str]
    authorized: bool
    sid: str | None = None
    at: float = 0.0
    answer: int | TwilioError | str | None = None


@dataclass(frozen=True)
class CallUpdate:
    """One request to update a live call (`client.calls(sid).update(url=...)`)."""

    account_sid: str
    call_sid: str
    url: str | None
    method: str | None
    twiml: str | None
    form: dict[str, str]
    authorized: bool
    at: float = 0.0


class FakeTwilio:
    """Records every Messages request and answers from a script, then from `responder` if one
    is set (called with each request, under the fake's lock), else 201 Created."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.base_url = ""
        self.requests: list[SentRequest] = []
        self.stopping = threading.Event()
        self.responder: Callable[[SentRequest], Answer] | None = None
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        self.calls: list[CallRequest] = []
        self.call_updates: list[CallUpdate] = []
        self._call_script: list[Answer] = []

    def answer(self, *responses: Answer) -> None:
        """Queue answers for the next requests: an HTTP status (201 creates, others are a
        Twilio-shaped error of that status), a TwilioError, or HANG."""
        with self._lock:
            self._script.extend(responses)

    def take(self, request: SentRequest) -> Answer:
        with self._lock:
            if self._script:
                answer = self._script.pop(0)
            elif self.responder is not None:
                answer = self.responder(request)
            else:
                answer = 201
            self.requests.append(replace(request, at=time.time(), answer=answer))
            return answer

    def log(self) -> list[SentRequest]:
        """Every request so far, each with when it arrived and what it was answered."""
        with self._lock:
            return list(self.requests)

    def bodies(self) -> Counter:
        """How many requests carried each body (template sends count under their variables)."""
        with self._lock:
            return Counter(r.body if r.body is not None else r.content_variables
                           for r in self.requests)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def answer_calls(self, *responses: Answer) -> None:
        """Queue answers for the next call creates, as `answer` does for messages."""
        with self._lock:
            self._call_script.extend(responses)

    def take_call(self, request: CallRequest) -> CallRequest:
        """Record a call create with its answer (and the new call's sid when it is created)."""
        with self._lock:
            answer = self._call_script.pop(0) if self._call_script else 201
            created = answer in (201, HANG) and request.authorized
            recorded = replace(request, at=time.time(), answer=answer,
                               sid="CA" + uuid.uuid4().hex if created else None)
            self.calls.append(recorded)
            return recorded

    def take_update(self, request: CallUpdate) -> None:
        with self._lock:
            self.call_updates.append(replace(request, at=time.time()))

    def placed(self) -> list[CallRequest]:
        """The calls the fake created (answered 201), in order."""
        with self._lock:
            return [c for c in self.calls if c.sid is not None]

    def updates(self) -> list[CallUpdate]:
        with self._lock:
            return list(self.call_updates)

    def client(self, timeout: float = 0.5):
        """A real twilio Client talking to this fake."""
        from twilio.rest import Client

        return Client(self.account_sid, self.auth_token,
                      http_client=FakeTwilioHttpClient(self.base_url, timeout=timeout))


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _message_resource(account_sid: str, form: dict[str, str]) -> dict:
    """A Message resource as Twilio answers a create: what MessageInstance reads."""
    sid = "SM" + uuid.uuid4().hex
    now = _rfc2822(datetime.now(timezone.utc))
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"},
        "to": form.get("To"),
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def _call_resource(account_sid: str, sid: str, form: dict[str, str]) -> dict:
    """A Call resource as Twilio answers a create or an update: what CallInstance reads."""
    now = _rfc2822(datetime.now(timezone.utc))
    return {
        "account_sid": account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": "2010-04-01",
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": form.get("From"),
        "from_formatted": form.get("From"),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            "notifications": f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}/Notifications.json",
            "recordings": f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}/Recordings.json"},
        "to": form.get("To"),
        "to_formatted": form.get("To"),
        "trunk_sid": None,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
    }


def _error_body(code: int, status: int, message: str) -> dict:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API does
    # Headers and body leave in separate writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms a request on Linux).
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        fake: FakeTwilio = self.server.fake
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        if len(data) < length:  # the client died mid-request: no server acts on half a request
            self.close_connection = True
            return
        raw = data.decode("utf-8")
        parts = urlsplit(self.path).path.split("/")  # '', 2010-04-01, Accounts, sid, Messages.json
        if len(parts) not in (5, 6) or parts[1:3] != ["2010-04-01", "Accounts"]:
            return self._not_found()
        account_sid = parts[3]
        fields = parse_qs(raw, keep_blank_values=True)
        form = {k: v[0] for k, v in fields.items()}
        authorized = self._authorized(fake, account_sid)
        if len(parts) == 5 and parts[4] == "Calls.json":
            return self._create_call(fake, account_sid, form, fields, authorized)
        if len(parts) == 6 and parts[4] == "Calls" and parts[5].endswith(".json"):
            return self._update_call(fake, account_sid, parts[5][:-len(".json")], form,
                                     authorized)
        if len(parts) != 5 or parts[4] != "Messages.json":
            return self._not_found()
        response = fake.take(SentRequest(
            account_sid=account_sid, to=form.get("To"), from_=form.get("From"),
            body=form.get("Body"), content_sid=form.get("ContentSid"),
            content_variables=form.get("ContentVariables"),
            status_callback=form.get("StatusCallback"), form=form, authorized=authorized))
        if not authorized:
            return self._reply(401, _error_body(20003, 401, "Authenticate"))
        self._answer(response, lambda: _message_resource(account_sid, form))

    def _not_found(self) -> None:
        self._reply(404, _error_body(20404, 404, "The requested resource was not found"))

    def _create_call(self, fake: FakeTwilio, account_sid: str, form: dict[str, str],
                     fields: dict[str, list[str]], authorized: bool) -> None:
        call = fake.take_call(CallRequest(
            account_sid=account_sid, to=form.get("To"), from_=form.get("From"),
            url=form.get("Url"), method=form.get("Method"),
            status_callback=form.get("StatusCallback"),
            status_callback_events=tuple(fields.get("StatusCallbackEvent", ())),
            machine_detection=form.get("MachineDetection"), async_amd=form.get("AsyncAmd"),
            async_amd_status_callback=form.get("AsyncAmdStatusCallback"), form=form,
            authorized=authorized))
        if not authorized:
            return self._reply(401, _error_body(20003, 401, "Authenticate"))
        self._answer(call.answer, lambda: _call_resource(account_sid, call.sid, form))

    def _update_call(self, fake: FakeTwilio, account_sid: str, call_sid: str,
                     form: dict[str, str], authorized: bool) -> None:
        fake.take_update(CallUpdate(account_sid=account_sid, call_sid=call_sid,
                                    url=form.get("Url"), method=form.get("Method"),
                                    twiml=form.get("Twiml"), form=form, authorized=authorized))
        if not authorized:
            return self._reply(401, _error_body(20003, 401, "Authenticate"))
        self._reply(200, _call_resource(account_sid, call_sid, form))

    def _answer(self, response: Answer, created: Callable[[], dict]) -> None:
        """Answer a create from its script: 201 with `created()`, a Twilio error, a plain
        status, or HANG (then 201, long after the client stopped waiting)."""
        if response == HANG:
            self.server.fake.stopping.wait(HANG_SECONDS)
            response = 201  # Twilio did create it; the client stopped waiting long ago
        if isinstance(response, TwilioError):
            headers = {} if response.retry_after is None else {
                "Retry-After": str(response.retry_after)}
            return self._reply(response.status,
                               _error_body(response.code, response.status, response.message),
                               headers)
        if response == 201:
            return self._reply(201, created())
        self._reply(response, _error_body(20500 if response >= 500 else response, response,
                                           f"HTTP {response}"))

    def _authorized(self, fake: FakeTwilio, account_sid: str) -> bool:
        expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
        return (account_sid == fake.account_sid
                and self.headers.get("Authorization", "") == f"Basic {expected}")

    def _reply(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (the hang case)

    def log_message(self, *args) -> None:
        pass


class FakeTwilioHttpClient(TwilioApiHttpClient):
    """twilio's HTTP client, sending every request to `base_url` instead of Twilio's hosts (the
    service's own client with TWILIO_API_URL set)."""

    def __init__(self, base_url: str, timeout: float = 0.5, **kwargs) -> None:
        super().__init__(timeout=timeout, base_url=base_url, **kwargs)


@contextmanager
def serving(account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> Iterator[FakeTwilio]:
    """Run a fake Twilio on 127.0.0.1 for the block; usable as a pytest fixture's body."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = FakeTwilio(account_sid, auth_token)
    server.fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.fake.stopping.set()  # ends any hang at once
        server.shutdown()
        server.server_close()
        thread.join()
