"""Edge-triggered thresholds: a crossing fires when a value goes from below to at-or-above.

Which thresholds are currently "above" is state the caller keeps (per account, a set of keys); a
threshold fires again only after its value has dropped below and been re-armed. The down-tier
rule is a condition rather than a number, and is edge-triggered the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable

from core.catalog import ANY_FEATURE, Catalog, Plan, Threshold
from core.pricing import monthly_cost
from core.usage import UsageEvent, UsageMatrix


@dataclass(frozen=True)
class Crossing:
    """A threshold crossed (a signal): which metric, its value, the threshold, and when."""

    key: str
    direction: str  # "up" or "down"
    from_plan: str
    to_plan: str
    metric: str
    value: Decimal
    threshold: Decimal
    at: datetime
    event_id: str | None = None


def threshold_value(threshold: Threshold, catalog: Catalog, matrix: UsageMatrix) -> tuple[str, int]:
    """The metric a threshold reads and its value; `feature:*` resolves to the most-hit feature
    that the target plan has and the current plan lacks."""
    if threshold.metric != ANY_FEATURE:
        return threshold.metric, matrix.value(threshold.metric)
    unlocked = catalog.plans[threshold.to_plan].features - catalog.plans[threshold.from_plan].features
    hits = sorted(((matrix.features.get(f, 0), f) for f in unlocked), key=lambda t: (-t[0], t[1]))
    if not hits:
        return ANY_FEATURE, 0
    value, feature = hits[0]
    return f"feature:{feature}", value


def met_thresholds(catalog: Catalog, plan: Plan, matrix: UsageMatrix) -> list[tuple[Threshold, str, int]]:
    """The up-tier thresholds from `plan` that the usage is at or above now."""
    out = []
    for t in catalog.thresholds:
        if t.from_plan == plan.name:
            metric, value = threshold_value(t, catalog, matrix)
            if value >= t.at:
                out.append((t, metric, value))
    return out


def down_key(plan: Plan, lower: Plan) -> str:
    return f"{plan.name}->{lower.name}:down"


def down_tier_fit(catalog: Catalog, plan: Plan, matrix: UsageMatrix, plan_since: datetime,
                  now: datetime) -> Plan | None:
    """The next lower plan when it could have served the whole window and costs less, else None."""
    lower = catalog.below(plan)
    if lower is None or not catalog.downtier.enabled:
        return None
    if now - plan_since < timedelta(days=catalog.downtier.min_days_on_plan):
        return None
    if not lower.integrations_allowed(max(matrix.integrations_peak, matrix.integrations)):
        return None
    if any(matrix.features.get(f, 0) > 0 for f in plan.features - lower.features):
        return None
    if (monthly_cost(lower, matrix.messages, matrix.seats).total
            >= monthly_cost(plan, matrix.messages, matrix.seats).total):
        return None
    return lower


def _reads(threshold: Threshold, metric: str) -> bool:
    """Whether a change of `metric` can change the threshold's value."""
    return threshold.metric == metric or (threshold.metric == ANY_FEATURE
                                          and metric.startswith("feature:"))


def evaluate_up(catalog: Catalog, plan: Plan, matrix: UsageMatrix, above: frozenset[str],
                at: datetime, event_id: str | None = None,
                changed: str | None = None) -> tuple[list[Crossing], frozenset[str]]:
    """Compare the matrix with the up-tier thresholds of `plan`; return crossings and new state.

    `above` holds the keys that were at-or-above at the previous evaluation. A key that is above
    now and was not fires a crossing stamped `at`; a key that dropped below is re-armed. With
    `changed`, only thresholds that read that metric are looked at (the others cannot move).
    """
    state = set(above)
    crossings = []
    for t in catalog.thresholds:
        if t.from_plan != plan.name or (changed is not None and not _reads(t, changed)):
            continue
        metric, value = threshold_value(t, catalog, matrix)
        if value >= t.at:
            if t.key not in state:
                state.add(t.key)
                crossings.append(Crossing(t.key, "up", t.from_plan, t.to_plan, metric,
                                          Decimal(value), Decimal(t.at), at, event_id))
        else:
            state.discard(t.key)
    return crossings, frozenset(state)


def evaluate_down(catalog: Catalog, plan: Plan, matrix: UsageMatrix, above: frozenset[str],
                  plan_since: datetime, now: datetime, at: datetime,
                  event_id: str | None = None) -> tuple[list[Crossing], frozenset[str]]:
    """The down-tier rule, edge-triggered like a threshold: fires when the fit begins."""
    lower = catalog.below(plan)
    if lower is None:
        return [], above
    key = down_key(plan, lower)
    if down_tier_fit(catalog, plan, matrix, plan_since, now) is None:
        return [], above - {key}
    if key in above:
        return [], above
    crossing = Crossing(key, "down", plan.name, lower.name, "cost",
                        monthly_cost(lower, matrix.messages, matrix.seats).total,
                        monthly_cost(plan, matrix.messages, matrix.seats).total, at, event_id)
    return [crossing], above | {key}


def _dropped_below(catalog: Catalog, plan: Plan, matrix: UsageMatrix, key: str) -> bool:
    for t in catalog.thresholds:
        if t.key == key and t.from_plan == plan.name:
            return threshold_value(t, catalog, matrix)[1] < t.at
    return False


def _step_of(key: str) -> tuple[str, str, str] | None:
    """(from plan, to plan, metric) of an up-tier key "from->to:metric>=at", else None."""
    head, sep, _ = key.rpartition(">=")
    step, colon, metric = head.partition(":")
    from_plan, arrow, to_plan = step.partition("->")
    if not (sep and colon and arrow and from_plan and to_plan and metric):
        return None
    return from_plan, to_plan, metric


def carry_over(catalog: Catalog, plan: Plan, above: frozenset[str]) -> frozenset[str]:
    """The state `above` (kept under whatever catalog was current then) in the keys of
    `catalog`, for an account on `plan`.

    A key names its level ("starter->growth:messages>=4500"), so a catalog that moves a level
    makes a new key. Being above the old level of a step and metric counts as being above its
    new level: the offer for that step was made, and if the usage is below the new level the
    evaluation that follows re-arms it (a raised threshold), while an account that was below the
    old level and is above a lowered one crosses. Keys of thresholds the catalog no longer has
    (another plan, metric or step; two thresholds of one step and metric leave it ambiguous),
    and down-tier keys of another step, are dropped: nothing can fire from them.
    """
    if not above:
        return above
    lower = catalog.below(plan)
    down = down_key(plan, lower) if lower is not None else None
    current = {t.key for t in catalog.thresholds if t.from_plan == plan.name}
    if all(k in current or k == down for k in above):
        return above  # kept under this catalog: nothing to carry over
    steps: dict[tuple[str, str, str], list[Threshold]] = {}
    for t in catalog.thresholds:
        if t.from_plan == plan.name:
            steps.setdefault((t.from_plan, t.to_plan, t.metric), []).append(t)
    out = set()
    for key in above:
        if key == down:
            out.add(key)
            continue
        step = _step_of(key)
        same = steps.get(step) if step is not None else None
        if same is not None and len(same) == 1:
            out.add(same[0].key)
    return frozenset(out)


def reevaluate(catalog: Catalog, plan: Plan, matrix: UsageMatrix, above: frozenset[str],
               plan_since: datetime, now: datetime) -> tuple[list[Crossing], frozenset[str]]:
    """Every threshold of `plan` and the down-tier rule, evaluated at `now` with no new event
    (after a catalog change): the state carried over into the catalog's keys (`carry_over`),
    then crossings for what is met now and was not, and re-armed keys for what is no longer
    met. Crossings are stamped `now` and name no event."""
    carried = carry_over(catalog, plan, above)
    up, state = evaluate_up(catalog, plan, matrix, carried, now)
    down, state = evaluate_down(catalog, plan, matrix, state, plan_since, now, now)
    return up + down, state


def ingest(catalog: Catalog, plan: Plan, matrix: UsageMatrix, above: frozenset[str],
           events: Iterable[UsageEvent], plan_since: datetime,
           now: datetime) -> tuple[UsageMatrix, frozenset[str], list[Crossing]]:
    """Apply one account's new events in time order.

    Up-tier thresholds are evaluated after each event, so every upward crossing inside a batch
    fires (and only once). The down-tier rule speaks of the whole window, so it is evaluated once
    the batch is applied: a half-applied batch (messages in, integrations not yet) must not
    advise a downgrade.
    """
    # State kept under another catalog speaks of its levels: in this one's keys first.
    above = carry_over(catalog, plan, above)
    # Time alone can take a value below its threshold (old messages leave the window): re-arm
    # those first, so the batch that takes it back over fires again.
    above = frozenset(k for k in above if not _dropped_below(catalog, plan, matrix, k))
    crossings: list[Crossing] = []
    last = None
    for event in sorted(events, key=lambda e: e.at):
        matrix = matrix.apply(event, now)
        fired, above = evaluate_up(catalog, plan, matrix, above, event.at, event.id, event.metric)
        crossings.extend(fired)
        last = event
    if last is not None:
        fired, above = evaluate_down(catalog, plan, matrix, above, plan_since, now, last.at, last.id)
        crossings.extend(fired)
    return matrix, above, crossings
