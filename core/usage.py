"""The usage matrix: counters over the trailing 30 days, gauges as their latest value.

`messages` and `feature:<name>` are counters (sum of quantities whose time falls in the window);
`seats` and `integrations` are gauges (the reading with the latest time wins, whatever order the
readings arrive in). The matrix also knows the highest `integrations` value in effect during the
window, which the down-tier rule needs ("could the lower plan have served the whole window?"):
the highest reading inside the window, or the one in effect when the window opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Mapping

WINDOW = timedelta(days=30)
GAUGES = ("seats", "integrations")
FUTURE_SKEW = timedelta(minutes=5)  # how far ahead of our clock an event's time may be
MAX_QUANTITY = 10**12  # far above any real count; keeps sums inside a 64-bit column


@dataclass(frozen=True)
class UsageEvent:
    """One usage report from the host product; `id` makes ingestion idempotent."""

    id: str
    account: str
    metric: str
    quantity: int
    at: datetime


@dataclass(frozen=True)
class UsageMatrix:
    """An account's usage as of one moment."""

    messages: int = 0
    seats: int = 0
    integrations: int = 0
    integrations_window_max: int = 0  # highest reading inside the window
    integrations_carried: int = 0  # the reading in effect when the window opened
    integrations_carried_at: datetime | None = None
    features: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    seats_at: datetime | None = None
    integrations_at: datetime | None = None

    @property
    def integrations_peak(self) -> int:
        """The highest number of integrations in effect at any time in the window."""
        return max(self.integrations_window_max, self.integrations_carried)

    def value(self, metric: str) -> int:
        """The value of one metric: messages, seats, integrations or feature:<name>."""
        if metric.startswith("feature:"):
            return self.features.get(metric[len("feature:"):], 0)
        value: int = getattr(self, metric)
        return value

    def _with(self, **changes: Any) -> UsageMatrix:
        """A copy with `changes`: `dataclasses.replace` without its per-call field checks, which
        cost more than the rest of `apply` (ingestion applies every event of a batch)."""
        new = object.__new__(UsageMatrix)
        new.__dict__.update(self.__dict__, **changes)
        return new

    def apply(self, event: UsageEvent, now: datetime) -> UsageMatrix:
        """The matrix after one more event, as of `now`.

        An out-of-order gauge reading older than the latest one changes nothing; a counter event
        older than the window is kept by storage but counts for nothing here.
        """
        # Accepted events are at most FUTURE_SKEW ahead of `now`; those count as in the window.
        in_window = event.at > now - WINDOW
        if event.metric in GAUGES:
            latest_at = getattr(self, f"{event.metric}_at")
            changes = {}
            if latest_at is None or event.at >= latest_at:
                changes = {event.metric: event.quantity, f"{event.metric}_at": event.at}
            if event.metric == "integrations":
                if in_window:
                    changes["integrations_window_max"] = max(self.integrations_window_max,
                                                             event.quantity)
                elif self.integrations_carried_at is None or event.at >= self.integrations_carried_at:
                    changes["integrations_carried"] = event.quantity
                    changes["integrations_carried_at"] = event.at
            return self._with(**changes) if changes else self
        if not in_window:
            return self
        if event.metric == "messages":
            return self._with(messages=self.messages + event.quantity)
        name = event.metric[len("feature:"):]
        features = dict(self.features)
        features[name] = features.get(name, 0) + event.quantity
        return self._with(features=MappingProxyType(features))
