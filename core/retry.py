"""Retrying a unit of work that lost a race with another writer."""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from core.ports import Conflict, ConnectionLost

log = logging.getLogger(__name__)

RETRIES = 3  # attempts for a write that lost a race (Conflict) before giving up
T = TypeVar("T")


def retrying(fn: Callable[[], T]) -> T:
    """Run `fn` (which opens and commits its own unit of work) again when it raises Conflict,
    or ConnectionLost (a pooled connection found broken: the next attempt gets a new one; a
    database that is down fails to connect, StorageUnavailable, and is not retried)."""
    for attempt in range(1, RETRIES + 1):
        try:
            return fn()
        except (Conflict, ConnectionLost) as exc:
            if attempt == RETRIES:
                raise
            log.info("%s, retrying (attempt %d of %d)", "connection lost"
                     if isinstance(exc, ConnectionLost) else "write conflict", attempt + 1, RETRIES)
    raise AssertionError("unreachable")
