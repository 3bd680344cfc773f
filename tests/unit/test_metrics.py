"""The program's figures (core.metrics) on hand-built opportunities with exact expected values,
and the experiment's statistics (core.experiment) against textbook values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from core.catalog import parse_catalog
from core.experiment import means_lift, proportions_lift, sample_ratio
from core.guardrails import GuardrailPolicy, in_control
from core.metrics import CONTROL, TREATMENT, breakdown, opportunities, report
from core.ports import OpportunityFacts, PlanMove

CATALOG = parse_catalog((Path(__file__).resolve().parents[2] / "core" / "catalog.toml")
                        .read_text(encoding="utf-8"))
POLICY = GuardrailPolicy(control_share=Decimal("0.5"), control_salt="metrics-test")
T0 = datetime(2026, 9, 1, 15, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 31, 12, 0, tzinfo=timezone.utc)


def named(arm: str, n: int) -> list[str]:
    """The first `n` account ids the policy puts in `arm`."""
    out, i = [], 0
    while len(out) < n:
        name = f"acct-{i}"
        if in_control(name, POLICY.control_share, POLICY.control_salt) == (arm == CONTROL):
            out.append(name)
        i += 1
    return out


def facts(account: str, *, vertical="generic", metric="messages", step=("starter", "growth"),
          waited: float | None = None, state=None, decline=None, channel="sms",
          moves=(), detected=T0) -> OpportunityFacts:
    crossed = detected - timedelta(minutes=5)
    return OpportunityFacts(
        account=account, vertical=vertical, metric=metric, from_plan=step[0], to_plan=step[1],
        crossed_at=crossed, detected_at=detected, outcome="prompted", reason=None,
        thread_state=state, decline_reason=decline,
        opening_channel=channel if waited is not None else None,
        opening_sent_at=crossed + timedelta(seconds=waited) if waited is not None else None,
        plan_moves=tuple(PlanMove(detected + timedelta(days=d), a, b) for d, a, b in moves))


def scenario() -> list[OpportunityFacts]:
    t1, t2, t3, t4 = named(TREATMENT, 4)
    c1, c2, c3 = named(CONTROL, 3)
    return [
        # upgraded in the chat on day 1 (growth: +350 a month), kept it past 90 days
        facts(t1, waited=60, state="upgraded", moves=[(1, "starter", "growth")]),
        # said no: the price
        facts(t2, waited=300, state="declined", decline="price", vertical="salon"),
        # the operator moved it on day 10 (any route counts), then down again on day 50
        facts(t3, waited=7200, state="offered", channel="whatsapp",
              moves=[(10, "starter", "growth"), (50, "growth", "starter")]),
        # deferred and never sent; upgraded on day 40: outside the conversion window
        facts(t4, waited=None, state="open", moves=[(40, "starter", "growth")]),
        # control: upgraded on its own on day 5 to scale (+1,350)
        facts(c1, waited=None, moves=[(5, "starter", "scale")]),
        facts(c2, waited=None),
        # a move down is no conversion
        facts(c3, waited=None, step=("growth", "scale"), moves=[(3, "growth", "starter")]),
    ]


def test_the_figures_of_a_hand_built_window_are_exact():
    opps = opportunities(scenario(), CATALOG, POLICY)
    r = report(opps, CATALOG, POLICY, T0 - timedelta(days=1), T0 + timedelta(days=1), NOW)
    assert r.opportunities == {TREATMENT: 4, CONTROL: 3}
    assert r.converted == {TREATMENT: 2, CONTROL: 1}
    assert r.cross_to_upgrade_rate == {TREATMENT: 0.5, CONTROL: 1 / 3}
    # openings sent: 60 s, 300 s, 7,200 s (nearest rank)
    t = r.time_to_prompt
    assert (t.count, t.p50, t.p90, t.p99) == (3, 300.0, 7200.0, 7200.0)
    assert t.share_under_1h == 2 / 3
    assert (r.prompted_threads, r.prompt_to_conversion_rate) == (3, 1 / 3)
    # 12 × (499 − 149) for each of the treatment's two conversions
    assert r.mean_arr_uplift == Decimal("4200.00")
    assert r.decline_reasons == {"price": 1, "timing": 0, "not_needed": 0, "leaving": 0,
                                 "other": 0}
    # NRR over conversions at least 90 days old: t1 (growth, still), t3 (growth, back to
    # starter by day 100), c1 (scale): (499 + 149 + 1499) / (149 + 149 + 149)
    assert r.nrr_upgrades == 3
    assert r.nrr_90d == float((Decimal(499 + 149 + 1499) / Decimal(447)).quantize(
        Decimal("0.0001")))
    assert r.lift.absolute == pytest.approx(0.5 - 1 / 3)
    assert r.lift.ci95 is None and "too few opportunities" in r.lift.note
    assert r.srm.p_value == pytest.approx(0.7055, abs=1e-4)  # chi2(1) of 4 vs 3.5 expected


def test_a_breakdown_splits_the_same_opportunities():
    opps = opportunities(scenario(), CATALOG, POLICY)
    by_channel = breakdown(opps, "channel", lambda rows: report(
        rows, CATALOG, POLICY, T0, T0 + timedelta(days=1), NOW))
    assert sorted(by_channel) == ["none", "sms", "whatsapp"]
    assert sum(g.opportunities[TREATMENT] + g.opportunities[CONTROL]
               for g in by_channel.values()) == 7
    by_step = breakdown(opps, "step", lambda rows: report(
        rows, CATALOG, POLICY, T0, T0 + timedelta(days=1), NOW))
    assert by_step["growth->scale"].opportunities == {TREATMENT: 0, CONTROL: 1}
    with pytest.raises(ValueError):
        breakdown(opps, "colour", lambda rows: None)


def test_newcombes_interval_is_the_textbook_one():
    """Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 − 48/80:
    difference 0.2, method 10 interval 0.0524 to 0.3339."""
    lift = proportions_lift(56, 70, 48, 80)
    assert lift.absolute == pytest.approx(0.2)
    assert lift.ci95 == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert lift.relative == pytest.approx(0.2 / 0.6)
    assert 0 < lift.p_value < 0.05


def test_small_samples_say_so_instead_of_an_interval():
    lift = proportions_lift(3, 6, 1, 4)
    assert lift.ci95 is None and lift.p_value is None and "too few" in lift.note
    assert proportions_lift(2, 40, 1, 40).note.startswith("too few conversions")
    assert proportions_lift(0, 0, 1, 4).absolute is None


def test_the_sample_ratio_check_flags_a_broken_split():
    assert sample_ratio(900, 100, Decimal("0.1")).p_value == pytest.approx(1.0)
    assert not sample_ratio(900, 100, Decimal("0.1")).flag
    broken = sample_ratio(800, 200, Decimal("0.1"))  # chi2 = 111.1 on 1 df
    assert broken.flag and broken.p_value < 1e-20


def test_welchs_interval_for_arr_per_opportunity():
    treatment = [Decimal(4200)] * 20 + [Decimal(0)] * 30
    control = [Decimal(4200)] * 10 + [Decimal(0)] * 40
    lift = means_lift(treatment, control, 20, 10)
    assert lift.absolute == pytest.approx(1680.0 - 840.0)
    low, high = lift.ci95
    assert low < 840 < high and 0 < lift.p_value < 0.05
