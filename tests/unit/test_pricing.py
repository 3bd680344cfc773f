"""Monthly cost at a usage and the prorated charge today (§3, §4), table-driven."""

from datetime import date
from decimal import Decimal

import pytest

from core.money import dollars, money_str, to_cents
from core.pricing import billing_period, monthly_cost, prorate


@pytest.mark.parametrize("plan, messages, seats, total", [
    ("starter", 0, 0, "149.00"),
    ("starter", 1000, 3, "149.00"),
    ("starter", 1001, 3, "149.10"),
    ("starter", 4800, 3, "529.00"),      # the §1 example: 149 + 3,800 x 0.10
    ("starter", 4500, 3, "499.00"),      # the break-even threshold
    ("starter", 900, 4, "189.00"),       # one extra seat
    ("growth", 4800, 3, "499.00"),
    ("growth", 31000, 8, "1549.00"),     # 499 + 21,000 x 0.05
    ("growth", 30000, 10, "1499.00"),    # the growth -> scale break-even
    ("growth", 10000, 12, "569.00"),     # 2 extra seats at 35
    ("scale", 60000, 55, "1849.00"),     # 1,499 + 10,000 x 0.02 + 5 x 30
])
def test_monthly_cost_is_base_plus_message_and_seat_overage(catalog, plan, messages, seats, total):
    assert money_str(monthly_cost(catalog.plans[plan], messages, seats).total) == total


def test_each_cost_line_keeps_its_inputs(catalog):
    cost = monthly_cost(catalog.plans["starter"], 4800, 5)
    assert (cost.messages.used, cost.messages.included, cost.messages.extra) == (4800, 1000, 3800)
    assert cost.messages.amount == Decimal("380.00")
    assert (cost.seats.extra, cost.seats.amount) == (2, Decimal("80.00"))
    assert cost.total == cost.base + cost.messages.amount + cost.seats.amount


@pytest.mark.parametrize("amount, cents", [
    ("0.005", "0.01"), ("0.004", "0.00"), ("2.675", "2.68"), ("-0.005", "-0.01"), ("105", "105.00"),
])
def test_money_rounds_half_up_to_cents(amount, cents):
    assert str(to_cents(Decimal(amount))) == cents


def test_dollars_are_shown_with_thousands_and_the_sign_in_front():
    assert dollars(Decimal("1499")) == "$1,499.00"
    assert dollars(Decimal("-310")) == "-$310.00"


@pytest.mark.parametrize("billing_day, today, start, end", [
    (5, date(2026, 11, 26), date(2026, 11, 5), date(2026, 12, 5)),
    (5, date(2026, 11, 5), date(2026, 11, 5), date(2026, 12, 5)),   # the first day of a period
    (5, date(2026, 11, 4), date(2026, 10, 5), date(2026, 11, 5)),   # the last day of a period
    (28, date(2026, 1, 10), date(2025, 12, 28), date(2026, 1, 28)), # across the year
    (15, date(2026, 12, 20), date(2026, 12, 15), date(2027, 1, 15)),
    (28, date(2027, 2, 28), date(2027, 2, 28), date(2027, 3, 28)),
])
def test_billing_period_runs_from_the_billing_day_to_the_same_day_next_month(billing_day, today, start, end):
    assert billing_period(billing_day, today) == (start, end)


@pytest.mark.parametrize("current, target, billing_day, today, days_left, days, charge", [
    ("starter", "growth", 5, date(2026, 11, 26), 9, 30, "105.00"),   # the §4 example
    ("starter", "growth", 5, date(2026, 11, 5), 30, 30, "350.00"),   # first day: the whole difference
    ("starter", "growth", 5, date(2026, 12, 4), 1, 30, "11.67"),     # last day: 350 / 30, half-up
    ("growth", "scale", 1, date(2027, 2, 10), 19, 28, "678.57"),     # February: 1000 x 19 / 28
    ("starter", "scale", 12, date(2026, 11, 26), 16, 30, "720.00"),
    ("growth", "starter", 5, date(2026, 11, 26), 9, 30, "0.00"),     # down-tier: never negative
])
def test_prorated_charge_is_base_difference_times_remaining_over_period_days(
        catalog, current, target, billing_day, today, days_left, days, charge):
    p = prorate(catalog.plans[current], catalog.plans[target], billing_day, today)
    assert (p.days_remaining, p.days_in_period, money_str(p.amount)) == (days_left, days, charge)


@pytest.mark.parametrize("day", [0, 29, 31])
def test_billing_day_outside_1_to_28_is_refused(day):
    with pytest.raises(ValueError):
        billing_period(day, date(2026, 11, 26))
