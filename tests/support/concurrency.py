"""Run one function in N threads released together, for the tests of races."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def at_once(n: int, prepare: Callable[[], object], act: Callable[[object], T]) -> list[T]:
    """`prepare()` in each of `n` threads (a test client, say), then all wait on one barrier and
    call `act(prepared)` together. The results in completion order; any thread's error fails the
    test, listing every error."""
    start = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            prepared = prepare()
            start.wait()
            results.append(act(prepared))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, "\n".join("".join(traceback.format_exception(e)) for e in errors)
    return results
