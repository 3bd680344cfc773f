"""The opening message: the case in the buyer's own numbers and their industry's words.

Only figures from the case appear, so every number can be traced to its inputs. Messages are
plain ASCII (GSM-7 safe: no curly quotes or dashes) so an SMS stays short.
"""

from __future__ import annotations

from core.case import Case, Met
from core.catalog import Catalog, Vertical
from core.money import count, dollars
from core.sms import segments
from core.copy import KEYWORDS, Wording


def join_words(items: list[str], last: str = "and") -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _plan(name: str) -> str:
    return name.capitalize()


def _quantity(n: int, one: str, many: str) -> str:
    return f"{count(n)} {one if n == 1 else many}"


def _lead(case: Case, met: Met, catalog: Catalog) -> str:
    """The sentence that names the threshold the buyer crossed."""
    subject = {"messages": "You sent", "seats": "You have", "integrations": "You have"}
    return f"{subject.get(met.metric, 'Your team')} {crossed_phrase(case, met, catalog)}."


def _up(case: Case, catalog: Catalog, sender: str | None = None, w: Wording = KEYWORDS) -> str:
    v = case.vertical
    current, target = _plan(case.current.name), _plan(case.target.name)
    now_cost, new_cost = case.cost_current.total, case.cost_target.total
    lead = min(case.thresholds_crossed, key=_lead_order)
    parts = [_lead(case, lead, catalog)]
    if case.claims_saving:
        parts.append(f"On {target} that month would have cost {dollars(new_cost)} instead of "
                     f"{dollars(now_cost)} on {current}, {dollars(case.monthly_difference)} less.")
    elif new_cost == now_cost:
        parts.append(f"{target} costs the same {dollars(new_cost)} a month at your usage.")
    else:
        parts.append(f"{target} costs {dollars(new_cost)} a month against {dollars(now_cost)} "
                     f"on {current} now, {dollars(-case.monthly_difference)} more.")
    closing = (f"Upgrading today costs {dollars(case.prorated_charge_today)} "
               f"for the rest of this billing period.")
    return _fit(_introduced(parts, sender), _gains(case, catalog, v), closing + _how(sender, w))


def _lead_order(met: Met) -> int:
    # Lead with the figure that matters most to the buyer: money (messages), then seats.
    order = ("messages", "seats", "integrations")
    return order.index(met.metric) if met.metric in order else len(order)


def _gains(case: Case, catalog: Catalog, v: Vertical) -> list[str]:
    """What the target adds, longest first: everything; the vertical's own highlights (or the
    first two features); nothing. The opening takes the longest that fits two SMS segments."""
    target = _plan(case.target.name)
    seats = []
    if case.unlocks.seats_included[1] > case.unlocks.seats_included[0]:
        seats = [_quantity(case.unlocks.seats_included[1], v.seat, v.seats)]
    features = [catalog.feature_name(f, v) for f in case.unlocks.features]
    highlights = [catalog.feature_name(f, v) for f in case.unlocks.features
                  if f in v.feature_names] or features[:2]
    options = [seats + features, highlights, highlights[:1]]
    return [f"{target} includes {join_words(o)}." for o in options if o] + [""]


def _down(case: Case, catalog: Catalog, sender: str | None = None,
          w: Wording = KEYWORDS) -> str:
    v, u = case.vertical, case.usage
    current, target = _plan(case.current.name), _plan(case.target.name)
    unused = [catalog.feature_name(f, v) for f in case.gives_up]
    usage = (f"In the last 30 days you sent {_quantity(u.messages, v.message, v.messages)} "
             f"with {_quantity(u.seats, v.seat, v.seats)}.")
    # State what the lower plan lacks, not a claim about what the buyer did: the rule only knows
    # that no use of those features was reported.
    lacks = f" {target} does not include {join_words(unused, 'or')}." if unused else ""
    new_cost, now_cost = dollars(case.cost_target.total), dollars(case.cost_current.total)
    if case.claims_saving:
        compare = (f"{target} would have cost {new_cost} instead of {now_cost} on {current}, "
                   f"{dollars(case.monthly_difference)} less a month.")
    elif case.monthly_difference == 0:
        compare = f"{target} would have cost the same {new_cost} as {current}."
    else:  # never offered by current_case; stated honestly if a caller builds it
        compare = (f"{target} would have cost {new_cost} against {now_cost} on {current}, "
                   f"{dollars(-case.monthly_difference)} more a month.")
    when = case.effective
    closing = (f"The change would take effect at your next billing period, on "
               f"{when:%b} {when.day}.")
    return _fit(_introduced([usage, compare], sender), [lacks.strip(), ""],
                closing + _how(sender, w))


def _introduced(lead: list[str], sender: str | None) -> list[str]:
    """On a phone, the message says first who it is from."""
    return [f"{sender}: {lead[0]}", *lead[1:]] if sender else lead


def _how(sender: str | None, w: Wording) -> str:
    """On a phone, how to answer and how to stop, in the channel's words (core.copy)."""
    return f" {w.Do('YES')} for details, {w.then('STOP')} to opt out." if sender else ""


MAX_SEGMENTS = 2


def _fit(lead: list[str], options: list[str], closing: str) -> str:
    """The lead sentences, the longest of `options` that keeps the whole within two SMS
    segments (what a plan adds or lacks: the buyer can ask for the rest), and the closing."""
    for option in options:
        text = " ".join(p for p in (*lead, option, closing) if p)
        if segments(text) <= MAX_SEGMENTS:
            return text
    return text


def opening_message(case: Case, catalog: Catalog, sender: str | None = None,
                    w: Wording = KEYWORDS) -> str:
    """The opening message of a conversation about `case`, in its vertical's words. With a
    `sender` (the business's name, for a message to a phone), it names the business first and
    ends with how to answer and how to stop, and still fits two SMS segments."""
    if case.direction == "up":
        return _up(case, catalog, sender, w)
    return _down(case, catalog, sender, w)


# --- the web chat's case card: the same case, as conditional as the message -------------------

def card_summary(case: Case) -> str:
    """The collapsed card's one line: the difference, as conditional as the message."""
    target = _plan(case.target.name)
    if case.claims_saving:
        return f"{target} would have cost {dollars(case.monthly_difference)} less"
    if case.monthly_difference == 0:
        return f"{target}: the same {dollars(case.cost_target.total)} a month"
    return f"{target}: {dollars(-case.monthly_difference)} more a month"


def card_lines(case: Case, catalog: Catalog) -> list[str]:
    """The expanded card's sentences: the comparison at the buyer's own usage, what confirming
    charges and when, and what the target adds (up) or does not include (down)."""
    v = case.vertical
    current, target = _plan(case.current.name), _plan(case.target.name)
    new_cost, now_cost = dollars(case.cost_target.total), dollars(case.cost_current.total)
    usage = "At your last 30 days of usage"
    if case.claims_saving:
        compare = (f"{usage}, {target} would have cost {new_cost} instead of {now_cost} "
                   f"({dollars(case.monthly_difference)} less).")
    elif case.monthly_difference == 0:
        compare = f"{usage}, {target} would have cost the same {new_cost} as {current}."
    else:
        compare = (f"{usage}, {target} would have cost {new_cost} instead of {now_cost} "
                   f"({dollars(-case.monthly_difference)} more a month).")
    if case.direction == "down":
        when = case.effective
        charge = (f"Nothing is charged today; the change would take effect at your next "
                  f"billing period, on {when:%b} {when.day}.")
        lacks = [catalog.feature_name(f, v) for f in case.gives_up]
        extra = [f"{target} does not include {join_words(lacks, 'or')}."] if lacks else []
    else:
        charge = (f"Upgrading today costs {dollars(case.prorated_charge_today)} "
                  f"for the rest of this billing period.")
        seats = case.unlocks.seats_included
        gains = ([_quantity(seats[1], v.seat, v.seats)] if seats[1] > seats[0] else []) + \
            [catalog.feature_name(f, v) for f in case.unlocks.features]
        extra = [f"{target} includes {join_words(gains)}."] if gains else []
    return [compare, charge, *extra]


def crossed_phrase(case: Case, met: Met, catalog: Catalog) -> str:
    """A threshold crossed, in the vertical's words: "4,800 patient messages in the last 30
    days", "4 stylist chairs in use; Starter includes 3", "tried workflows 3 times in the last 30
    days; Starter does not include it". The opening puts a subject in front; the card shows it
    as it is."""
    v = case.vertical
    plan = _plan(case.current.name)
    if met.metric == "messages":
        return f"{_quantity(met.value, v.message, v.messages)} in the last 30 days"
    if met.metric == "seats":
        return (f"{_quantity(met.value, v.seat, v.seats)} in use; "
                f"{plan} includes {count(case.current.included_seats)}")
    if met.metric == "integrations":
        limit = case.current.max_integrations
        if limit is None:
            return f"{count(met.value)} {v.integrations} connected"
        tail = "the most" if met.value == limit else f"over the {count(limit)}"
        return f"{count(met.value)} {v.integrations} connected, {tail} {plan} allows"
    name = catalog.feature_name(met.metric.removeprefix("feature:"), v)
    return (f"tried {name} {_quantity(met.value, 'time', 'times')} in the last 30 days; "
            f"{plan} does not include it")
