"""The catalog file: the shipped defaults (§3) and clear errors for bad edits."""

from decimal import Decimal

import pytest

from app import DEFAULT_CATALOG
from core.catalog import parse_catalog
from core.errors import CatalogError, DomainError

DEFAULT_TEXT = DEFAULT_CATALOG.read_text()


def test_default_catalog_holds_the_three_plans_of_the_spec(catalog):
    assert list(catalog.plans) == ["starter", "growth", "scale"]
    starter, growth, scale = catalog.plans.values()
    assert (starter.base_price, growth.base_price, scale.base_price) == \
        (Decimal("149.00"), Decimal("499.00"), Decimal("1499.00"))
    assert (starter.included_messages, growth.included_messages, scale.included_messages) == \
        (1000, 10000, 50000)
    assert (starter.extra_message_price, growth.extra_message_price, scale.extra_message_price) == \
        (Decimal("0.10"), Decimal("0.05"), Decimal("0.02"))
    assert (starter.included_seats, growth.included_seats, scale.included_seats) == (3, 10, 50)
    assert (starter.extra_seat_price, growth.extra_seat_price, scale.extra_seat_price) == \
        (Decimal("40.00"), Decimal("35.00"), Decimal("30.00"))
    assert (starter.max_integrations, growth.max_integrations, scale.max_integrations) == (2, 10, None)
    assert growth.features - starter.features == {"workflows", "api_access"}
    assert scale.features - growth.features == {"sso", "hipaa_baa", "audit_export"}


def test_default_thresholds_are_the_spec_thresholds(catalog):
    got = {(t.from_plan, t.to_plan, t.metric, t.at) for t in catalog.thresholds}
    assert got == {
        ("starter", "growth", "messages", 4500), ("starter", "growth", "seats", 4),
        ("starter", "growth", "integrations", 2), ("starter", "growth", "feature:*", 3),
        ("growth", "scale", "messages", 30000), ("growth", "scale", "seats", 11),
        ("growth", "scale", "feature:*", 3),
    }


def test_default_catalog_frames_six_verticals_and_a_generic_default(catalog):
    assert set(catalog.verticals) == {"generic", "healthcare", "real_estate", "salon", "sales", "it_msp"}
    assert catalog.verticals["healthcare"].hipaa is True


def test_prices_are_read_as_exact_decimals_not_floats(catalog):
    assert isinstance(catalog.plans["starter"].extra_message_price, Decimal)
    assert catalog.plans["starter"].extra_message_price * 3 == Decimal("0.30")


def test_unknown_plan_is_a_domain_error_naming_the_known_plans(catalog):
    with pytest.raises(DomainError) as err:
        catalog.plan("enterprise")
    assert err.value.code == "unknown_plan" and "starter" in err.value.message


@pytest.mark.parametrize("edit, key, expected", [
    (("base_price = 149.00", "base_price = -1"), "plans.starter.base_price", "amount in dollars >= 0"),
    (("base_price = 149.00", 'base_price = "lots"'), "plans.starter.base_price", "amount in dollars"),
    (("base_price = 149.00", "base_price = 149.005"), "plans.starter.base_price", "at most 2 decimals"),
    (("included_seats = 3", "included_seats = 3.5"), "plans.starter.included_seats", "whole number"),
    (('max_integrations = "unlimited"', 'max_integrations = "lots"'), "plans.scale.max_integrations", "whole number"),
    (('features = ["core"]', 'features = ["core", "teleport"]'), "plans.starter.features", "feature names"),
    (("rank = 2", "rank = 1"), "plans.*.rank", "a different rank"),
    (('metric = "seats"\nat = 4', 'metric = "vibes"\nat = 4'), "thresholds[1].metric", "messages, seats"),
    (('metric = "seats"\nat = 4', 'metric = "seats"\nat = 0'), "thresholds[1].at", "whole number >= 1"),
    (('from = "growth"\nto = "scale"\nmetric = "seats"', 'from = "scale"\nto = "growth"\nmetric = "seats"'),
     "thresholds[5].to", "a plan above"),
    (('to = "growth"\nmetric = "messages"', 'to = "platinum"\nmetric = "messages"'), "thresholds[0].to", "a plan name"),
    (("min_days_on_plan = 30", "min_days_on_plan = -3"), "downtier.min_days_on_plan", "whole number"),
    (('seats = "stylist chairs"', 'seats = ""'), "verticals.salon.seats", "non-empty string"),
    (("[verticals.generic]", "[verticals.general]"), "verticals.generic", "a table"),
    (("included_seats = 3", "included_seat = 3"), "plans.starter.included_seat", "no such key"),
])
def test_a_bad_catalog_edit_names_the_file_the_key_and_what_was_expected(edit, key, expected):
    old, new = edit
    assert old in DEFAULT_TEXT, old
    text = DEFAULT_TEXT.replace(old, new, 1)
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "/etc/upgrade-chat/catalog.toml")
    message = str(err.value)
    assert message.startswith("/etc/upgrade-chat/catalog.toml: key ")
    assert err.value.key == key, message
    assert expected in message


def test_a_file_that_is_not_toml_says_so_with_the_file_name():
    with pytest.raises(CatalogError) as err:
        parse_catalog("[plans\nstarter = ", "mine.toml")
    assert "mine.toml" in str(err.value) and "valid TOML" in str(err.value)


def test_an_operator_can_change_a_price_and_the_catalog_uses_it():
    text = DEFAULT_TEXT.replace("base_price = 499.00", 'base_price = "549.00"', 1)
    assert parse_catalog(text).plans["growth"].base_price == Decimal("549.00")
