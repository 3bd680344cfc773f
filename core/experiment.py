"""The experiment's statistics, from kept libraries (statsmodels, scipy), never hand-rolled:

- `proportions_lift`: treatment rate − control rate, its 95% interval for a difference of two
  independent proportions (Newcombe's hybrid score interval, "method 10" of Newcombe 1998:
  statsmodels `confint_proportions_2indep(method="newcomb")`), the relative lift and a
  two-sided p-value (the score test, `test_proportions_2indep(method="score")`);
- `means_lift`: the same for a per-opportunity amount (ARR): Welch's t-test and its interval
  (scipy `ttest_ind(equal_var=False)`);
- `sample_ratio`: whether the arms' sizes fit the configured control share (χ² goodness of fit,
  scipy `chisquare`), flagged when p < 0.001.

Small samples say so: below `MIN_PER_ARM` opportunities in an arm, or `MIN_EVENTS` conversions
in either, the interval is not computed and `note` says why (a confident-looking interval on six
accounts would mislead). Pure computation: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

MIN_PER_ARM = 30  # opportunities in each arm before an interval is shown
MIN_EVENTS = 5  # conversions in each arm before an interval is shown
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Lift:
    """A difference between the arms: `absolute` (treatment − control), `ci95` (low, high),
    `relative` (absolute ÷ control), `p_value`; None where it cannot be said, with `note`."""

    absolute: float | None
    ci95: tuple[float, float] | None
    relative: float | None
    p_value: float | None
    note: str | None = None


@dataclass(frozen=True)
class SampleRatio:
    p_value: float | None
    flag: bool
    expected_control_share: float


def proportions_lift(converted_t: int, n_t: int, converted_c: int, n_c: int) -> Lift:
    """Treatment − control conversion rate, with Newcombe's 95% interval and the score test."""
    if n_t == 0 or n_c == 0:
        return Lift(None, None, None, None, "no opportunities in one arm")
    rate_t, rate_c = converted_t / n_t, converted_c / n_c
    absolute = rate_t - rate_c
    relative = absolute / rate_c if rate_c > 0 else None
    too_few = _too_few(n_t, n_c, converted_t, converted_c)
    if too_few:
        return Lift(absolute, None, relative, None, too_few)
    from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
        confint_proportions_2indep, test_proportions_2indep)

    low, high = confint_proportions_2indep(converted_t, n_t, converted_c, n_c,
                                           method="newcomb", compare="diff")
    test = test_proportions_2indep(converted_t, n_t, converted_c, n_c, method="score",
                                   compare="diff")
    return Lift(absolute, (float(low), float(high)), relative, _p(test.pvalue))


def means_lift(treatment: Sequence[Decimal], control: Sequence[Decimal],
               converted_t: int, converted_c: int) -> Lift:
    """Treatment − control mean of a per-opportunity amount, with Welch's 95% interval."""
    if not treatment or not control:
        return Lift(None, None, None, None, "no opportunities in one arm")
    mean_t = float(sum(treatment, Decimal(0)) / len(treatment))
    mean_c = float(sum(control, Decimal(0)) / len(control))
    absolute = mean_t - mean_c
    relative = absolute / mean_c if mean_c > 0 else None
    too_few = _too_few(len(treatment), len(control), converted_t, converted_c)
    if too_few:
        return Lift(absolute, None, relative, None, too_few)
    from scipy import stats  # type: ignore[import-untyped]

    a, b = [float(x) for x in treatment], [float(x) for x in control]
    if len(set(a)) < 2 and len(set(b)) < 2:  # no spread at all: no t-test
        return Lift(absolute, None, relative, None, "no variation in either arm")
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(0.95)
    return Lift(absolute, (float(interval.low), float(interval.high)), relative,
                _p(test.pvalue))


def sample_ratio(n_t: int, n_c: int, control_share: Decimal) -> SampleRatio:
    """χ² of the arms' sizes against the configured control share."""
    share = float(control_share)
    total = n_t + n_c
    if total == 0 or share <= 0 or share >= 1:
        return SampleRatio(None, False, share)
    from scipy import stats

    test = stats.chisquare([n_t, n_c], f_exp=[total * (1 - share), total * share])
    p = _p(test.pvalue)
    return SampleRatio(p, p is not None and p < SRM_ALPHA, share)


def _too_few(n_t: int, n_c: int, converted_t: int, converted_c: int) -> str | None:
    if min(n_t, n_c) < MIN_PER_ARM:
        return (f"too few opportunities to say: {n_t} in treatment, {n_c} in control (an "
                f"interval needs at least {MIN_PER_ARM} in each)")
    if min(converted_t, converted_c) < MIN_EVENTS:
        return (f"too few conversions to say: {converted_t} in treatment, {converted_c} in "
                f"control (an interval needs at least {MIN_EVENTS} in each)")
    return None


def _p(value: object) -> float | None:
    p = float(value)  # type: ignore[arg-type]
    return None if p != p else p  # NaN: no test
