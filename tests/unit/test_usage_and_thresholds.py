"""The usage matrix (§3) and edge-triggered thresholds, table-driven and pure."""

from datetime import datetime, timedelta, timezone

import pytest

from core.thresholds import evaluate_up, ingest
from core.usage import UsageEvent, UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
LONG_AGO = NOW - timedelta(days=365)


def ev(metric, quantity, days_ago=0.0, id=None):
    at = NOW - timedelta(days=days_ago)
    return UsageEvent(id or f"{metric}-{quantity}-{days_ago}", "acct", metric, quantity, at)


def matrix_of(*events):
    m = UsageMatrix()
    for e in events:
        m = m.apply(e, NOW)
    return m


@pytest.mark.parametrize("events, metric, value", [
    ([ev("messages", 100, 1), ev("messages", 50, 29.9)], "messages", 150),
    ([ev("messages", 100, 1), ev("messages", 50, 30.1)], "messages", 100),  # outside the window
    ([ev("seats", 4, 2), ev("seats", 6, 1)], "seats", 6),                    # latest wins
    ([ev("seats", 6, 1), ev("seats", 4, 2)], "seats", 6),                    # an older reading arriving late changes nothing
    ([ev("seats", 5, 90)], "seats", 5),                                      # a gauge holds until the next reading
    ([ev("feature:workflows", 1, 3), ev("feature:workflows", 2, 4)], "feature:workflows", 3),
    ([ev("feature:workflows", 1, 40)], "feature:workflows", 0),
    ([ev("integrations", 5, 20), ev("integrations", 1, 1)], "integrations", 1),
    ([ev("integrations", 5, 20), ev("integrations", 1, 1)], "integrations_peak", 5),
    ([ev("integrations", 7, 45), ev("integrations", 1, 1)], "integrations_peak", 7),  # in effect at the window start
])
def test_usage_matrix_counts_the_window_and_keeps_gauges_latest(events, metric, value):
    assert matrix_of(*events).value(metric) == value


def states(catalog, plan, values, metric="seats", since=LONG_AGO):
    """Feed a sequence of gauge readings; return how many crossings each reading fired."""
    m, above, fired = UsageMatrix(), frozenset(), []
    for i, v in enumerate(values):
        e = ev(metric, v, days_ago=(len(values) - i) / 1000)
        m, above, crossed = ingest(catalog, catalog.plans[plan], m, above, [e], since, NOW)
        fired.append(len([c for c in crossed if c.metric == metric]))
    return fired


@pytest.mark.parametrize("values, fired", [
    ([3, 4], [0, 1]),                    # below -> at: fires
    ([5], [1]),                          # first reading already above: fires
    ([4, 5, 6], [1, 0, 0]),              # stays above: fires once
    ([4, 3, 4], [1, 0, 1]),              # dropped below, re-armed, fires again
    ([4, 4, 3, 3, 9], [1, 0, 0, 0, 1]),
    ([1, 2, 3], [0, 0, 0]),              # never reaches 4
])
def test_seat_threshold_is_edge_triggered(catalog, values, fired):
    assert states(catalog, "starter", values) == fired


def test_one_batch_with_two_upward_crossings_fires_twice_in_time_order(catalog):
    events = [ev("seats", 3, 0.3, "c"), ev("seats", 4, 0.4, "b"), ev("seats", 4, 0.1, "d"),
              ev("seats", 2, 0.5, "a")]  # in time order: 2, 4, 3, 4
    _, _, crossed = ingest(catalog, catalog.plans["starter"], UsageMatrix(), frozenset(), events,
                           LONG_AGO, NOW)
    assert [c.event_id for c in crossed] == ["b", "d"]


def test_a_crossing_records_metric_value_threshold_and_the_event_time(catalog):
    e = ev("messages", 4600, 2)
    _, _, [c] = ingest(catalog, catalog.plans["starter"], UsageMatrix(), frozenset(), [e], LONG_AGO, NOW)
    assert (c.direction, c.from_plan, c.to_plan, c.metric) == ("up", "starter", "growth", "messages")
    assert (c.value, c.threshold, c.at, c.event_id) == (4600, 4500, e.at, e.id)


def test_any_locked_feature_hit_three_times_fires_naming_the_feature(catalog):
    events = [ev("feature:api_access", 1, d, f"f{d}") for d in (1, 2, 3)]
    _, _, crossed = ingest(catalog, catalog.plans["starter"], UsageMatrix(), frozenset(), events,
                           LONG_AGO, NOW)
    assert [(c.metric, c.value) for c in crossed] == [("feature:api_access", 3)]


def test_a_feature_the_plan_already_has_does_not_count_toward_an_upgrade(catalog):
    events = [ev("feature:workflows", 5, 1)]  # growth has workflows; scale's features are others
    _, _, crossed = ingest(catalog, catalog.plans["growth"], UsageMatrix(), frozenset(), events,
                           LONG_AGO, NOW)
    assert crossed == []


@pytest.mark.parametrize("usage, plan_days, fits", [
    ({"messages": 2100, "seats": 5, "integrations": 1}, 60, True),
    ({"messages": 2100, "seats": 5, "integrations": 1}, 10, False),   # not a full window on the plan
    ({"messages": 2100, "seats": 5, "integrations": 3}, 60, False),   # starter allows 2 integrations
    ({"messages": 9000, "seats": 9, "integrations": 1}, 60, False),   # starter would cost more
    ({"messages": 2100, "seats": 5, "integrations": 1, "feature:workflows": 1}, 60, False),
])
def test_down_tier_fires_only_when_the_lower_plan_serves_the_window_for_less(catalog, usage, plan_days, fits):
    events = [ev(m, q, 1, m) for m, q in usage.items()]
    since = NOW - timedelta(days=plan_days)
    _, _, crossed = ingest(catalog, catalog.plans["growth"], UsageMatrix(), frozenset(), events, since, NOW)
    downs = [c for c in crossed if c.direction == "down"]
    assert bool(downs) is fits
    if fits:
        assert downs[-1].to_plan == "starter" and downs[-1].value < downs[-1].threshold


def test_evaluate_rearms_a_threshold_when_the_value_drops_below(catalog):
    starter = catalog.plans["starter"]
    _, above = evaluate_up(catalog, starter, UsageMatrix(seats=4), frozenset(), NOW)
    assert any("seats" in k for k in above)
    _, above = evaluate_up(catalog, starter, UsageMatrix(seats=2), above, NOW)
    assert not any("seats" in k for k in above)


def test_a_counter_that_ages_out_of_the_window_rearms_and_fires_again(catalog):
    starter = catalog.plans["starter"]
    old = UsageEvent("old", "acct", "messages", 5000, NOW - timedelta(days=10))
    m, above, first = ingest(catalog, starter, UsageMatrix(), frozenset(), [old], LONG_AGO, NOW)
    assert len(first) == 1
    later = NOW + timedelta(days=25)  # the 5,000 messages have left the window; no event said so
    matrix_then = UsageMatrix().apply(old, later)
    assert matrix_then.messages == 0
    new = UsageEvent("new", "acct", "messages", 4600, later)
    _, _, second = ingest(catalog, starter, matrix_then, above, [new], LONG_AGO, later)
    assert [c.event_id for c in second] == ["new"]


# --- a catalog change: state kept under old levels, and the re-evaluation ---------------------

def _at(catalog, old: str, new: str):
    """The catalog with one threshold's level moved (by its key)."""
    from dataclasses import replace

    moved = tuple(replace(t, at=int(new)) if t.key == old else t for t in catalog.thresholds)
    assert moved != catalog.thresholds
    return replace(catalog, thresholds=moved)


@pytest.mark.parametrize("above, kept", [
    (frozenset(), frozenset()),
    # the moved threshold's old key becomes its new one
    ({"starter->growth:messages>=4500"}, {"starter->growth:messages>=4000"}),
    # keys of this catalog stay; of another plan, or no threshold at all, go
    ({"starter->growth:seats>=4", "growth->scale:seats>=11", "nonsense"},
     {"starter->growth:seats>=4"}),
    ({"starter->growth:feature:*>=3"}, {"starter->growth:feature:*>=3"}),
])
def test_state_under_an_old_level_is_carried_to_the_new_one(catalog, above, kept):
    from core.thresholds import carry_over

    lowered = _at(catalog, "starter->growth:messages>=4500", "4000")
    assert carry_over(lowered, lowered.plans["starter"], frozenset(above)) == kept


def test_the_down_tier_key_stays_while_it_names_the_lower_plan(catalog):
    from core.thresholds import carry_over

    growth = catalog.plans["growth"]
    assert carry_over(catalog, growth, frozenset({"growth->starter:down"})) == {"growth->starter:down"}
    assert carry_over(catalog, growth, frozenset({"scale->growth:down"})) == frozenset()


@pytest.mark.parametrize("messages, above, level, fired, state", [
    # lowered to 4,000: an account at 4,200 never above 4,500 crosses now
    (4200, set(), "4000", ["starter->growth:messages>=4000"], {"starter->growth:messages>=4000"}),
    # above the old level and the new one: no second crossing
    (4700, {"starter->growth:messages>=4500"}, "4000", [], {"starter->growth:messages>=4000"}),
    # raised to 5,000: above the old level, below the new one: re-armed, nothing fires
    (4700, {"starter->growth:messages>=4500"}, "5000", [], set()),
    # raised, still above: kept under the new key
    (5200, {"starter->growth:messages>=4500"}, "5000", [], {"starter->growth:messages>=5000"}),
    # below both: nothing
    (3000, set(), "4000", [], set()),
])
def test_reevaluate_crosses_what_is_met_now_and_re_arms_the_rest(catalog, messages, above,
                                                                 level, fired, state):
    from core.thresholds import reevaluate

    changed = _at(catalog, "starter->growth:messages>=4500", level)
    m = matrix_of(ev("messages", messages, 2))
    crossings, after = reevaluate(changed, changed.plans["starter"], m, frozenset(above),
                                  LONG_AGO, NOW)
    assert [c.key for c in crossings] == fired
    assert all(c.at == NOW and c.event_id is None for c in crossings)
    assert after == state
    again, same = reevaluate(changed, changed.plans["starter"], m, after, LONG_AGO, NOW)
    assert (again, same) == ([], after)  # a second run changes nothing


def test_ingestion_does_not_fire_again_for_a_step_crossed_under_the_old_level(catalog):
    raised = _at(catalog, "starter->growth:messages>=4500", "4000")
    m = matrix_of(ev("messages", 4700, 2))
    _, above, fired = ingest(raised, raised.plans["starter"], m,
                             frozenset({"starter->growth:messages>=4500"}),
                             [ev("messages", 10, 0.5)], LONG_AGO, NOW)
    assert fired == []
    assert above == {"starter->growth:messages>=4000"}
