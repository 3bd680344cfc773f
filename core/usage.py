"""The usage matrix: counters over the trailing 30 days, gauges as their latest value.

`messages` and `feature:<name>` are counters (sum of quantities whose time falls in the window);
`seats` and `integrations` are gauges (the reading with the latest time wins, whatever order the
readings arrive in). The matrix also keeps the highest `integrations` value in effect during the
window, which the down-tier rule needs ("could the lower plan have served the whole window?").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Mapping

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
    integrations_peak: int = 0
    features: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    seats_at: datetime | None = None
    integrations_at: datetime | None = None

    def value(self, metric: str) -> int:
        """The value of one metric: messages, seats, integrations or feature:<name>."""
        if metric.startswith("feature:"):
            return self.features.get(metric[len("feature:"):], 0)
        return getattr(self, metric)

    def apply(self, event: UsageEvent, now: datetime) -> UsageMatrix:
        """The matrix after one more event, as of `now`.

        An out-of-order gauge reading older than the latest one changes nothing; a counter event
        older than the window is kept by storage but counts for nothing here.
        """
        window_start = now - WINDOW
        in_window = window_start < event.at <= now
        if event.metric in GAUGES:
            latest_at = getattr(self, f"{event.metric}_at")
            is_latest = latest_at is None or event.at >= latest_at
            changes = {}
            if is_latest:
                changes = {event.metric: event.quantity, f"{event.metric}_at": event.at}
            # A reading inside the window was in effect in the window; so was the newest reading
            # from before it. An older superseded reading was not (exact when readings arrive in
            # time order, as they do from one host product; storage recomputes exactly).
            if event.metric == "integrations" and (in_window or is_latest):
                changes["integrations_peak"] = max(self.integrations_peak, event.quantity)
            return replace(self, **changes) if changes else self
        if not in_window:
            return self
        if event.metric == "messages":
            return replace(self, messages=self.messages + event.quantity)
        name = event.metric[len("feature:"):]
        features = dict(self.features)
        features[name] = features.get(name, 0) + event.quantity
        return replace(self, features=MappingProxyType(features))
