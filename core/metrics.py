"""Does it pay? The program's figures over a window, from the facts storage hands over.

Definitions (one window `[start, end)` over the crossing's detection time; a conversion window
of `conversion_days`, 30 by default):

- **Opportunity**: an account's first up-tier crossing in the window. Its arm is `control` when
  the account is in the control cohort (core.guardrails.in_control with the configured share and
  salt), else `treatment` — whatever the guardrails then decided (prompted, deferred, suppressed
  for health, cap or cooldown all stay in treatment: intention to treat).
- **Converted**: the account moved to a plan with a higher base price, by any route (chat, the
  operator's PUT, the host's billing), within the conversion window after the crossing was
  detected — read from the plan history, never from threads.
- **Cross-to-upgrade rate** = converted ÷ opportunities, per arm (target above 25%).
- **Time from cross to prompt** = opening sent − the crossing event's time, over treatment
  openings actually sent: p50, p90, p99 (nearest rank) and the share under an hour.
- **Prompt-to-conversion rate** = threads whose opening was sent and that reached `upgraded` ÷
  threads whose opening was sent (treatment).
- **Mean ARR uplift per converted account** = mean of 12 × (new base price − old base price)
  over the treatment's conversions, exact, half-up to cents.
- **Decline reasons** = the opportunities' threads that were declined, by reason.
- **NRR 90 days after upgrade** = Σ base price of the plan in effect 90 days after each upgrade
  ÷ Σ base price of the plan before it, over the conversions at least 90 days old (None when
  there are none).
- **Lift**, its interval and p-value, for the rate and for ARR per opportunity (12 × uplift for a
  conversion, 0 otherwise), and the **sample-ratio check**: core.experiment.

Every figure can be broken down by vertical, opening channel, crossing metric or plan step
(`breakdown`). Pure: the facts come in, `now` is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from core.catalog import Catalog
from core.experiment import Lift, SampleRatio, means_lift, proportions_lift, sample_ratio
from core.guardrails import GuardrailPolicy, in_control
from core.intents import DeclineReason
from core.errors import DomainError
from core.ports import OpportunityFacts, PlanMove, UnitOfWork

TREATMENT, CONTROL = "treatment", "control"
ARMS = (TREATMENT, CONTROL)
CONVERSION_DAYS = 30
NRR_DAYS = 90
TARGET_RATE = 0.25  # the cross-to-upgrade rate the program aims above
HOUR = 3600
BY = ("vertical", "channel", "metric", "step")
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Opportunity:
    facts: OpportunityFacts
    arm: str
    conversion: PlanMove | None  # the first move up within the conversion window
    uplift: Decimal  # new base price − old, monthly; 0 when not converted

    @property
    def converted(self) -> bool:
        return self.conversion is not None

    @property
    def arr(self) -> Decimal:
        """ARR uplift: 12 × the monthly uplift (0 when not converted)."""
        return 12 * self.uplift

    def group(self, by: str) -> str:
        f = self.facts
        return {"vertical": f.vertical, "channel": f.opening_channel or "none",
                "metric": f.metric, "step": f"{f.from_plan}->{f.to_plan}"}[by]


@dataclass(frozen=True)
class TimeToPrompt:
    count: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    share_under_1h: float | None = None


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    conversion_days: int
    opportunities: dict[str, int]
    converted: dict[str, int]
    cross_to_upgrade_rate: dict[str, float | None]
    time_to_prompt: TimeToPrompt
    prompt_to_conversion_rate: float | None
    prompted_threads: int
    mean_arr_uplift: Decimal | None
    decline_reasons: dict[str, int]
    nrr_90d: float | None
    nrr_upgrades: int
    lift: Lift
    arr_lift: Lift
    srm: SampleRatio
    target_rate: float = TARGET_RATE
    rows: tuple[Opportunity, ...] = field(default=(), repr=False)


def opportunities(facts: Iterable[OpportunityFacts], catalog: Catalog, policy: GuardrailPolicy,
                  conversion_days: int = CONVERSION_DAYS) -> list[Opportunity]:
    """Each opportunity with its arm and its conversion, if any."""
    window = timedelta(days=conversion_days)
    out = []
    for f in facts:
        arm = CONTROL if in_control(f.account, policy.control_share, policy.control_salt) \
            else TREATMENT
        conversion = next((m for m in sorted(f.plan_moves, key=lambda m: m.at)
                           if f.detected_at <= m.at <= f.detected_at + window
                           and _up(catalog, m)), None)
        uplift = (_price(catalog, conversion.to_plan) - _price(catalog, conversion.from_plan)) \
            if conversion is not None and conversion.from_plan is not None else Decimal(0)
        out.append(Opportunity(f, arm, conversion, uplift))
    return out


def report(opps: Sequence[Opportunity], catalog: Catalog, policy: GuardrailPolicy,
           start: datetime, end: datetime, now: datetime,
           conversion_days: int = CONVERSION_DAYS) -> Report:
    """The figures over `opps` (all of a window's, or one group's)."""
    arms = {arm: [o for o in opps if o.arm == arm] for arm in ARMS}
    counts = {arm: len(rows) for arm, rows in arms.items()}
    converted = {arm: sum(o.converted for o in rows) for arm, rows in arms.items()}
    rates = {arm: (converted[arm] / counts[arm] if counts[arm] else None) for arm in ARMS}
    treated = arms[TREATMENT]
    sent = [o for o in treated if o.facts.opening_sent_at is not None]
    waits = sorted(max(0.0, (o.facts.opening_sent_at - o.facts.crossed_at).total_seconds())
                   for o in sent if o.facts.opening_sent_at is not None)
    upgraded = sum(1 for o in sent if o.facts.thread_state == "upgraded")
    uplifts = [o.arr for o in treated if o.converted]
    declines = {str(r): 0 for r in DeclineReason}
    for o in opps:
        if o.facts.decline_reason in declines and o.facts.thread_state in ("declined",
                                                                           "escalated"):
            declines[o.facts.decline_reason] += 1
    nrr, nrr_count = _nrr(catalog, [o for o in opps if o.converted], now)
    return Report(
        start=start, end=end, conversion_days=conversion_days, opportunities=counts,
        converted=converted, cross_to_upgrade_rate=rates, time_to_prompt=_waits(waits),
        prompt_to_conversion_rate=upgraded / len(sent) if sent else None,
        prompted_threads=len(sent),
        mean_arr_uplift=(sum(uplifts, Decimal(0)) / len(uplifts)).quantize(
            CENTS, ROUND_HALF_UP) if uplifts else None,
        decline_reasons=declines, nrr_90d=nrr, nrr_upgrades=nrr_count,
        lift=proportions_lift(converted[TREATMENT], counts[TREATMENT], converted[CONTROL],
                              counts[CONTROL]),
        arr_lift=means_lift([o.arr for o in treated], [o.arr for o in arms[CONTROL]],
                            converted[TREATMENT], converted[CONTROL]),
        srm=sample_ratio(counts[TREATMENT], counts[CONTROL], policy.control_share),
        rows=tuple(opps))


def breakdown(opps: Sequence[Opportunity], by: str,
              make: Callable[[Sequence[Opportunity]], Report]) -> dict[str, Report]:
    """The report per group of `by` (vertical, channel, metric, step), groups in name order."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    groups: dict[str, list[Opportunity]] = {}
    for o in opps:
        groups.setdefault(o.group(by), []).append(o)
    return {name: make(rows) for name, rows in sorted(groups.items())}


def _price(catalog: Catalog, plan: str | None) -> Decimal:
    if plan is None:
        return Decimal(0)
    found = catalog.plans.get(plan)  # a plan since removed from the catalog: no price known
    return found.base_price if found is not None else Decimal(0)


def _up(catalog: Catalog, move: PlanMove) -> bool:
    return move.from_plan is not None and \
        _price(catalog, move.to_plan) > _price(catalog, move.from_plan)


def _nearest_rank(values: Sequence[float], percent: int) -> float:
    return values[max(0, math.ceil(percent / 100 * len(values)) - 1)]


def _waits(waits: Sequence[float]) -> TimeToPrompt:
    if not waits:
        return TimeToPrompt(0)
    return TimeToPrompt(len(waits), _nearest_rank(waits, 50), _nearest_rank(waits, 90),
                        _nearest_rank(waits, 99),
                        sum(1 for w in waits if w < HOUR) / len(waits))


def _nrr(catalog: Catalog, converted: Sequence[Opportunity],
         now: datetime) -> tuple[float | None, int]:
    before = after = Decimal(0)
    count = 0
    for o in converted:
        move = o.conversion
        if move is None or move.at + timedelta(days=NRR_DAYS) > now:
            continue
        then = move.at + timedelta(days=NRR_DAYS)
        in_effect = move.to_plan
        for later in sorted(o.facts.plan_moves, key=lambda m: m.at):
            if move.at < later.at <= then:
                in_effect = later.to_plan
        before += _price(catalog, move.from_plan)
        after += _price(catalog, in_effect)
        count += 1
    if count == 0 or before == 0:
        return None, count
    return float((after / before).quantize(Decimal("0.0001"), ROUND_HALF_UP)), count


# --- the use case -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    """The window's report, and per group when a breakdown was asked for."""

    report: Report
    by: str | None = None
    groups: dict[str, Report] = field(default_factory=dict)


def figures(uow: UnitOfWork, catalog: Catalog, policy: GuardrailPolicy, start: datetime,
            end: datetime, now: datetime, *, by: str | None = None,
            conversion_days: int = CONVERSION_DAYS) -> Figures:
    """The program's figures over `[start, end)` (reads only)."""
    if end <= start:
        raise DomainError("the window is empty: `to` must be after `from`", code="invalid_window",
                          field="to")
    if by is not None and by not in BY:
        raise DomainError(f"by: one of {', '.join(BY)}", code="invalid_breakdown", field="by")
    with uow:
        facts = uow.metrics.opportunity_facts(start, end)
    opps = opportunities(facts, catalog, policy, conversion_days)

    def make(rows: Sequence[Opportunity]) -> Report:
        return report(rows, catalog, policy, start, end, now, conversion_days)

    return Figures(make(opps), by, breakdown(opps, by, make) if by else {})
