"""Ports: what the core needs from storage, as Protocols. Storage implements them in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Protocol

from core.accounts import Account, Health
from core.thresholds import Crossing
from core.usage import UsageEvent, UsageMatrix


class Conflict(Exception):
    """A write lost a race with another writer (a unique key taken meanwhile); safe to retry."""


class AccountRepository(Protocol):
    def get(self, external_id: str) -> Account | None: ...
    def get_many(self, external_ids: Iterable[str], *, for_update: bool = False) -> dict[str, Account]: ...
    def save(self, account: Account, now: datetime) -> Account: ...
    def contact_owner(self, contact_external_ids: Iterable[str]) -> dict[str, str]: ...
    def save_health(self, account_id: int, health: Health) -> None: ...


class UsageRepository(Protocol):
    def known_ids(self, event_ids: Iterable[str]) -> set[str]: ...
    def add_many(self, rows: list[tuple[int, UsageEvent]], received_at: datetime) -> None: ...
    def matrices(self, account_ids: Iterable[int], now: datetime) -> dict[int, UsageMatrix]: ...


class ThresholdStateRepository(Protocol):
    def get_many(self, account_ids: Iterable[int]) -> dict[int, frozenset[str]]: ...
    def replace(self, account_id: int, keys: frozenset[str], now: datetime) -> None: ...


class SignalRepository(Protocol):
    def add_many(self, account_id: int, crossings: list[Crossing], detected_at: datetime) -> None: ...
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
