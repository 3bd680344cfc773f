"""A simulation with known truth (issue 13): does the measured lift find the lift we put in?

A synthetic population of accounts uses the product over simulated days; their usage goes
through the same ingestion use case as the API (`services.record_usage`), so crossings, the
guardrails, threads and openings are the service's own. Buyers answer openings through
`handlers.handle_inbound`, as the channels do (web buyers see theirs through `handlers.poll`, as
the widget does); self-serve upgrades go through the operator's route (`services.upsert_account`
with the higher plan). At the end, `core.metrics.figures` measures the lift as the API would,
and it is set beside the truth.

**The truth.** Each account has a self-serve probability `p` (by vertical, ±0.04). When an
account first crosses an up-tier threshold (its opportunity), two draws are made from the
account's own random stream, the same whatever arm it is in:

- self-serve with probability `p`: the plan goes up through the operator's route 1–27 days
  after the crossing (inside the 30-day conversion window), in both arms;
- otherwise, with probability `X / (1 − p)`, the buyer would take the upgrade if asked.

In the control arm nobody asks, so it converts with probability `p`. In the treatment arm the
opening reaches the buyer and that buyer says yes and confirms in the chat 1–5 days after the
crossing (the real exactly-once upgrade), so it converts with probability
`p + (1 − p) · X / (1 − p) = p + X`: the lift is `X` exactly, in expectation. Everyone else
answers as real buyers do (per channel: silence, a question, a decline with its reason, a yes
then a hedge, STOP, a call request) and none of that converts.

**Guardrails.** Accounts are healthy (no health reported, no escalation), have one billing
contact, and an opportunity is the account's *first* up-tier crossing: so no earlier decline
(cooldown), prompt (cap), opt-out or escalation can hold it back, and Growth accounts use more
integrations than Starter allows, so no down-tier prompt comes first. Quiet hours defer some
openings to the next morning; the buyers answer a day or more later. What could still hold a
treatment opportunity back (a guardrail, `thread_open`, `superseded`, `plan_changed`) is counted
(`held_back`) and the truth is then the lift among those reached times their share
(`effective_true_lift`); with this population it is 0 and the truth is `X`.

Deterministic: one seed gives the same population, draws and conversations (the control cohort
is the service's own hash, with a salt per seed).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from core import handlers, metrics, services
from core.accounts import Contact
from core.guardrails import in_control
from core.services import AccountInput
from core.usage import UsageEvent

START = datetime(2027, 1, 4, tzinfo=timezone.utc)  # a Monday; any fixed day would do
NEXT_PLAN = {"starter": "growth", "growth": "scale"}

# Per vertical: (share of accounts, self-serve probability p, daily growth of messages).
VERTICALS: dict[str, tuple[float, float, float]] = {
    "healthcare": (0.20, 0.12, 0.0050),
    "real_estate": (0.15, 0.15, 0.0045),
    "salon": (0.20, 0.10, 0.0040),
    "sales": (0.15, 0.20, 0.0060),
    "it_msp": (0.15, 0.14, 0.0050),
    "generic": (0.15, 0.12, 0.0040),
}
P_SPREAD = 0.04  # each account's p is its vertical's ± this
GROWTH_SHARE = 0.15  # the rest start on Starter
# US area codes per time zone: the number's zone is the account's (quiet hours read the number).
ZONES = (("America/New_York", ("212", "646", "617")), ("America/Chicago", ("312", "214")),
         ("America/Denver", ("303", "720")), ("America/Los_Angeles", ("415", "213", "206")))
CHANNELS = {"sms": 0.45, "whatsapp": 0.30, "web": 0.25}

# How buyers answer an opening, per channel. A buyer who would take the upgrade if asked says
# yes and confirms, after a question or a call request for some; the others (and the
# self-servers, who go their own way) answer as below. Each script: (day offset, texts).
CONVERTER_PATHS = {
    "sms": {"direct": 0.60, "question_first": 0.30, "call_first": 0.10},
    "whatsapp": {"direct": 0.55, "question_first": 0.35, "call_first": 0.10},
    "web": {"direct": 0.65, "question_first": 0.35},
}
OTHER_PATHS = {
    "sms": {"silence": 0.45, "decline": 0.20, "question": 0.13, "hedge": 0.07, "stop": 0.10,
            "call": 0.05},
    "whatsapp": {"silence": 0.40, "decline": 0.22, "question": 0.18, "hedge": 0.10,
                 "stop": 0.05, "call": 0.05},
    "web": {"silence": 0.50, "decline": 0.22, "question": 0.18, "hedge": 0.10},
}
DECLINES = {"too expensive for us": 0.35, "not right now, maybe next quarter": 0.30,
            "we don't need it": 0.20, "we are moving to another provider": 0.05,
            "no thanks": 0.10}
QUESTIONS = ("how much would I be charged today?", "what does the new plan include?",
             "what would I pay per month?")
HEDGE = "let me ask my partner first"

# The simulated day (UTC): usage at 12:00, scheduler passes, buyers at 19:00 (daytime in every
# US zone), self-serve upgrades at 10:00.
USAGE_AT, BUYERS_AT, SELF_SERVE_AT = timedelta(hours=12), timedelta(hours=19), timedelta(hours=10)
PASSES_BEFORE_BUYERS = (timedelta(hours=12, minutes=5), timedelta(hours=15), timedelta(hours=18))
PASSES_AFTER_BUYERS = (timedelta(hours=19, minutes=30), timedelta(hours=23))
BATCH = 2_000  # events per record_usage call
RETRY_DAYS = 3  # a buyer whose opening is not out yet looks again the next days


class BadParams(ValueError):
    """Parameters the simulation cannot honour (a true lift that is no probability)."""


@dataclass(frozen=True)
class Params:
    accounts: int
    days: int
    true_lift: float
    seed: int
    control_share: Decimal = Decimal("0.10")
    follow_up_days: int = metrics.CONVERSION_DAYS  # the clock runs on so every window closes
    start: datetime = START

    @property
    def salt(self) -> str:
        return f"simulation-{self.seed}"


@dataclass
class SimAccount:
    index: int
    data: AccountInput
    channel: str
    p: float
    arm: str
    msg0: float
    growth: float
    seats: dict[int, int]  # day -> reading (posted on change)
    integrations: dict[int, int]
    feature: str | None
    feature_from: int | None

    @property
    def external_id(self) -> str:
        return self.data.external_id

    @property
    def contact(self) -> Contact:
        return self.data.contacts[0]


@dataclass
class Opportunity:
    account: SimAccount
    day: int
    detected_at: datetime
    to_plan: str
    decision: str  # outcome[:reason]
    thread_id: int | None
    in_window: bool
    self_serve_day: int | None
    would_take: bool
    script: list[tuple[int, list[str]]] = field(default_factory=list)
    path: str = ""
    converted_by: str | None = None


@dataclass
class Tally:
    events: int = 0
    chat_failed: int = 0  # a would-be converter whose confirmation did not upgrade (a bug)
    messages_sent: int = 0
    paths: Counter[str] = field(default_factory=Counter)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _arrivals(rng: random.Random, start: int, rate: float, horizon: int,
              cap: int) -> dict[int, int]:
    """A gauge that starts at `start` and gains one at a Poisson `rate` per day, up to `cap`."""
    readings, value, day = {0: start}, start, 0.0
    while rate > 0 and value < cap:
        day += rng.expovariate(rate)
        if day >= horizon:
            break
        value += 1
        readings[max(1, int(day))] = value
    return readings


def population(params: Params, verticals: list[str]) -> list[SimAccount]:
    """N accounts across the catalog's verticals (the simulation's own weights for the ones it
    knows, the rest like `generic`), mostly Starter."""
    rng = random.Random(f"population-{params.seed}")
    names = [v for v in verticals]
    weights = [VERTICALS.get(v, VERTICALS["generic"])[0] for v in names]
    horizon = params.days + params.follow_up_days
    out = []
    for i in range(params.accounts):
        external_id = f"sim-{i:06d}"
        vertical = rng.choices(names, weights=weights)[0]
        _, p_base, growth = VERTICALS.get(vertical, VERTICALS["generic"])
        zone, areas = rng.choice(ZONES)
        channel = _pick(rng, CHANNELS)
        plan = "growth" if rng.random() < GROWTH_SHARE else "starter"
        # Unique valid numbers: exchange 201–999 by i's ten-thousands, the line by the rest.
        phone = f"+1{rng.choice(areas)}{201 + (i // 10_000) % 799}{i % 10_000:04d}"
        contact = Contact(
            f"{external_id}-billing", f"Buyer {i}", "billing",
            phone=phone if channel != "web" else None,
            whatsapp=phone if channel == "whatsapp" else None,
            web_user_id=f"u-{i}" if channel == "web" else None)
        data = AccountInput(external_id=external_id, name=f"Simulated {i}", plan=plan,
                            vertical=vertical, timezone=zone,
                            billing_day=rng.randint(1, 28), contacts=(contact,))
        if plan == "starter":
            msg0 = rng.uniform(30, 120)  # a day: 900–3,600 over 30 days, under 4,500
            seats = _arrivals(rng, rng.randint(1, 3), 1 / 150, horizon, 12)
            integrations = _arrivals(rng, rng.randint(0, 1), 1 / 250, horizon, 2)
            feature = "workflows"
        else:  # above Starter's 2 integrations: Starter can never serve it (no down-tier)
            msg0 = rng.uniform(300, 800)  # 9,000–24,000 over 30 days, under 30,000
            seats = _arrivals(rng, rng.randint(5, 9), 1 / 60, horizon, 40)
            integrations = {0: rng.randint(3, 6)}
            feature = "sso"
        feature_from = rng.randint(0, horizon) if rng.random() < 0.08 else None
        out.append(SimAccount(
            index=i, data=data, channel=channel,
            p=min(0.9, max(0.0, p_base + rng.uniform(-P_SPREAD, P_SPREAD))),
            arm=metrics.CONTROL if in_control(external_id, params.control_share, params.salt)
            else metrics.TREATMENT,
            msg0=msg0, growth=growth * rng.uniform(0.2, 1.8), seats=seats,
            integrations=integrations, feature=feature, feature_from=feature_from))
    return out


def max_true_lift(accounts: list[SimAccount]) -> float:
    """The largest X the population allows: p + X must stay a probability for everyone."""
    return 1 - max((a.p for a in accounts), default=0.0)


def usage(account: SimAccount, day: int, at: datetime) -> list[UsageEvent]:
    """One day's events of an account: its messages (growing by its rate, never falling, so a
    case that held at the crossing still holds when the buyer answers), a seats or
    integrations reading when it changed, a locked-feature attempt every 5 days once it
    started."""
    ext = account.external_id
    out = [UsageEvent(f"{ext}/{day}/m", ext, "messages",
                      int(round(account.msg0 * math.exp(account.growth * day))), at)]
    if day in account.seats:
        out.append(UsageEvent(f"{ext}/{day}/s", ext, "seats", account.seats[day], at))
    if day in account.integrations:
        out.append(UsageEvent(f"{ext}/{day}/i", ext, "integrations",
                              account.integrations[day], at))
    if account.feature_from is not None and day >= account.feature_from \
            and (day - account.feature_from) % 5 == 0:
        out.append(UsageEvent(f"{ext}/{day}/f", ext, f"feature:{account.feature}", 1, at))
    return out


class Clock:
    """The simulated clock the app reads (its CLOCK)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run(rt: Any, clock: Clock, params: Params, scheduler_pass: Callable[[], None],
        on_day: Callable[[int], None] = lambda day: None) -> dict[str, Any]:
    """Run the simulation on the runtime `rt` (its CLOCK is `clock`, its database fresh);
    `scheduler_pass` is one scheduler pass (cli.run_jobs until nothing due is left). Returns
    the report (see `report`)."""
    accounts = population(params, list(rt.catalog.verticals))
    if params.true_lift < 0 or params.true_lift > max_true_lift(accounts):
        raise BadParams(f"true lift must be between 0 and {max_true_lift(accounts):.2f} (so "
                         f"that p + X stays a probability for every account)")
    by_id = {a.external_id: a for a in accounts}
    clock.now = params.start
    for a in accounts:
        services.upsert_account(rt.uow(), rt.catalog, a.data, clock.now, rt.phone_region)
    tally = Tally()
    opportunities: dict[str, Opportunity] = {}
    actions: dict[int, list[tuple[Opportunity, int]]] = {}  # day -> (opportunity, script step)
    self_serve: dict[int, list[Opportunity]] = {}
    total = params.days + params.follow_up_days
    for day in range(total):
        base = params.start + timedelta(days=day)
        clock.now = base + SELF_SERVE_AT
        for opp in self_serve.pop(day, []):
            _self_serve(rt, clock, opp)
        clock.now = base + USAGE_AT
        events = [e for a in accounts
                  for e in usage(a, day, base + USAGE_AT - timedelta(hours=1))]
        tally.events += len(events)
        for i in range(0, len(events), BATCH):
            result = services.record_usage(rt.uow(), rt.catalog, events[i:i + BATCH],
                                           clock.now, rt.settings)
            for crossing, decision in result.crossings:
                if crossing.direction != "up" or crossing.event_id is None:
                    continue
                account = by_id[crossing.event_id.split("/")[0]]
                if account.external_id in opportunities:
                    continue  # only the first up-tier crossing is the opportunity
                opp = _opportunity(params, account, day, clock.now, crossing.to_plan, decision)
                opportunities[account.external_id] = opp
                if opp.self_serve_day is not None:
                    self_serve.setdefault(opp.self_serve_day, []).append(opp)
                if opp.thread_id is not None and opp.in_window:
                    for step, (offset, _) in enumerate(opp.script):
                        actions.setdefault(day + offset, []).append((opp, step))
        for at in PASSES_BEFORE_BUYERS:  # openings deferred by quiet hours go out
            clock.now = base + at
            scheduler_pass()
        clock.now = base + BUYERS_AT
        for opp, step in actions.pop(day, []):
            _act(rt, clock, opp, step, day, actions, tally)
        for at in PASSES_AFTER_BUYERS:
            clock.now = base + at
            scheduler_pass()
        on_day(day)
    clock.now = params.start + timedelta(days=total)
    return report(rt, params, accounts, list(opportunities.values()), tally, clock.now)


def _opportunity(params: Params, account: SimAccount, day: int, now: datetime, to_plan: str,
                 decision: Any) -> Opportunity:
    # The account's own stream: the same draws whatever its arm and whatever happened to others.
    rng = random.Random(f"opportunity-{params.seed}-{account.external_id}")
    in_window = day < params.days
    self_serves = rng.random() < account.p
    would_take = not self_serves and rng.random() < params.true_lift / (1 - account.p)
    self_serve_day = day + rng.randint(1, 27) if self_serves and in_window else None
    k = rng.randint(1, 4)
    if would_take:
        path = _pick(rng, CONVERTER_PATHS[account.channel])
        script = {"direct": [(k, ["yes", "confirm"])],
                  "question_first": [(k, [rng.choice(QUESTIONS), "yes", "confirm"])],
                  "call_first": [(k, ["call me"]), (k + 1, ["yes", "confirm"])]}[path]
    else:
        path = _pick(rng, OTHER_PATHS[account.channel])
        script = {"silence": [], "decline": [(k, [_pick(rng, DECLINES)])],
                  "question": [(k, [rng.choice(QUESTIONS)])], "hedge": [(k, ["yes", HEDGE])],
                  "stop": [(k, ["STOP"])], "call": [(k, ["call me"])]}[path]
    if account.channel == "web" and not script:
        script = [(k, [])]  # a visit: the widget shows the opening, the buyer says nothing
    outcome = f"{decision.outcome}:{decision.reason}" if decision is not None and \
        decision.reason else str(decision.outcome if decision is not None else "none")
    return Opportunity(account, day, now, to_plan, outcome,
                       decision.thread_id if decision is not None else None, in_window,
                       self_serve_day, would_take, script, path)


def _self_serve(rt: Any, clock: Clock, opp: Opportunity) -> None:
    """The buyer upgrades without the chat: the operator's PUT with the next plan."""
    with rt.uow(read_only=True) as uow:
        current = uow.accounts.get(opp.account.external_id)
    if current is not None and current.plan == opp.account.data.plan:
        services.upsert_account(rt.uow(), rt.catalog,
                                replace(opp.account.data, plan=NEXT_PLAN[current.plan]),
                                clock.now, rt.phone_region)
        opp.converted_by = "self"


def _act(rt: Any, clock: Clock, opp: Opportunity, step: int, day: int,
         actions: dict[int, list[tuple[Opportunity, int]]], tally: Tally) -> None:
    """One step of a buyer's script: look (a web buyer opens the product), then write."""
    account = opp.account
    if account.channel == "web":
        handlers.poll(rt.uow, rt.catalog, rt.settings, "web",
                      (account.external_id, account.contact.web_user_id or ""), 0, 50,
                      clock.now)
    assert opp.thread_id is not None
    state = handlers.thread_state(rt.uow(read_only=True), opp.thread_id)
    if step == 0 and state == "open":  # the opening is not out yet: look again tomorrow
        if day - opp.day < opp.script[0][0] + RETRY_DAYS:
            actions.setdefault(day + 1, []).append((opp, step))
        return
    tally.paths[opp.path] += step == 0
    answer = None
    for n, text in enumerate(opp.script[step][1]):
        clock.now += timedelta(minutes=1)
        who: dict[str, Any] = {"web_user": (account.external_id, account.contact.web_user_id)} \
            if account.channel == "web" else {"address": account.contact.phone}
        answer = handlers.handle_inbound(rt.uow(), rt.catalog, rt.settings, handlers.Inbound(
            account.channel, text, f"sim-{account.external_id}-{step}-{n}", **who), clock.now)
    if opp.would_take and step == len(opp.script) - 1:
        if answer is not None and answer.state == "upgraded":
            opp.converted_by = "chat"
        else:
            tally.chat_failed += 1


def _lift(lift: Any) -> dict[str, Any]:
    return {"absolute": lift.absolute, "ci95": list(lift.ci95) if lift.ci95 else None,
            "relative": lift.relative, "p_value": lift.p_value, "note": lift.note}


def report(rt: Any, params: Params, accounts: list[SimAccount], opps: list[Opportunity],
           tally: Tally, now: datetime) -> dict[str, Any]:
    """The measured figures (core.metrics over the window of crossings) beside the truth."""
    start, end = params.start, params.start + timedelta(days=params.days)
    figures = metrics.figures(rt.uow(read_only=True), rt.catalog, rt.settings.policy, start,
                              end, now).report
    window = [o for o in opps if o.in_window]
    arms = (metrics.TREATMENT, metrics.CONTROL)
    by_arm = {arm: [o for o in window if o.account.arm == arm] for arm in arms}
    treated = by_arm[metrics.TREATMENT]
    reached = [o for o in treated if o.thread_id is not None
               and o.decision.split(":")[0] in ("prompted", "deferred")]
    held_back = Counter(o.decision for o in treated if o not in reached)
    effective = params.true_lift * (len(reached) / len(treated)) if treated else None
    ci = figures.lift.ci95
    return {
        "params": {"accounts": params.accounts, "days": params.days,
                   "follow_up_days": params.follow_up_days, "true_lift": params.true_lift,
                   "seed": params.seed, "control_share": str(params.control_share),
                   "control_salt": params.salt},
        "window": {"from": start.isoformat(), "to": end.isoformat(),
                   "conversion_days": figures.conversion_days},
        "population": {
            "accounts": len(accounts),
            "plans": dict(sorted(Counter(a.data.plan for a in accounts).items())),
            "channels": dict(sorted(Counter(a.channel for a in accounts).items())),
            "verticals": dict(sorted(Counter(a.data.vertical for a in accounts).items())),
            "control_accounts": sum(a.arm == metrics.CONTROL for a in accounts),
            "usage_events": tally.events},
        "truth": {
            "true_lift": params.true_lift,
            "effective_true_lift": effective,
            "mean_self_serve_p": {arm: (sum(o.account.p for o in rows) / len(rows)
                                        if rows else None) for arm, rows in by_arm.items()},
            "opportunities": {arm: len(rows) for arm, rows in by_arm.items()},
            "self_serve": {arm: sum(o.converted_by == "self" for o in rows)
                           for arm, rows in by_arm.items()},
            "chat": {arm: sum(o.converted_by == "chat" for o in rows)
                     for arm, rows in by_arm.items()},
            "would_take_if_asked": {arm: sum(o.would_take for o in rows)
                                    for arm, rows in by_arm.items()},
            "chat_failed": tally.chat_failed,
            "treatment_reached": len(reached),
            "held_back": dict(sorted(held_back.items())),
            "first_crossing_decisions": dict(sorted(Counter(
                o.decision for o in window).items())),
            "buyer_paths": dict(sorted(tally.paths.items())),
        },
        "measured": {
            "opportunities": dict(figures.opportunities),
            "converted": dict(figures.converted),
            "rate": dict(figures.cross_to_upgrade_rate),
            "prompted_threads": figures.prompted_threads,
            "prompt_to_conversion_rate": figures.prompt_to_conversion_rate,
            "time_to_prompt_p50_s": figures.time_to_prompt.p50,
            "time_to_prompt_p90_s": figures.time_to_prompt.p90,
            "decline_reasons": dict(figures.decline_reasons),
            "lift": _lift(figures.lift),
            "srm": {"p_value": figures.srm.p_value, "flag": figures.srm.flag,
                    "expected_control_share": figures.srm.expected_control_share},
        },
        "covers_true_lift": (ci[0] <= params.true_lift <= ci[1]) if ci else None,
    }
