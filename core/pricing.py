"""What a plan costs at a usage, and what an upgrade today charges for the rest of the period.

Each line is rounded half-up to cents and the total is the sum of the rounded lines, so the
figures a buyer sees always add up and each one can be traced to its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from core.catalog import Plan
from core.money import to_cents


@dataclass(frozen=True)
class OverageLine:
    used: int
    included: int
    unit_price: Decimal

    @property
    def extra(self) -> int:
        return max(0, self.used - self.included)

    @property
    def amount(self) -> Decimal:
        return to_cents(self.extra * self.unit_price)


@dataclass(frozen=True)
class Cost:
    """A plan's monthly cost at a usage: base + message overage + seat overage."""

    plan: str
    base: Decimal
    messages: OverageLine
    seats: OverageLine

    @property
    def total(self) -> Decimal:
        return to_cents(self.base) + self.messages.amount + self.seats.amount


def monthly_cost(plan: Plan, messages: int, seats: int) -> Cost:
    """Monthly cost of `plan` at `messages` (trailing 30 days) and `seats` (current)."""
    return Cost(
        plan=plan.name,
        base=plan.base_price,
        messages=OverageLine(messages, plan.included_messages, plan.extra_message_price),
        seats=OverageLine(seats, plan.included_seats, plan.extra_seat_price),
    )


@dataclass(frozen=True)
class Proration:
    """The charge today for the rest of the current billing period."""

    period_start: date
    period_end: date  # excluded
    today: date
    base_difference: Decimal

    @property
    def days_in_period(self) -> int:
        return (self.period_end - self.period_start).days

    @property
    def days_remaining(self) -> int:
        return (self.period_end - self.today).days

    @property
    def amount(self) -> Decimal:
        """base difference x remaining days / days in period, half-up to cents; never negative."""
        if self.base_difference <= 0:
            return to_cents(0)
        return to_cents(self.base_difference * self.days_remaining / self.days_in_period)


def _add_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, d.day)


def billing_period(billing_day: int, today: date) -> tuple[date, date]:
    """The period containing `today`: from `billing_day` to the same day next month (excluded).

    `billing_day` is 1-28, so the day exists in every month.
    """
    if not 1 <= billing_day <= 28:
        raise ValueError(f"billing_day must be 1-28, got {billing_day}")
    if today.day >= billing_day:
        start = date(today.year, today.month, billing_day)
    else:
        prev_month = date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)
        start = prev_month.replace(day=billing_day)
    return start, _add_month(start)


def prorate(current: Plan, target: Plan, billing_day: int, today: date) -> Proration:
    """What moving from `current` to `target` today charges for the rest of this period."""
    start, end = billing_period(billing_day, today)
    return Proration(period_start=start, period_end=end, today=today,
                     base_difference=target.base_price - current.base_price)
