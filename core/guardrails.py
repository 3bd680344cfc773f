"""Guardrails checked before any business-initiated prompt (§5): may we open a conversation now?

The rules run in the order the product fixes, and the first one that fails decides:

1. opted out      -> suppressed  (consent outranks everything, on every channel)
2. control cohort -> suppressed  (a salted hash of the account; logged as "would have prompted")
3. health red     -> suppressed  (the caller opens a CSM escalation instead)
4. cooldown       -> suppressed  (a decline silences the account for `policy.cooldown`)
5. cap            -> suppressed  (at most `prompts_per_quarter` per contact per calendar quarter)
6. quiet hours    -> deferred    (phone channels only; the prompt waits, it is not dropped)

The order matters for what gets recorded: a control account with red health is reported as
`control`, so the experiment's arms are measured on the same population, and quiet hours come
last because they are the only rule that delays rather than refuses.

Boundaries, chosen once and used everywhere:
- Cooldown: suppressed while `now - last_decline_at < cooldown`; at exactly 30 days the account
  may be prompted again (the 30 days are over).
- Cap: suppressed when `prompts_this_quarter >= prompts_per_quarter`. The quarter is the calendar
  quarter in the account's time zone (`quarter_start`), counted from its local midnight.
- Quiet hours: the window is start-inclusive, end-exclusive: 09:00:00 is allowed, 20:00:00 is not.
  A window whose start is after its end runs across midnight (e.g. 22:00-06:00).
- Recipient zones come from the phone number (phonenumbers); a number that maps to several zones
  is messaged only when the window holds in all of them at once. A number with no zone, an
  unparsable number or no number falls back to the account's time zone. When the number's zones
  have no common window at all (a US toll-free number spans Guam to Newfoundland), `decide` falls
  back to the account's time zone rather than never reaching the contact or crashing; the
  caller sees the same `deferred`/`prompted` outcome.

Everything here is pure: `now` is passed in (an aware datetime), and results are aware UTC.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers.timezone import time_zones_for_number

from core.errors import DomainError

UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers for a number it cannot place
SEARCH_DAYS = 7  # next_allowed looks this far ahead for a common window, then gives up
_SAMPLE_STEP = timedelta(minutes=30)  # tzdata never changes a zone's offset twice this close
_SECOND = timedelta(seconds=1)


class Outcome(enum.StrEnum):
    PROMPTED = "prompted"
    DEFERRED = "deferred"
    SUPPRESSED = "suppressed"


class Reason(enum.StrEnum):
    OPTED_OUT = "opted_out"
    CONTROL = "control"
    HEALTH = "health"
    COOLDOWN = "cooldown"
    CAP = "cap"
    QUIET_HOURS = "quiet_hours"


class NoCommonWindow(ValueError):
    """The recipient's zones are never inside the window at the same time (within the horizon)."""


@dataclass(frozen=True)
class GuardrailPolicy:
    """The operator's settings for §5; the defaults are the product's."""

    control_share: Decimal = Decimal("0.10")  # share of accounts in the control cohort, 0..1
    control_salt: str = "upgrade-chat-control"
    cooldown: timedelta = timedelta(days=30)
    prompts_per_quarter: int = 1
    window_start: time = time(9, 0)  # phone channels only between these, recipient-local
    window_end: time = time(20, 0)  # end exclusive

    def __post_init__(self) -> None:
        if not Decimal(0) <= Decimal(self.control_share) <= Decimal(1):
            raise DomainError(f"control_share must be between 0 and 1, got {self.control_share}",
                              code="invalid_policy", field="control_share")
        if self.cooldown < timedelta(0):
            raise DomainError(f"cooldown must not be negative, got {self.cooldown}",
                              code="invalid_policy", field="cooldown")
        if self.prompts_per_quarter < 0:
            raise DomainError(f"prompts_per_quarter must be >= 0, got {self.prompts_per_quarter}",
                              code="invalid_policy", field="prompts_per_quarter")
        for name in ("window_start", "window_end"):
            if getattr(self, name).tzinfo is not None:
                raise DomainError(f"{name} is a recipient-local wall time; give it no tzinfo",
                                  code="invalid_policy", field=name)
        if self.window_start == self.window_end:
            raise DomainError("window_start and window_end are equal: the window would be empty",
                              code="invalid_policy", field="window_end")


@dataclass(frozen=True)
class PromptContext:
    """What the guardrails need to know about one prospective prompt to one contact."""

    account: str  # the account's external id (control hashing)
    account_timezone: str  # IANA name
    opted_out: bool  # the contact revoked consent (any channel)
    health_red: bool
    last_decline_at: datetime | None  # the account's latest decline
    prompts_this_quarter: int  # upgrade prompts already sent to this contact this calendar quarter
    phone_channel: bool  # True for SMS/WhatsApp/voice (quiet hours apply), False for web chat
    phone: str | None = None  # E.164 number of the recipient, for its time zones


@dataclass(frozen=True)
class Decision:
    """The outcome recorded on the signal, with its reason code (None only when prompted)."""

    outcome: Outcome
    reason: Reason | None
    defer_until: datetime | None = None  # set when deferred: the next allowed moment (aware, UTC)

    def __post_init__(self) -> None:
        if (self.reason is None) != (self.outcome is Outcome.PROMPTED):
            raise ValueError(f"{self.outcome} needs a reason exactly when it is not prompted")
        if (self.defer_until is None) == (self.outcome is Outcome.DEFERRED):
            raise ValueError("defer_until is set exactly when the prompt is deferred")


def in_control(account: str, share: Decimal, salt: str) -> bool:
    """Whether the account is in the control cohort: stable across runs, machines and versions.

    sha256(salt + ":" + account); its first 8 bytes, big-endian, read as a fraction of 2**64,
    fall below `share`. Compared exactly (no float), so share 0 takes nobody and 1 everybody.
    """
    if not Decimal(0) <= Decimal(share) <= Decimal(1):
        raise ValueError(f"share must be between 0 and 1, got {share}")
    digest = hashlib.sha256(f"{salt}:{account}".encode()).digest()
    return Fraction(int.from_bytes(digest[:8], "big"), 2**64) < Fraction(Decimal(share))


def recipient_zones(phone: str | None, fallback_timezone: str) -> tuple[str, ...]:
    """The IANA zones of the number per phonenumbers, or `(fallback_timezone,)`.

    The fallback applies when there is no number, it does not parse as E.164 (a "whatsapp:"
    prefix is accepted), or phonenumbers cannot place it ("Etc/Unknown").
    """
    if phone:
        text = phone.strip()
        if text.lower().startswith("whatsapp:"):
            text = text[len("whatsapp:"):]
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None:
            zones = tuple(z for z in time_zones_for_number(number) if z != UNKNOWN_ZONE)
            if zones:
                return zones
    return (fallback_timezone,)


def quarter_start(now: datetime, timezone: str) -> datetime:
    """The start of the calendar quarter containing `now` in `timezone`, as an aware UTC datetime.

    Quarters begin Jan 1, Apr 1, Jul 1 and Oct 1 at local midnight; where a zone skips that
    midnight (a DST jump at 00:00), the quarter begins when the local clock resumes.
    """
    zone = ZoneInfo(timezone)
    local = _as_utc(now, "now").astimezone(zone)
    first_month = 3 * ((local.month - 1) // 3) + 1
    return _first_instant(zone, datetime(local.year, first_month, 1))


def next_allowed(now: datetime, zones: tuple[str, ...], start: time, end: time) -> datetime:
    """`now` (in UTC) if the wall clock in every zone is within [start, end), else the earliest
    later instant when it is within the window in all zones at once.

    Exact to the second, without scanning minutes: whether an instant is allowed can only change
    when some zone's wall clock reaches `start` or `end`, or the zone changes its offset (DST).
    The first allowed instant after a disallowed `now` is one where some zone enters its window,
    so it is either the instant a zone's clock shows `start` (both occurrences on a repeated
    hour) or a zone's offset change (a clock jumping over `start`, or back into the window).
    Those candidates are checked in time order. Raises NoCommonWindow (a ValueError) when none
    within SEARCH_DAYS days is allowed, e.g. zones twelve hours apart with an 11-hour window.
    """
    now = _as_utc(now, "now")
    if not zones:
        raise ValueError("zones must name at least one time zone")
    start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    tzs = tuple(ZoneInfo(z) for z in dict.fromkeys(zones))
    if _allowed(now, tzs, start, end):
        return now
    limit = now + timedelta(days=SEARCH_DAYS)
    candidates: set[datetime] = set()
    for tz in tzs:
        first_day = now.astimezone(tz).date() - timedelta(days=1)
        for k in range(SEARCH_DAYS + 3):
            wall = datetime.combine(first_day + timedelta(days=k), start, tzinfo=tz)
            candidates.update(wall.replace(fold=f).astimezone(UTC) for f in (0, 1))
        candidates.update(_offset_changes(tz, now.replace(microsecond=0), limit))
    for instant in sorted(c for c in candidates if now < c <= limit):
        if _allowed(instant, tzs, start, end):
            return instant
    raise NoCommonWindow(f"no moment within {SEARCH_DAYS} days is between {start:%H:%M} and "
                         f"{end:%H:%M} in all of {', '.join(zones)}")


def decide(ctx: PromptContext, policy: GuardrailPolicy, now: datetime) -> Decision:
    """The guardrails' decision for one prompt at `now`; the first failing rule wins (§5 order).

    opted out, control, health red, cooldown and cap suppress; quiet hours on a phone channel
    defer to `next_allowed`; otherwise the prompt goes out. Web chat has no quiet hours.
    """
    now = _as_utc(now, "now")
    if ctx.opted_out:
        return Decision(Outcome.SUPPRESSED, Reason.OPTED_OUT)
    if in_control(ctx.account, policy.control_share, policy.control_salt):
        return Decision(Outcome.SUPPRESSED, Reason.CONTROL)
    if ctx.health_red:
        return Decision(Outcome.SUPPRESSED, Reason.HEALTH)
    if ctx.last_decline_at is not None and \
            now - _as_utc(ctx.last_decline_at, "last_decline_at") < policy.cooldown:
        return Decision(Outcome.SUPPRESSED, Reason.COOLDOWN)
    if ctx.prompts_this_quarter >= policy.prompts_per_quarter:
        return Decision(Outcome.SUPPRESSED, Reason.CAP)
    if ctx.phone_channel:
        allowed_at = text_allowed_at(now, ctx.phone, ctx.account_timezone, policy)
        if allowed_at > now:
            return Decision(Outcome.DEFERRED, Reason.QUIET_HOURS, allowed_at)
    return Decision(Outcome.PROMPTED, None)


def text_allowed_at(now: datetime, phone: str | None, account_timezone: str,
                    policy: GuardrailPolicy) -> datetime:
    """The first moment from `now` a prompt may reach `phone`: inside the window in every zone
    of the number, or, for a number whose zones are never awake together (toll-free, some
    country-wide mobile ranges), in the account's own zone, the best estimate left."""
    try:
        return next_allowed(now, recipient_zones(phone, account_timezone), policy.window_start,
                            policy.window_end)
    except NoCommonWindow:
        return next_allowed(now, (account_timezone,), policy.window_start, policy.window_end)


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _in_window(wall: time, start: time, end: time) -> bool:
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end  # a window across midnight


def _allowed(instant: datetime, tzs: tuple[ZoneInfo, ...], start: time, end: time) -> bool:
    return all(_in_window(instant.astimezone(tz).time(), start, end) for tz in tzs)


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta | None:
    return instant.astimezone(tz).utcoffset()


def _first_change(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in (before, after] with a different offset than at `before`.

    Both ends are whole seconds apart; the offset at `after` differs from that at `before`.
    """
    old = _offset(before, tz)
    while after - before > _SECOND:
        mid = before + timedelta(seconds=(after - before) // _SECOND // 2)
        if _offset(mid, tz) == old:
            before = mid
        else:
            after = mid
    return after


def _offset_changes(tz: ZoneInfo, begin: datetime, stop: datetime) -> list[datetime]:
    """The instants in (begin, stop] at which the zone's UTC offset changes (DST and the like)."""
    changes = []
    lo, lo_offset = begin, _offset(begin, tz)
    while lo < stop:
        hi = min(lo + _SAMPLE_STEP, stop)
        hi_offset = _offset(hi, tz)
        if hi_offset != lo_offset:
            changes.append(_first_change(tz, lo, hi))
        lo, lo_offset = hi, hi_offset
    return changes


def _first_instant(tz: ZoneInfo, wall: datetime) -> datetime:
    """The earliest instant (UTC) at which the zone's wall clock shows `wall` or, if the clock
    skips `wall` (a DST gap), the instant it jumps past it."""
    earlier = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if earlier.astimezone(tz).replace(tzinfo=None) == wall:
        return earlier  # fold=0 is the first of a repeated wall time
    # In a gap the two folds map to instants on either side of the jump.
    a, b = sorted(wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    return _first_change(tz, a, b)

