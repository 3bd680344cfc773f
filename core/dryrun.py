"""A catalog's thresholds tried on past usage before they are used: how many prompts they would
have fired over the last days, next to the current catalog's (`flask --app app thresholds
dry-run`). Nothing is sent or written.

The replay is by UTC day. At the end of each day the usage matrix is rebuilt as the detector
would see it then — counters (messages, feature hits) summed over the 30 whole UTC days ending
that day, gauges (seats, integrations) as their last reading so far, the integrations peak over
the same 30 days — and the thresholds of the plan the account was on that day (its plan
history) are compared with it, exactly as `core.thresholds` does (`met_thresholds`,
`down_tier_fit`). A threshold crosses on the first day it is met after a day it was not (the
detector is edge-triggered); a plan change re-arms them all. The day before the window is the
starting point: what is met then crossed before the window and does not count.

What is counted is the opportunity, not the signal: an account counts once per plan step
(starter->growth, growth->scale, growth->starter down-tier) however many thresholds of that step
it crossed, and however often. The guardrails are not replayed (cooldown, caps, quiet hours
depend on conversations that would have gone otherwise), except the control cohort, which is a
pure function of the account: its accounts are counted, and said apart, since they would have
been logged, not prompted.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType

from core.catalog import Catalog
from core.guardrails import in_control
from core.ports import DailyUsage, UnitOfWork, UsageHistory
from core.thresholds import down_key, down_tier_fit, met_thresholds
from core.usage import UsageMatrix

WINDOW_DAYS = 30  # the usage matrix's window (core.usage.WINDOW), in whole days
BATCH = 500  # accounts read per transaction: memory stays bounded whatever the database holds


@dataclass(frozen=True, order=True)
class Step:
    """A plan step a crossing leads to: up-tier (a threshold) or down-tier (the rule)."""

    from_plan: str
    to_plan: str
    direction: str  # "up" or "down"

    @property
    def label(self) -> str:
        arrow = f"{self.from_plan}\u2192{self.to_plan}"
        return arrow if self.direction == "up" else f"{arrow} (down-tier)"


@dataclass
class Count:
    """Accounts crossing into a step (or within a vertical): under each catalog, and how many of
    those are in the control cohort."""

    current: int = 0
    new: int = 0
    control_current: int = 0
    control_new: int = 0

    @property
    def difference(self) -> int:
        return self.new - self.current


@dataclass
class DryRun:
    """What a dry run found: counts by plan step and by vertical (account-steps), and totals."""

    first_day: date
    last_day: date
    accounts: int = 0  # accounts replayed
    by_step: dict[Step, Count] = field(default_factory=lambda: defaultdict(Count))
    by_vertical: dict[str, Count] = field(default_factory=lambda: defaultdict(Count))
    total: Count = field(default_factory=Count)  # account-steps (the sum of the step rows)
    accounts_crossing: Count = field(default_factory=Count)  # accounts with at least one
    # Accounts on a plan (on some day) that a catalog does not have: those days are not replayed.
    unknown_plan_current: int = 0
    unknown_plan_new: int = 0


def day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)


def window(days: int, now: datetime) -> tuple[date, date]:
    """The days replayed: the last `days` UTC days, today (the day of `now`) the last of them."""
    last = now.astimezone(timezone.utc).date()
    return last - timedelta(days=days - 1), last


def data_span(first_day: date, last_day: date) -> tuple[date, date]:
    """The days of usage a replay of first_day..last_day reads: from the window of the day
    before the first (the starting point)."""
    return first_day - timedelta(days=WINDOW_DAYS), last_day


def count_accounts(uow: UnitOfWork) -> int:
    with uow:
        return uow.accounts.count()


def dry_run(uows: Callable[[], UnitOfWork], current: Catalog, new: Catalog,
            control_share: Decimal, control_salt: str, days: int, now: datetime, *, batch: int = BATCH,
            progress: Callable[[int], None] | None = None) -> DryRun:
    """Replay every account's usage over the last `days` days under both catalogs (see the
    module's docstring). Accounts are read `batch` at a time, each batch in its own read-only
    transaction; `progress` hears how many accounts each batch held."""
    first_day, last_day = window(days, now)
    span_start, span_end = data_span(first_day, last_day)
    result = DryRun(first_day, last_day)
    after = 0
    while True:
        uow = uows()
        with uow:
            histories = uow.usage.histories(after, batch, span_start, span_end)
        if not histories:
            break
        for history in histories:
            control = in_control(history.external_id, control_share, control_salt)
            _add(result, history, control,
                 replay(history, (current, new), first_day, last_day, now))
        result.accounts += len(histories)
        after = histories[-1].account_id
        if progress is not None:
            progress(len(histories))
        if len(histories) < batch:
            break
    return result


@dataclass(frozen=True)
class Replayed:
    """One account's steps crossed in the window, per catalog, and whether a catalog lacked
    a plan it was on."""

    steps: tuple[frozenset[Step], ...]
    unknown_plan: tuple[bool, ...]


def _add(result: DryRun, history: UsageHistory, control: bool, replayed: Replayed) -> None:
    (now_steps, new_steps), (now_unknown, new_unknown) = replayed.steps, replayed.unknown_plan
    result.unknown_plan_current += now_unknown
    result.unknown_plan_new += new_unknown
    for steps, which in ((now_steps, "current"), (new_steps, "new")):
        for step in steps:
            for count in (result.by_step[step], result.total, result.by_vertical[history.vertical]):
                _bump(count, which, control)
        if steps:
            _bump(result.accounts_crossing, which, control)


def _bump(count: Count, which: str, control: bool) -> None:
    setattr(count, which, getattr(count, which) + 1)
    if control:
        setattr(count, f"control_{which}", getattr(count, f"control_{which}") + 1)


# --- the replay of one account ------------------------------------------------------------------

def replay(history: UsageHistory, catalogs: Sequence[Catalog], first_day: date, last_day: date,
           now: datetime) -> Replayed:
    """The steps each catalog's thresholds (and down-tier rule) cross for this account on
    first_day..last_day, the day before first_day being the starting point."""
    days = [first_day - timedelta(days=1) + timedelta(days=i)
            for i in range((last_day - first_day).days + 2)]
    matrices = list(_matrices(history.days, days))
    plans = [_plan_on(history, day, now) for day in days]
    steps, unknown = [], []
    for catalog in catalogs:
        crossed, missing = _crossings(catalog, matrices, plans, days, now)
        steps.append(crossed)
        unknown.append(missing)
    return Replayed(tuple(steps), tuple(unknown))


def _crossings(catalog: Catalog, matrices: Sequence[UsageMatrix],
               plans: Sequence[tuple[str, datetime]], days: Sequence[date],
               now: datetime) -> tuple[frozenset[Step], bool]:
    """The steps whose thresholds cross on days[1:], days[0] being the starting point, and
    whether the catalog lacked a plan the account was on (those days are skipped)."""
    crossed: set[Step] = set()
    above: dict[str, Step] = {}
    previous: str | None = None
    missing = False
    for i, (day, matrix, (plan_name, since)) in enumerate(zip(days, matrices, plans)):
        plan = catalog.plans.get(plan_name)
        if plan is None:
            missing, above, previous = True, {}, None
            continue
        if plan_name != previous:
            above = {}  # a plan change: the new plan's thresholds start armed
        met = {t.key: Step(t.from_plan, t.to_plan, "up")
               for t, _, _ in met_thresholds(catalog, plan, matrix)}
        lower = down_tier_fit(catalog, plan, matrix, since, min(day_end(day), now))
        if lower is not None:
            met[down_key(plan, lower)] = Step(plan.name, lower.name, "down")
        if i > 0:
            crossed.update(step for key, step in met.items() if key not in above)
        above, previous = met, plan_name
    return frozenset(crossed), missing


def _plan_on(history: UsageHistory, day: date, now: datetime) -> tuple[str, datetime]:
    """The plan the account was on at the end of `day`, and since when (for the down-tier
    rule's days on the plan). Before its history begins: the first plan the history names (an
    account created with past usage)."""
    end = min(day_end(day), now)
    if not history.plans:
        return history.plan, history.plan_since
    i = bisect.bisect_right(history.plans, end, key=lambda p: p.at) - 1
    if i < 0:
        first = history.plans[0]
        return first.from_plan or first.to_plan, first.at
    entry = history.plans[i]
    if i == len(history.plans) - 1 and entry.to_plan == history.plan:
        return history.plan, history.plan_since  # as the detector reads it (PUT plan_since)
    return entry.to_plan, entry.at


def _matrices(rows: Iterable[DailyUsage], days: Sequence[date]) -> Iterable[UsageMatrix]:
    """The usage matrix at the end of each of `days` (consecutive), from the daily rollups."""
    counters: dict[str, dict[date, int]] = defaultdict(dict)
    readings: dict[str, list[tuple[date, int, int]]] = defaultdict(list)  # day, max, last
    for r in rows:
        if r.metric in ("seats", "integrations"):
            readings[r.metric].append((r.day, r.max_quantity, r.last_quantity))
        else:
            counters[r.metric][r.day] = counters[r.metric].get(r.day, 0) + r.total
    for series in readings.values():
        series.sort()
    sums: dict[str, int] = defaultdict(int)
    start = days[0] - timedelta(days=WINDOW_DAYS - 1)
    for metric, totals in counters.items():  # the window of the first day
        sums[metric] = sum(q for d, q in totals.items() if start <= d <= days[0])
    for i, day in enumerate(days):
        if i > 0:
            leaving = day - timedelta(days=WINDOW_DAYS)
            for metric, totals in counters.items():
                sums[metric] += totals.get(day, 0) - totals.get(leaving, 0)
        opens = day - timedelta(days=WINDOW_DAYS - 1)
        seats = _last(readings.get("seats", []), day)
        integrations = readings.get("integrations", [])
        features = {m[len("feature:"):]: v for m, v in sums.items()
                    if m.startswith("feature:") and v}
        yield UsageMatrix(
            messages=sums.get("messages", 0),
            seats=seats,
            integrations=_last(integrations, day),
            integrations_window_max=max((peak for d, peak, _ in integrations
                                         if opens <= d <= day), default=0),
            integrations_carried=_last(integrations, opens - timedelta(days=1)),
            features=MappingProxyType(features),
        )


def _last(series: Sequence[tuple[date, int, int]], day: date) -> int:
    """The last reading on or before `day` (0 when there is none)."""
    i = bisect.bisect_right(series, day, key=lambda r: r[0]) - 1
    return series[i][2] if i >= 0 else 0
