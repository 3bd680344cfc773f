"""The lock order every writer keeps, written once.

Accounts first, in id order (ingestion locks many at once, in the same order), then the thread
(`ThreadRepository.thread_for_contact(lock=True)`), then the rest (the escalation, the
messages). Every use case that changes a conversation or an escalation starts here, so two
writers never wait on each other in opposite orders.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.ports import UnitOfWork


def lock_accounts(uow: UnitOfWork, account_ids: Iterable[int]) -> None:
    for account_id in sorted(set(account_ids)):
        uow.accounts.lock(account_id)


def lock_account(uow: UnitOfWork, account_id: int) -> None:
    lock_accounts(uow, (account_id,))


def lock_account_named(uow: UnitOfWork, external_id: str) -> None:
    """The account with this external id, if there is one (an operator's write of it)."""
    uow.accounts.lock_usage_terms((external_id,))
