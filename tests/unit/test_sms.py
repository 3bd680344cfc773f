"""SMS segments, and every opening the service writes fits in two of them (§7)."""

from datetime import datetime, timedelta, timezone

import pytest

from core.case import AccountTerms, build_case, current_case
from core.conversation import confirmation_step, help_message, stop_message, Business
from core.framing import opening_message
from core.sms import is_gsm7, segments
from core.usage import UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
VERTICALS = ["generic", "healthcare", "real_estate", "salon", "sales", "it_msp"]


@pytest.mark.parametrize("text, count", [
    ("", 1), ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("€" * 80, 1), ("€" * 81, 2),                 # extension characters cost two septets
    ("é" * 160, 1),                               # in the GSM-7 alphabet
    ("’" * 70, 1), ("’" * 71, 2),                 # a curly quote forces UCS-2
    ("👍" * 35, 1), ("👍" * 36, 2),               # an emoji is two UTF-16 units
])
def test_segments_follow_gsm7_and_ucs2_rules(text, count):
    assert segments(text) == count


USAGES = [UsageMatrix(messages=4800, seats=3), UsageMatrix(messages=900, seats=4),
          UsageMatrix(messages=900, seats=2, integrations=2),
          UsageMatrix(messages=900, seats=2, features={"workflows": 3}),
          UsageMatrix(messages=999_999, seats=3)]


# A phone opening names the business first: a long name must still fit.
SENDERS = [None, "Beacon", "Northwind Patient Messaging"]


@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize("vertical", VERTICALS)
@pytest.mark.parametrize("usage", USAGES)
def test_every_up_tier_opening_is_gsm7_in_at_most_two_segments(catalog, vertical, usage, sender):
    terms = AccountTerms("starter", vertical, "America/Chicago", 5, NOW - timedelta(days=400))
    case = current_case(catalog, terms, usage, NOW)
    text = opening_message(case, catalog, sender)
    assert is_gsm7(text) and segments(text) <= 2, (segments(text), text)
    assert segments(confirmation_step(case)) <= 2
    if sender:  # who is writing, how to answer, how to stop
        assert text.startswith(f"{sender}: ") and "Reply YES" in text and "STOP to opt out" in text


@pytest.mark.parametrize("vertical", VERTICALS)
@pytest.mark.parametrize("plan, target", [("growth", "starter"), ("scale", "growth"),
                                          ("growth", "scale")])
@pytest.mark.parametrize("sender", SENDERS)
def test_down_tier_and_growth_to_scale_openings_fit_too(catalog, vertical, plan, target, sender):
    terms = AccountTerms(plan, vertical, "America/Chicago", 5, NOW - timedelta(days=400))
    usage = UsageMatrix(messages=31000 if target == "scale" else 2100, seats=8)
    case = build_case(catalog, terms, usage, catalog.plans[target],
                      [("messages", usage.messages, 30000)] if target == "scale" else [], NOW)
    text = opening_message(case, catalog, sender)
    assert is_gsm7(text) and segments(text) <= 2, (segments(text), text)
    if sender:
        assert text.startswith(f"{sender}: ") and "STOP to opt out" in text
    step = confirmation_step(case, catalog)
    assert is_gsm7(step) and segments(step) <= 2, step
    if case.direction == "down" and case.gives_up:  # what the lower plan lacks, before CONFIRM
        assert "does not include" in step


def test_carrier_replies_fit_one_or_two_segments():
    biz = Business("Acme Billing", "help@acme.example")
    assert segments(help_message(biz)) <= 2 and segments(stop_message(biz)) == 1
