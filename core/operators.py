"""Operators of the console: creating them, their passwords, disabling them, and signing in.

Passwords are hashed by the `PasswordHasher` the edge hands in (web.passwords); the core never
sees a hash function nor stores what was typed. A sign-in that fails says only that: the email
or the password was wrong, never which. Failures are counted per key (the email's digest and the
peer address): past FAILURES_BEFORE_LOCK within WINDOW a key is refused for LOCK (doubling up to
MAX_LOCK while failures go on), whatever the password, so guessing is slow from one address and
against one operator from many. A success clears the email's count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.errors import DomainError, NotFound
from core.ports import OperatorView, PasswordHasher, Throttle, UnitOfWork

ROLES = ("admin", "csm")  # csm: reads everything, changes nothing
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_EMAIL = 320
MAX_NAME = 200
FAILURES_BEFORE_LOCK = 5
WINDOW = timedelta(minutes=15)
LOCK = timedelta(minutes=1)
MAX_LOCK = timedelta(minutes=15)
# A hash checked when no operator has the email, so an unknown email costs the same time as a
# wrong password (the hasher's own format; made once by the edge).
DUMMY_PASSWORD = "not-a-password-of-anyone"


class SignIn(StrEnum):
    OK = "ok"
    FAILED = "failed"  # wrong email or password, or a disabled operator: the same answer
    THROTTLED = "throttled"


@dataclass(frozen=True)
class SignInResult:
    outcome: SignIn
    operator: OperatorView | None = None
    retry_after: datetime | None = None  # THROTTLED: not before this


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if not value or "@" not in value or len(value) > MAX_EMAIL or any(c.isspace() for c in value):
        raise DomainError(f"email: expected an email address, got {email!r}",
                          code="invalid_email", field="email")
    return value


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise DomainError(f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters",
                          code="weak_password", field="password")
    return password


def email_key(email: str) -> str:
    """The throttle's key of an email: a digest, so the table holds no address typed by anyone."""
    return "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def address_key(address: str | None) -> str:
    return "addr:" + (address or "unknown")[:64]


def create_operator(uow: UnitOfWork, hasher: PasswordHasher, *, email: str, name: str,
                    role: str, password: str, now: datetime) -> OperatorView:
    address = normalize_email(email)
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise DomainError(f"name: 1 to {MAX_NAME} characters", code="invalid_name", field="name")
    if role not in ROLES:
        raise DomainError(f"role: expected one of {', '.join(ROLES)}, got {role!r}",
                          code="invalid_role", field="role")
    hashed = hasher.hash(check_password(password))
    with uow:
        if uow.operators.by_email(address) is not None:
            raise DomainError(f"an operator with email {address} exists already",
                              code="operator_exists", field="email")
        operator = uow.operators.add(email=address, name=name, password_hash=hashed, role=role,
                                     now=now)
        uow.commit()
    return operator


def create_first_operator(uow: UnitOfWork, hasher: PasswordHasher, *, email: str, name: str,
                          password: str, now: datetime) -> OperatorView | None:
    """The start step's admin, made only when there is no operator at all (else None)."""
    with uow:
        if uow.operators.count():
            return None
    return create_operator(uow, hasher, email=email, name=name, role="admin",
                           password=password, now=now)


def list_operators(uow: UnitOfWork) -> list[OperatorView]:
    with uow:
        return uow.operators.all()


def _existing(uow: UnitOfWork, email: str) -> OperatorView:
    operator = uow.operators.by_email(normalize_email(email))
    if operator is None:
        raise NotFound(f"no operator with email {email.strip().lower()}",
                       code="operator_not_found")
    return operator


def reset_password(uow: UnitOfWork, hasher: PasswordHasher, email: str,
                   password: str) -> OperatorView:
    """A new password; the operator's sessions end (they carry a stamp of the old hash) and
    the email's failed sign-ins are forgotten."""
    hashed = hasher.hash(check_password(password))
    with uow:
        operator = _existing(uow, email)
        uow.operators.set_password(operator.id, hashed)
        uow.operators.save_throttle(email_key(operator.email), None)
        uow.commit()
    return operator


def set_disabled(uow: UnitOfWork, email: str, disabled: bool = True) -> OperatorView:
    """A disabled operator cannot sign in, and is signed out on their next request."""
    with uow:
        operator = _existing(uow, email)
        uow.operators.set_disabled(operator.id, disabled)
        uow.commit()
    return operator


def session_stamp(operator: OperatorView) -> str:
    """What a session carries besides the operator's id: a new password ends older sessions."""
    return hashlib.sha256(operator.password_hash.encode()).hexdigest()[:16]


def current_operator(uow: UnitOfWork, operator_id: int, stamp: str) -> OperatorView | None:
    """The signed-in operator of a session, or None: gone, disabled, or the password changed."""
    with uow:
        operator = uow.operators.get(operator_id)
    if operator is None or operator.disabled or session_stamp(operator) != stamp:
        return None
    return operator


def _locked(throttle: Throttle | None, now: datetime) -> datetime | None:
    if throttle is not None and throttle.locked_until is not None and throttle.locked_until > now:
        return throttle.locked_until
    return None


def _failed(throttle: Throttle | None, now: datetime) -> Throttle:
    if throttle is None or now - throttle.window_start > WINDOW:
        throttle = Throttle(0, now, None)
    failures = throttle.failures + 1
    locked = None
    if failures >= FAILURES_BEFORE_LOCK:
        lock = min(LOCK * (2 ** (failures - FAILURES_BEFORE_LOCK)), MAX_LOCK)
        locked = now + lock
    return Throttle(failures, throttle.window_start, locked)


def sign_in(uow: UnitOfWork, hasher: PasswordHasher, dummy_hash: str, *, email: str,
            password: str, address: str | None, now: datetime) -> SignInResult:
    """Check an email and password. Throttled keys are refused before the password is looked
    at; an unknown email or a disabled operator costs a hash check like a wrong password."""
    keys = (email_key(email), address_key(address))
    with uow:
        until = [t for t in (_locked(uow.operators.throttle(k), now) for k in keys) if t]
        if until:
            return SignInResult(SignIn.THROTTLED, retry_after=max(until))
        operator = uow.operators.by_email(email.strip().lower())
        good = hasher.verify(operator.password_hash if operator else dummy_hash, password) \
            if len(password) <= MAX_PASSWORD else False
        if operator is None or operator.disabled or not good:
            for k in keys:
                uow.operators.save_throttle(k, _failed(uow.operators.throttle(k), now))
            uow.commit()
            return SignInResult(SignIn.FAILED)
        uow.operators.save_throttle(keys[0], None)
        uow.operators.signed_in(operator.id, now)
        uow.commit()
    return SignInResult(SignIn.OK, operator=operator)
