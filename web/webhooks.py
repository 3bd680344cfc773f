"""Signed outgoing webhooks (the billing adapter's plan changes), sent from the outbox.

Each request is a POST of the job's payload as compact JSON with sorted keys, and these headers:

    Content-Type: application/json
    Idempotency-Key: <the outbox job's key: the same on every retry of one job>
    X-Upgrade-Chat-Timestamp: <unix seconds when this attempt was signed>
    X-Upgrade-Chat-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    User-Agent: upgrade-chat

Delivery is at least once: the same job can arrive more than once, so apply it once per
idempotency key. Use the body's `idempotency_key` field, which the signature covers; the
Idempotency-Key header carries the same value for convenience but is not signed (a replay of a
captured request under another header value must not apply twice). Answer 2xx when done (or already done). 408, 429 and 5xx (and timeouts) are
retried with backoff; any other answer fails the job for good. Redirects are not followed.

Verifying a request on the receiving side (operators), e.g. in Flask:

    from datetime import datetime, timezone
    from web.webhooks import verify_signature   # or copy it: it is 15 lines of stdlib

    @app.post("/upgrade-chat/plan-changes")
    def plan_change():
        if not verify_signature(SECRET, request.headers.get("X-Upgrade-Chat-Timestamp", ""),
                                request.get_data(),  # the raw bytes, before any JSON parsing
                                request.headers.get("X-Upgrade-Chat-Signature", ""),
                                now=datetime.now(timezone.utc)):
            abort(403)
        change = request.get_json()
        key = change["idempotency_key"]  # signed, unlike the Idempotency-Key header
        ...  # apply `change` unless `key` was applied already; then return 204
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from core.jobs import OutboxJob, PermanentFailure, RetryLater

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429})  # and every 5xx
MAX_BODY_IN_ERROR = 200


class WebhookError(RetryLater):
    """A delivery that may succeed later (a timeout, a refused connection, a 503): retried. Its
    words (a status, a reason) are the job's last_error."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Upgrade-Chat-Signature value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                      hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *,
                     now: datetime, tolerance: timedelta = timedelta(minutes=5)) -> bool:
    """True if `signature` is ours for this raw `body` and `timestamp`, signed within
    `tolerance` of `now` (either way, for clock skew). Fails closed on anything malformed."""
    if not secret or not isinstance(signature, str) or not isinstance(body, bytes):
        return False
    try:
        signed_at = datetime.fromtimestamp(int(timestamp), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return False
    if abs(now - signed_at) > tolerance:
        return False  # a replay of an old request, or a badly wrong clock
    expected = sign(secret, str(int(timestamp)), body)
    return hmac.compare_digest(expected.encode("ascii"),
                               signature.encode("utf-8", errors="replace"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body, and count its 200 as a
    # delivery. A moved endpoint is a configuration error; let the 3xx surface as one.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class SignedWebhookSender:
    """An outbox sender: POSTs a job's payload to the operator's URL, HMAC-signed.

    Standard library only. Raises `PermanentFailure` for answers a retry cannot change (4xx
    other than 408 and 429, 3xx) and `WebhookError` for the rest, which the outbox retries.
    """

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0,
                 clock: Callable[[], datetime]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the webhook URL must be an absolute http(s) URL")
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        if timeout <= 0:
            raise ValueError("the webhook timeout must be positive")
        self.url = url
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:  # never the secret
        return f"SignedWebhookSender({self.url!r})"

    def __call__(self, job: OutboxJob) -> None:
        body = json.dumps(job.payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(self._clock().timestamp()))
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "Idempotency-Key": job.key,
            "X-Upgrade-Chat-Timestamp": timestamp,
            "X-Upgrade-Chat-Signature": sign(self._secret, timestamp, body),
            "User-Agent": "upgrade-chat",
        })
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read(MAX_BODY_IN_ERROR)  # let the server finish; the answer is unused
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _excerpt(exc)
            message = f"webhook answered HTTP {exc.code}" + (f": {detail}" if detail else "")
            if exc.code in RETRYABLE_STATUSES or 500 <= exc.code <= 599:
                raise WebhookError(message) from None
            raise PermanentFailure(message) from None
        except urllib.error.URLError as exc:  # refused, unresolvable, timed out while connecting
            raise WebhookError(f"webhook unreachable: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # a timeout or reset mid-answer
            raise WebhookError(f"webhook failed: {type(exc).__name__}: {exc}") from None


def _excerpt(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(MAX_BODY_IN_ERROR * 4)  # UTF-8 takes at most 4 bytes a character
    except Exception:
        return ""
    return raw.decode("utf-8", errors="replace")[:MAX_BODY_IN_ERROR].strip()
