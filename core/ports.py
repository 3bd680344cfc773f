"""Ports: what the core needs from storage, as Protocols. Storage implements them in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, NamedTuple, Protocol

from core.accounts import Account, Health
from core.thresholds import Crossing
from core.usage import UsageEvent, UsageMatrix


class Conflict(Exception):
    """A write lost a race with another writer (a unique key taken meanwhile); safe to retry."""


class StorageBusy(Exception):
    """The database stayed locked by another writer for longer than we wait; try again later."""


class UsageTerms(NamedTuple):
    """What ingesting usage needs to know of an account."""

    id: int
    plan: str
    plan_since: datetime


class AccountRepository(Protocol):
    def get(self, external_id: str) -> Account | None: ...
    def lock_usage_terms(self, external_ids: Iterable[str]) -> dict[str, UsageTerms]: ...
    def save(self, account: Account, now: datetime) -> Account: ...
    def contact_owner(self, contact_external_ids: Iterable[str]) -> dict[str, str]: ...
    def save_health(self, account_id: int, health: Health) -> None: ...


class UsageRepository(Protocol):
    def add_new(self, rows: list[tuple[int, UsageEvent]], received_at: datetime) -> set[str]: ...
    def matrices(self, account_ids: Iterable[int], now: datetime) -> dict[int, UsageMatrix]: ...


class ThresholdStateRepository(Protocol):
    def get_many(self, account_ids: Iterable[int]) -> dict[int, frozenset[str]]: ...
    def replace_many(self, states: dict[int, frozenset[str]], now: datetime) -> None: ...


class SignalRepository(Protocol):
    def add_many(self, crossings: list[tuple[int, Crossing]], detected_at: datetime) -> None: ...
    def for_account(self, account_id: int) -> list[tuple[Crossing, datetime]]: ...


class UnitOfWork(Protocol):
    """One transaction: rolls back on leaving unless `commit()` was called."""

    accounts: AccountRepository
    usage: UsageRepository
    thresholds: ThresholdStateRepository
    signals: SignalRepository

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(self, *exc: object) -> None: ...
    def commit(self) -> None: ...
