"""Accounts, their contacts and health, and the rules a valid account follows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from core.errors import DomainError
from core.money import decimal_places

ROLES = ("billing", "admin", "member")
MAX_TEXT = 200  # the longest id or name stored (storage.models: String(200))
MAX_EMAIL = 320


@dataclass(frozen=True)
class Contact:
    """A person at the account; any of a phone, WhatsApp number or web user id reaches them."""

    external_id: str
    name: str | None = None
    role: str = "member"
    phone: str | None = None  # E.164
    whatsapp: str | None = None  # E.164
    web_user_id: str | None = None
    email: str | None = None
    erased_at: datetime | None = None  # erased (core.erasure): a pseudonym, no personal fields


# Erased contacts go by "erased:" and a digest of their old id (core.erasure.pseudonym); no
# contact given by the operator may, or a PUT could take an erased contact's place.
ERASED_PREFIX = "erased:"


@dataclass(frozen=True)
class HealthBounds:
    """Below (or above) these the account is red: no prompt, a CSM instead (§5.3)."""

    csat_below: Decimal = Decimal("3.0")
    sentiment_below: Decimal = Decimal("-0.3")
    escalations_above: int = 0


@dataclass(frozen=True)
class Health:
    """Health as the operator reports it: CSAT 1-5, ticket sentiment -1..1, open escalations."""

    csat: Decimal | None = None
    sentiment: Decimal | None = None
    open_escalations: int = 0
    updated_at: datetime | None = None

    def is_red(self, bounds: HealthBounds = HealthBounds()) -> bool:
        return ((self.csat is not None and self.csat < bounds.csat_below)
                or (self.sentiment is not None and self.sentiment < bounds.sentiment_below)
                or self.open_escalations > bounds.escalations_above)


@dataclass(frozen=True)
class Account:
    external_id: str
    name: str
    plan: str
    vertical: str
    timezone: str
    billing_day: int
    plan_since: datetime
    contacts: tuple[Contact, ...] = ()
    health: Health = field(default_factory=Health)
    id: int | None = None


@dataclass(frozen=True)
class StoredAccount(Account):
    """An account as storage returns it: with its id (an `Account` has none until saved)."""

    id: int = 0


def normalize_phone(raw: str, region: str, field_name: str) -> str:
    """A phone number in E.164 ("+14155550100"); `region` reads numbers written without "+"."""
    text = raw.strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:"):]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise DomainError(f"{field_name}: {raw!r} is not a valid phone number",
                          code="invalid_phone", field=field_name)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_text(value: str | None, field_name: str, limit: int = MAX_TEXT,
               index: int | None = None) -> str | None:
    """`value` unchanged, or a 422 `too_long` naming the field when it is longer than `limit`."""
    if value is not None and len(value) > limit:
        raise DomainError(f"{field_name}: at most {limit} characters, got {len(value)}",
                          code="too_long", field=field_name, index=index)
    return value


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise DomainError(f"unknown time zone {name!r}; expected an IANA name such as "
                          f"'America/New_York'", code="unknown_timezone", field="timezone") from None
    return name


def check_billing_day(day: int) -> int:
    if not 1 <= day <= 28:
        raise DomainError(f"billing_day must be 1-28 (the day of month the period starts), "
                          f"got {day}", code="invalid_billing_day", field="billing_day")
    return day


def checked_contacts(contacts: tuple[Contact, ...], region: str) -> tuple[Contact, ...]:
    """The contacts with phones in E.164, or a 422 naming the first bad field."""
    seen: set[str] = set()
    out = []
    for i, c in enumerate(contacts):
        path = f"contacts[{i}]"
        if c.role not in ROLES:
            raise DomainError(f"{path}.role must be one of {', '.join(ROLES)}, got {c.role!r}",
                              code="invalid_role", field=f"{path}.role")
        if c.external_id.startswith(ERASED_PREFIX):
            raise DomainError(f"{path}.external_id: ids starting with {ERASED_PREFIX!r} name "
                              f"erased contacts; choose another id", code="reserved_contact_id",
                              field=f"{path}.external_id")
        if c.external_id in seen:
            raise DomainError(f"{path}.external_id {c.external_id!r} appears twice",
                              code="duplicate_contact", field=f"{path}.external_id")
        seen.add(c.external_id)
        for name in ("external_id", "name", "web_user_id"):
            check_text(getattr(c, name), f"{path}.{name}")
        check_text(c.email, f"{path}.email", MAX_EMAIL)
        phone, whatsapp = (normalize_phone(number, region, f"{path}.{key}") if number else None
                           for key, number in (("phone", c.phone), ("whatsapp", c.whatsapp)))
        out.append(replace(c, phone=phone, whatsapp=whatsapp))
    return tuple(out)


HEALTH_PLACES = 4  # decimals kept for csat and sentiment; more would be rounded by storage


MAX_OPEN_ESCALATIONS = 1_000_000  # far above any real count; keeps it inside a database integer


def check_health(csat: Decimal | None, sentiment: Decimal | None, open_escalations: int) -> None:
    for name, value in (("csat", csat), ("sentiment", sentiment)):
        if value is not None and decimal_places(value) > HEALTH_PLACES:
            # Refuse rather than round: 2.99995 rounded would turn a red account green.
            raise DomainError(f"{name} has more than {HEALTH_PLACES} decimals: {value}",
                              code="invalid_health", field=name)
    if csat is not None and not Decimal(1) <= csat <= Decimal(5):
        raise DomainError(f"csat must be between 1 and 5, got {csat}", code="invalid_health",
                          field="csat")
    if sentiment is not None and not Decimal(-1) <= sentiment <= Decimal(1):
        raise DomainError(f"sentiment must be between -1 and 1, got {sentiment}",
                          code="invalid_health", field="sentiment")
    if not 0 <= open_escalations <= MAX_OPEN_ESCALATIONS:
        raise DomainError(f"open_escalations must be between 0 and {MAX_OPEN_ESCALATIONS:,}, "
                          f"got {open_escalations}", code="invalid_health",
                          field="open_escalations")
