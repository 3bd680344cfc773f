"""The case: every figure the opening message states, with the inputs it came from (§4).

Honesty rule: a saving is claimed only when the target plan costs less at the buyer's own usage;
otherwise the price difference is stated plainly and the case is made on what the target unlocks.
A down-tier takes effect at the next billing period, so it charges nothing today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.accounts import Account
from core.catalog import Catalog, Plan, Vertical
from core.pricing import Cost, Proration, monthly_cost, prorate
from core.thresholds import down_tier_fit, met_thresholds
from core.usage import UsageMatrix


@dataclass(frozen=True)
class AccountTerms:
    """What the case needs to know of an account."""

    plan: str
    vertical: str
    timezone: str
    billing_day: int
    plan_since: datetime


@dataclass(frozen=True)
class Met:
    """A threshold the usage is at or above, as the case states it."""

    metric: str
    value: int
    threshold: int


@dataclass(frozen=True)
class Unlocks:
    features: tuple[str, ...]  # features the target has and the current plan lacks (up-tier)
    seats_included: tuple[int, int]  # current -> target
    messages_included: tuple[int, int]
    max_integrations: tuple[int | None, int | None]  # None: unlimited


@dataclass(frozen=True)
class Case:
    current: Plan
    target: Plan
    direction: str  # "up" | "down"
    usage: UsageMatrix
    thresholds_crossed: tuple[Met, ...]
    cost_current: Cost
    cost_target: Cost
    proration: Proration
    unlocks: Unlocks
    gives_up: tuple[str, ...]  # features the current plan has and the target lacks (down-tier)
    vertical: Vertical
    today: date

    @property
    def monthly_difference(self) -> Decimal:
        """Current cost minus target cost: positive is a saving for the buyer."""
        return self.cost_current.total - self.cost_target.total

    @property
    def claims_saving(self) -> bool:
        return self.cost_target.total < self.cost_current.total

    @property
    def prorated_charge_today(self) -> Decimal:
        if self.direction == "down":
            return Decimal("0.00")
        return self.proration.amount

    @property
    def effective(self) -> date:
        """When the plan change takes effect: today up-tier, the next period start down-tier."""
        return self.today if self.direction == "up" else self.proration.period_end


def local_today(now: datetime, timezone: str) -> date:
    """The date it is in `timezone` at `now` (an aware datetime)."""
    return now.astimezone(ZoneInfo(timezone)).date()


def build_case(catalog: Catalog, terms: AccountTerms, usage: UsageMatrix, target: Plan,
               met: list[tuple[str, int, int]], now: datetime) -> Case:
    """The case for moving an account from its plan to `target` at `usage`, as of `now`."""
    current = catalog.plan(terms.plan)
    direction = "up" if target.rank > current.rank else "down"
    today = local_today(now, terms.timezone)
    return Case(
        current=current,
        target=target,
        direction=direction,
        usage=usage,
        thresholds_crossed=tuple(Met(m, v, t) for m, v, t in met),
        cost_current=monthly_cost(current, usage.messages, usage.seats),
        cost_target=monthly_cost(target, usage.messages, usage.seats),
        proration=prorate(current, target, terms.billing_day, today),
        unlocks=_unlocks(catalog, current, target),
        gives_up=tuple(f for f in catalog.features if f in current.features - target.features),
        vertical=catalog.vertical(terms.vertical),
        today=today,
    )


def _unlocks(catalog: Catalog, current: Plan, target: Plan) -> Unlocks:
    return Unlocks(
        features=tuple(f for f in catalog.features if f in target.features - current.features),
        seats_included=(current.included_seats, target.included_seats),
        messages_included=(current.included_messages, target.included_messages),
        max_integrations=(current.max_integrations, target.max_integrations),
    )


def current_case(catalog: Catalog, terms: AccountTerms, usage: UsageMatrix,
                 now: datetime) -> Case | None:
    """The tier change that applies now, or None.

    Up-tier when any threshold from the account's plan is met now (the lowest plan such
    thresholds lead to, so the step is the smallest that serves); else down-tier when the next
    lower plan could have served the whole window for less; else nothing.
    """
    current = catalog.plan(terms.plan)
    met = met_thresholds(catalog, current, usage)
    if met:
        target = min((catalog.plans[t.to_plan] for t, _, _ in met), key=lambda p: p.rank)
        rows = [(metric, value, t.at) for t, metric, value in met if t.to_plan == target.name]
        return build_case(catalog, terms, usage, target, rows, now)
    lower = down_tier_fit(catalog, current, usage, terms.plan_since, now)
    if lower is not None:
        return build_case(catalog, terms, usage, lower, [], now)
    return None


def terms(account: Account, plan: str | None = None) -> AccountTerms:
    """What the case needs of an account (on `plan`, by default the account's own)."""
    return AccountTerms(plan=plan or account.plan, vertical=account.vertical,
                        timezone=account.timezone, billing_day=account.billing_day,
                        plan_since=account.plan_since)
