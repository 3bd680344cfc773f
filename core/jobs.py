"""The outbox's jobs as their senders and handlers see them, and how a sender says what happened.

Plain data, exceptions and arithmetic, so that senders (channels: the webhook, Slack, Twilio) and
the core's handlers can use them without importing storage, which keeps the table and the one
dispatcher that claims, sends and records jobs (storage.outbox).

A sender returns normally on success. It raises:
- `PermanentFailure` for what retrying cannot fix (a rejected request): the job fails at once;
  `RecipientOptedOut`, a kind of it, when the provider has the recipient unsubscribed;
- `AccountRefused` when the provider refused our account rather than this job (credentials):
  the job, and the batch's other jobs of its kind, are held without counting the attempt;
- `ProviderBusy` when the provider asked us to wait (HTTP 429 or 503, with or without a
  Retry-After): held the same way, until the wait is over, and no job of the kind is tried
  before then;
- `RetryLater`, or any other exception, for a failure that may pass: tried again after the
  backoff (`Backoff`), failed once the job has had `max_attempts` sends.
The text of our own exceptions (`JobError`) is recorded as it is, so it must carry no personal
data (no phone number, no message body); any other exception is recorded as "Type: text".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

MAX_ERROR_CHARS = 500
_MAX_DOUBLINGS = 30  # keeps base_delay * 2**n inside timedelta's range whatever max_attempts is

# What became of a job: its status when it ends (sent, failed, cancelled), or what happened to
# this attempt while it stays pending (retry, held).
SENT, FAILED, CANCELLED = "sent", "failed", "cancelled"
RETRY, HELD = "retry", "held"


@dataclass(frozen=True)
class OutboxJob:
    """One job as a sender sees it. `attempts` counts sends started, this one included."""

    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int


class JobError(Exception):
    """An error a sender raises on purpose; its text is the job's `last_error` as it is."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the provider's error code, when there is one


class PermanentFailure(JobError):
    """Raised by a sender for an error that retrying cannot fix (a rejected request)."""


class RecipientOptedOut(PermanentFailure):
    """The provider has the recipient unsubscribed (a carrier STOP we never saw): the job fails,
    and the contact is opted out on every channel (core.delivery.carrier_opt_out)."""


class RetryLater(JobError):
    """A failure that may pass (a timeout, a 5xx): tried again after the backoff."""


class AccountRefused(JobError):
    """The provider refused our account, not this job (a wrong or rotated token): nothing is
    failed; the job and the batch's other jobs of its kind are given back untried."""


class ProviderBusy(JobError):
    """The provider asked us to wait (HTTP 429 Too Many Requests, 503 Service Unavailable): its
    state or our account's rate, not this job. Nothing is failed and the attempt is not
    counted, so an outage of any length loses nothing: the job and the batch's other jobs of its
    kind are given back until `retry_after` has passed (the kind's first backoff delay when the
    provider named no wait; at most its longest), and the dispatcher tries no job of the kind
    before then."""

    def __init__(self, message: str, code: int | None = None, *,
                 retry_after: timedelta | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after

    def wait(self, policy: Backoff) -> timedelta:
        """How long the kind waits: the provider's Retry-After within the policy's bounds."""
        if self.retry_after is None or self.retry_after <= timedelta(0):
            return policy.base_delay
        return min(self.retry_after, policy.max_delay)


def describe(error: BaseException) -> str:
    """The `last_error` text of a failed attempt: our own errors' words (codes, never a number
    or a body); of anything else its type only, since its text may quote the values it failed on
    (and `last_error` outlives an erasure)."""
    text = str(error) if isinstance(error, JobError) else \
        f"{type(error).__module__}.{type(error).__qualname__} (details withheld)"
    return text[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class Backoff:
    """How a kind of job is retried: the n-th failed send waits base_delay * 2**(n - 1), at most
    max_delay; the job fails once `max_attempts` sends have been started."""

    max_attempts: int = 8
    base_delay: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("delays must be positive, max_delay >= base_delay")

    def delay(self, attempts: int) -> timedelta:
        """How long to wait after the `attempts`-th send failed."""
        doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
        later: timedelta = self.base_delay * 2 ** doublings
        return min(self.max_delay, later)


@dataclass(frozen=True)
class Settle:
    """A handler's word at claim time that a job must not be sent: it ends with `status`
    (FAILED or CANCELLED) and `reason` as its last error, without an attempt."""

    status: str
    reason: str


@dataclass(frozen=True)
class Later:
    """A handler's word at claim time that a job must not go out yet: it stays pending, due at
    `at`, without an attempt, with `reason` as its last error (a text to a phone that came due in
    the recipient's quiet hours waits for the morning)."""

    at: datetime
    reason: str


@dataclass(frozen=True)
class JobResult:
    """What became of one claimed job, as its handler's `record` is told.

    `attempts` is the job's count of sends started as recorded now (a held attempt is not
    counted). `current` is false for a late failure: the claim's lease ran out and another
    dispatcher took the job, so only facts that hold whoever sends (the carrier has the
    recipient unsubscribed) may still be recorded. A success is always recorded (it went out),
    so it is always current.
    """

    status: str  # SENT, RETRY, FAILED, CANCELLED or HELD
    attempts: int
    error: str | None = None
    cause: BaseException | None = None
    result: Any = None  # what the sender returned (a provider's message id)
    current: bool = True


Sender = Callable[[OutboxJob], Any]


class JobHandler(Protocol):
    """A kind of job whose subject lives in other tables (core.delivery.MessageJobs): what the
    dispatcher asks of it besides the send. A plain `Sender` needs none of this.

    - `prepare`, inside the claim's transaction: for each claimed job, what `send` needs, or a
      `Settle` when it must not go out (re-checked then, not only when it was queued).
    - `send`, outside any transaction: the network I/O; raises as a sender does.
    - `record`, inside the transaction that records the outcome (and, for a job settled or given
      up at claim, inside the claim's): the outcome on the job's subject.
    """

    def prepare(self, uow: Any, jobs: list[OutboxJob], now: datetime) -> dict[int, Any]: ...

    def send(self, job: OutboxJob, prepared: Any) -> Any: ...

    def record(self, uow: Any, job: OutboxJob, prepared: Any, outcome: JobResult,
               now: datetime) -> None: ...
