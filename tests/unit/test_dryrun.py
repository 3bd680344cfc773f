"""The dry run's replay (core.dryrun), pure: day by day over the daily rollups, edge-triggered,
on the plan the account was on each day, once per step."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from core.dryrun import Step, replay, window
from core.ports import DailyUsage, PlanHistoryEntry, UsageHistory

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
UP = Step("starter", "growth", "up")


def history(days, plans=(), plan="starter", since=NOW - timedelta(days=400)) -> UsageHistory:
    return UsageHistory(1, "a", "generic", plan, since, tuple(plans), tuple(days))


def messages(day: date, n: int) -> DailyUsage:
    return DailyUsage("messages", day, n, n, n)


def seats(day: date, n: int) -> DailyUsage:
    return DailyUsage("seats", day, n, n, n)


def run(h: UsageHistory, catalog, days: int = 90):
    first, last = window(days, NOW)
    return replay(h, (catalog,), first, last, NOW).steps[0]


def test_the_30_day_sum_crosses_on_the_day_it_reaches_the_threshold(catalog):
    # 300 a day for 15 days reaches 4,500 on the 15th day: inside the window.
    h = history([messages(TODAY - timedelta(days=d), 300) for d in range(15)])
    assert run(h, catalog) == {UP}
    # Over 15 days, spread over 60 days: never 4,500 in any 30 days.
    h = history([messages(TODAY - timedelta(days=4 * d), 300) for d in range(15)])
    assert run(h, catalog) == frozenset()


def test_above_before_the_window_is_not_a_crossing_in_it(catalog):
    h = history([seats(TODAY - timedelta(days=200), 5)])
    assert run(h, catalog) == frozenset()
    # The same seats reading 10 days ago crosses.
    assert run(history([seats(TODAY - timedelta(days=10), 5)]), catalog) == {UP}


def test_a_gauge_reading_before_the_data_span_is_carried(catalog):
    # 5 seats long ago, 2 seats 20 days ago, 4 seats 3 days ago: one crossing, 3 days ago.
    h = history([seats(TODAY - timedelta(days=300), 5), seats(TODAY - timedelta(days=20), 2),
                 seats(TODAY - timedelta(days=3), 4)])
    assert run(h, catalog) == {UP}


def test_an_account_counts_once_per_step_whatever_it_crosses(catalog):
    h = history([seats(TODAY - timedelta(days=50), 4), seats(TODAY - timedelta(days=40), 3),
                 seats(TODAY - timedelta(days=10), 4), messages(TODAY - timedelta(days=5), 5000)])
    assert run(h, catalog) == {UP}


def test_the_plan_of_each_day_is_the_plan_history(catalog):
    """Upgraded to Growth 20 days ago: Starter's thresholds read the days before, Growth's the
    days after (a plan change re-arms them)."""
    changed = datetime.combine(TODAY - timedelta(days=20), datetime.min.time(), timezone.utc)
    plans = [PlanHistoryEntry(None, "starter", NOW - timedelta(days=400), "operator"),
             PlanHistoryEntry("starter", "growth", changed, "conversation")]
    h = history([seats(TODAY - timedelta(days=30), 12)], plans=plans, plan="growth",
                since=changed)
    assert run(h, catalog) == {UP, Step("growth", "scale", "up")}
    # On the current plan only, as if it had always been on Growth: 12 seats 30 days ago.
    assert run(history([seats(TODAY - timedelta(days=30), 12)], plan="growth"), catalog) == \
        {Step("growth", "scale", "up")}


def test_a_plan_the_catalog_lacks_is_said_not_guessed(catalog):
    h = history([seats(TODAY - timedelta(days=10), 5)], plan="enterprise")
    first, last = window(90, NOW)
    replayed = replay(h, (catalog,), first, last, NOW)
    assert replayed.steps == (frozenset(),) and replayed.unknown_plan == (True,)
