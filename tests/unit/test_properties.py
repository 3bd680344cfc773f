"""Property tests: money is exact to the cent, the case is honest, thresholds fire once per crossing."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from core.case import AccountTerms, build_case
from core.framing import opening_message
from core.pricing import monthly_cost, prorate
from core.thresholds import ingest
from core.usage import UsageEvent, UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
PLANS = ["starter", "growth", "scale"]

messages = st.integers(min_value=0, max_value=200_000)
seats = st.integers(min_value=0, max_value=200)


def exact_cents(x: Fraction) -> Decimal:
    """Half-up rounding of an exact rational, computed without Decimal arithmetic."""
    sign = -1 if x < 0 else 1
    cents = (abs(x) * 100 + Fraction(1, 2)).__floor__()
    return Decimal(sign * cents) / 100


@given(plan=st.sampled_from(PLANS), messages=messages, seats=seats)
def test_cost_is_exact_to_the_cent_and_its_lines_add_up(catalog, plan, messages, seats):
    p = catalog.plans[plan]
    cost = monthly_cost(p, messages, seats)
    exact = (Fraction(p.base_price) + max(0, messages - p.included_messages) * Fraction(p.extra_message_price)
             + max(0, seats - p.included_seats) * Fraction(p.extra_seat_price))
    assert cost.total == exact_cents(exact)
    assert cost.total.as_tuple().exponent == -2
    assert cost.total == cost.base + cost.messages.amount + cost.seats.amount


@given(current=st.sampled_from(PLANS), target=st.sampled_from(PLANS),
       billing_day=st.integers(1, 28),
       today=st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)))
def test_prorated_charge_is_exact_half_up_and_never_more_than_the_difference(
        catalog, current, target, billing_day, today):
    p = prorate(catalog.plans[current], catalog.plans[target], billing_day, today)
    assert 1 <= p.days_remaining <= p.days_in_period
    assert 28 <= p.days_in_period <= 31
    diff = Fraction(p.base_difference)
    expected = exact_cents(diff * p.days_remaining / p.days_in_period) if diff > 0 else Decimal("0.00")
    assert p.amount == expected
    assert Decimal(0) <= p.amount <= max(Decimal(0), p.base_difference)


@given(current=st.sampled_from(PLANS), target=st.sampled_from(PLANS), messages=messages,
       seats=seats, billing_day=st.integers(1, 28),
       vertical=st.sampled_from(["generic", "healthcare", "real_estate", "salon", "sales", "it_msp"]))
@settings(max_examples=300)
def test_the_case_never_claims_a_saving_when_the_target_costs_more(
        catalog, current, target, messages, seats, billing_day, vertical):
    if current == target:
        return
    terms = AccountTerms(current, vertical, "UTC", billing_day, NOW - timedelta(days=400))
    usage = UsageMatrix(messages=messages, seats=seats)
    met = [("messages", messages, 0)]  # the opening leads with the messages figure
    case = build_case(catalog, terms, usage, catalog.plans[target], met, NOW)
    assert case.claims_saving == (case.cost_target.total < case.cost_current.total)
    assert case.monthly_difference == case.cost_current.total - case.cost_target.total
    message = opening_message(case, catalog)
    if not case.claims_saving:
        assert " less" not in message
    if case.cost_target.total > case.cost_current.total:
        assert f"${-case.monthly_difference:,.2f} more" in message
    assert "discount" not in message.lower()


@given(values=st.lists(st.integers(0, 8), min_size=1, max_size=40),
       cuts=st.lists(st.integers(1, 40), max_size=6))
def test_a_threshold_fires_once_per_upward_crossing_however_events_are_batched(catalog, values, cuts):
    starter = catalog.plans["starter"]
    events = [UsageEvent(f"e{i}", "a", "seats", v, NOW - timedelta(minutes=len(values) - i))
              for i, v in enumerate(values)]
    upward = sum(1 for i, v in enumerate(values) if v >= 4 and (i == 0 or values[i - 1] < 4))
    # Deliver the same readings in arbitrary batches, shuffled inside each batch.
    bounds = sorted({0, len(events), *[c for c in cuts if c < len(events)]})
    matrix, above, fired = UsageMatrix(), frozenset(), 0
    for lo, hi in zip(bounds, bounds[1:]):
        batch = list(reversed(events[lo:hi]))
        matrix, above, crossed = ingest(catalog, starter, matrix, above, batch, NOW - timedelta(days=400), NOW)
        fired += sum(1 for c in crossed if c.metric == "seats")
    assert fired == upward


@given(increments=st.lists(st.integers(0, 3000), min_size=1, max_size=30))
def test_a_growing_counter_fires_its_threshold_at_most_once(catalog, increments):
    starter = catalog.plans["starter"]
    events = [UsageEvent(f"m{i}", "a", "messages", q, NOW - timedelta(hours=len(increments) - i))
              for i, q in enumerate(increments)]
    _, _, crossed = ingest(catalog, starter, UsageMatrix(), frozenset(), events, NOW, NOW)
    fired = [c for c in crossed if c.metric == "messages"]
    assert len(fired) == (1 if sum(increments) >= 4500 else 0)


# --- the conversation: whatever the buyer writes, in whatever order -----------------------------

BUYER_TEXTS = (
    "yes", "YES", "ok upgrade us", "confirm", "CONFIRM", "confirmed", "no", "no thanks",
    "too expensive", "not now", "how much?", "what would I be charged today?", "what do I get",
    "can I downgrade later?", "talk to a person", "any discount?", "call me", "STOP", "START",
    "HELP", "yes at $399", "confirm the scale plan", "I confirm the upgrade to growth at $499",
    "hmm", "", "no, go ahead", "don't upgrade", "yes please, stop texting me",
)


@given(texts=st.lists(st.sampled_from(BUYER_TEXTS), min_size=1, max_size=25))
def test_an_upgrade_runs_only_right_after_the_confirmation_step_and_at_most_once(catalog, texts):
    """Drive pure reply() + transition() like core.handlers does: the upgrade runs only from
    awaiting_confirmation, entered by a turn that showed the step (plan, price, today's charge),
    never twice, and never while the buyer is opted out. (Questions asked in between leave the step
    standing: a bare yes after them confirms, as §6 says.)"""
    from core.case import AccountTerms, current_case
    from core.conversation import (Business, ThreadEvent, ThreadState, confirmation_step, reply,
                                   transition)
    from core.intents import classify

    terms = AccountTerms("starter", "generic", "America/Chicago", 5, NOW - timedelta(days=400))
    case = current_case(catalog, terms, UsageMatrix(messages=4800, seats=3), NOW)
    step = confirmation_step(case)
    state, step_stands, upgrades, opted_out = ThreadState.OFFERED, False, 0, False
    for text in texts:
        turn = reply(state, classify(text), text, case, catalog, Business("Acme", "help@acme"),
                     opted_out=opted_out)
        if turn.run_upgrade:
            assert state == ThreadState.AWAITING_CONFIRMATION and step_stands, texts
            assert not opted_out and upgrades == 0, texts  # START then YES may upgrade
            upgrades += 1
        if turn.consent:
            opted_out = turn.consent == "revoke"
        for event in turn.events:
            state = transition(state, event)  # an illegal move would raise here
        if turn.run_upgrade:
            assert state == ThreadState.UPGRADED
        if ThreadEvent.AFFIRM in turn.events:
            assert step in turn.replies  # entering the step always shows it
            step_stands = True
        step_stands = step_stands and state == ThreadState.AWAITING_CONFIRMATION
