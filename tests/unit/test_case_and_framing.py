"""The case (§4) and its opening message in each vertical's words: worked examples, pure."""

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.case import AccountTerms, current_case
from core.framing import opening_message
from core.usage import UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
VERTICALS = ["generic", "healthcare", "real_estate", "salon", "sales", "it_msp"]


def terms(plan="starter", vertical="generic", billing_day=5, tz="America/Chicago", plan_days=365):
    return AccountTerms(plan=plan, vertical=vertical, timezone=tz, billing_day=billing_day,
                        plan_since=NOW - timedelta(days=plan_days))


def test_worked_example_starter_with_4800_messages_gets_a_growth_case_that_saves_30(catalog):
    case = current_case(catalog, terms(), UsageMatrix(messages=4800, seats=3), NOW)
    assert (case.current.name, case.target.name, case.direction) == ("starter", "growth", "up")
    assert case.cost_current.total == Decimal("529.00")
    assert case.cost_target.total == Decimal("499.00")
    assert case.monthly_difference == Decimal("30.00")
    assert case.claims_saving is True
    assert case.prorated_charge_today == Decimal("105.00")  # 350 x 9 / 30, billing day 5, Nov 26
    assert [(m.metric, m.value, m.threshold) for m in case.thresholds_crossed] == [("messages", 4800, 4500)]
    assert case.unlocks.features == ("workflows", "api_access")
    message = opening_message(case, catalog)
    for figure in ("4,800", "$499.00", "$529.00", "$30.00", "$105.00"):
        assert figure in message


def test_worked_example_starter_with_4_seats_and_900_messages_gets_a_value_case(catalog):
    case = current_case(catalog, terms(), UsageMatrix(messages=900, seats=4), NOW)
    assert case.target.name == "growth"
    assert case.cost_current.total == Decimal("189.00")
    assert case.monthly_difference == Decimal("-310.00")
    assert case.claims_saving is False
    message = opening_message(case, catalog)
    assert "$310.00 more" in message
    assert not re.search(r"\b(less|save|saving|cheaper)\b", message, re.I)


def test_no_threshold_met_and_no_cheaper_plan_means_no_case(catalog):
    assert current_case(catalog, terms(), UsageMatrix(messages=400, seats=2), NOW) is None


def test_growth_account_with_low_usage_gets_an_honest_down_tier_case(catalog):
    usage = UsageMatrix(messages=2100, seats=5, integrations=1, integrations_window_max=1)
    case = current_case(catalog, terms(plan="growth", billing_day=1), usage, NOW)
    assert (case.direction, case.target.name) == ("down", "starter")
    assert case.cost_target.total == Decimal("339.00") and case.claims_saving
    assert case.prorated_charge_today == Decimal("0.00")
    assert case.effective.isoformat() == "2026-12-01"
    assert case.gives_up == ("workflows", "api_access")
    assert "Dec 1" in opening_message(case, catalog)


def test_down_tier_waits_until_the_account_has_a_full_window_on_its_plan(catalog):
    usage = UsageMatrix(messages=2100, seats=5, integrations=1, integrations_window_max=1)
    assert current_case(catalog, terms(plan="growth", plan_days=5), usage, NOW) is None


def test_today_is_the_date_in_the_accounts_time_zone(catalog):
    # 2026-12-05 03:00 UTC is still Dec 4 in Chicago: the last day of the period, 1 day remains.
    now = datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)
    case = current_case(catalog, terms(), UsageMatrix(messages=4800, seats=3), now)
    assert (case.today.isoformat(), case.proration.days_remaining) == ("2026-12-04", 1)
    assert case.prorated_charge_today == Decimal("11.67")
    tokyo = current_case(catalog, terms(tz="Asia/Tokyo"), UsageMatrix(messages=4800, seats=3), now)
    assert (tokyo.today.isoformat(), tokyo.proration.days_remaining) == ("2026-12-05", 31)


def test_the_smallest_step_that_serves_is_the_target(catalog):
    case = current_case(catalog, terms(), UsageMatrix(messages=40000, seats=3), NOW)
    assert case.target.name == "growth"


@pytest.mark.parametrize("vertical", VERTICALS)
def test_every_vertical_states_the_same_figures_in_its_own_words(catalog, vertical):
    usage = UsageMatrix(messages=4800, seats=3)
    generic = opening_message(current_case(catalog, terms(), usage, NOW), catalog)
    message = opening_message(current_case(catalog, terms(vertical=vertical), usage, NOW), catalog)
    assert re.findall(r"\$[\d,.]+|\d[\d,]*", message) == re.findall(r"\$[\d,.]+|\d[\d,]*", generic)
    assert catalog.verticals[vertical].messages in message


@pytest.mark.parametrize("vertical, words", [
    ("healthcare", "patient messages"), ("real_estate", "agent seats"),
    ("salon", "stylist chairs"), ("sales", "rep seats"), ("it_msp", "technician seats"),
])
def test_seat_case_uses_the_verticals_word_for_a_seat(catalog, vertical, words):
    usage = UsageMatrix(messages=4800 if vertical == "healthcare" else 900, seats=4)
    message = opening_message(current_case(catalog, terms(vertical=vertical), usage, NOW), catalog)
    assert words in message


def test_healthcare_scale_case_names_the_baa(catalog):
    usage = UsageMatrix(messages=31000, seats=8)
    case = current_case(catalog, terms(plan="growth", vertical="healthcare"), usage, NOW)
    assert "BAA" in opening_message(case, catalog)


@pytest.mark.parametrize("usage", [
    UsageMatrix(messages=4800, seats=3), UsageMatrix(messages=900, seats=4),
    UsageMatrix(messages=900, seats=2, integrations=2),
    UsageMatrix(messages=900, seats=2, features={"workflows": 3}),
])
@pytest.mark.parametrize("vertical", VERTICALS)
def test_opening_fits_two_gsm7_sms_segments(catalog, usage, vertical):
    message = opening_message(current_case(catalog, terms(vertical=vertical), usage, NOW), catalog)
    assert message.isascii() and len(message) <= 306, (len(message), message)
