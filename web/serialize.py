"""JSON shapes of the domain for the HTTP API: money as two-decimal strings, times as ISO 8601 UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from core.accounts import Account, HealthBounds
from core.case import Case
from core.catalog import Catalog, Plan
from core.conversation import LIVE
from core.experiment import Lift
from core.framing import opening_message
from core.metrics import Figures, Opportunity, Report
from core.ledger import Ledger
from core.listing import AccountPage
from core.ports import AccountSummary
from core.money import money_str
from core.pricing import Cost
from core.thresholds import Crossing
from core.usage import WINDOW, UsageMatrix


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "base_price": money_str(plan.base_price),
        "included_messages": plan.included_messages,
        "extra_message_price": f"{plan.extra_message_price:f}",
        "included_seats": plan.included_seats,
        "extra_seat_price": money_str(plan.extra_seat_price),
        "max_integrations": plan.max_integrations,
        "features": sorted(plan.features),
    }


def plan_history_json(external_id: str, entries) -> dict[str, Any]:
    """The account's plan history (core.ports.PlanHistoryEntry, oldest first)."""
    return {"account": external_id,
            "plans": [{"from_plan": e.from_plan, "to_plan": e.to_plan, "at": iso(e.at),
                       "source": e.source} for e in entries]}


def usage_json(matrix: UsageMatrix, now: datetime) -> dict[str, Any]:
    return {
        "messages": matrix.messages,
        "seats": matrix.seats,
        "integrations": matrix.integrations,
        "integrations_peak": matrix.integrations_peak,
        "features": dict(sorted(matrix.features.items())),
        "window_days": WINDOW.days,
        "as_of": iso(now),
    }


def account_json(account: Account, matrix: UsageMatrix, catalog: Catalog, now: datetime,
                 bounds: HealthBounds = HealthBounds()) -> dict[str, Any]:
    h = account.health
    return {
        "external_id": account.external_id,
        "name": account.name,
        "plan": account.plan,
        "plan_details": plan_json(catalog.plan(account.plan)),
        "plan_since": iso(account.plan_since),
        "vertical": account.vertical,
        "timezone": account.timezone,
        "billing_day": account.billing_day,
        "contacts": [{"external_id": c.external_id, "name": c.name, "role": c.role,
                      "phone": c.phone, "whatsapp": c.whatsapp, "web_user_id": c.web_user_id,
                      "email": c.email, "erased_at": iso(c.erased_at)}
                     for c in account.contacts],
        "health": {
            "csat": None if h.csat is None else float(h.csat),
            "sentiment": None if h.sentiment is None else float(h.sentiment),
            "open_escalations": h.open_escalations,
            "status": "red" if h.is_red(bounds) else "green",
            "updated_at": iso(h.updated_at),
        },
        "usage": usage_json(matrix, now),
    }


def cost_json(cost: Cost) -> dict[str, Any]:
    """A cost with each line's inputs, so any figure can be explained."""
    def line(l):
        return {"used": l.used, "included": l.included, "extra": l.extra,
                "unit_price": f"{l.unit_price:f}", "amount": money_str(l.amount)}
    return {"plan": cost.plan, "base": money_str(cost.base), "messages": line(cost.messages),
            "seats": line(cost.seats), "total": money_str(cost.total)}


def case_json(account: Account, case: Case, catalog: Catalog, now: datetime) -> dict[str, Any]:
    p = case.proration
    u = case.unlocks
    return {
        "account": account.external_id,
        "current_plan": case.current.name,
        "target_plan": case.target.name,
        "direction": case.direction,
        "usage": {"messages": case.usage.messages, "seats": case.usage.seats,
                  "integrations": case.usage.integrations,
                  "features": dict(sorted(case.usage.features.items()))},
        "thresholds_crossed": [{"metric": m.metric, "value": m.value, "threshold": m.threshold}
                               for m in case.thresholds_crossed],
        "cost_current": money_str(case.cost_current.total),
        "cost_target": money_str(case.cost_target.total),
        "monthly_difference": money_str(case.monthly_difference),
        "claims_saving": case.claims_saving,
        "prorated_charge_today": money_str(case.prorated_charge_today),
        "unlocks": {
            "features": list(u.features),
            "seats_included": {"from": u.seats_included[0], "to": u.seats_included[1]},
            "messages_included": {"from": u.messages_included[0], "to": u.messages_included[1]},
            "max_integrations": {"from": u.max_integrations[0], "to": u.max_integrations[1]},
        },
        "gives_up": list(case.gives_up),
        "effective": case.effective.isoformat(),
        "message": opening_message(case, catalog),
        "explain": {
            "cost_current": cost_json(case.cost_current),
            "cost_target": cost_json(case.cost_target),
            "proration": {
                "today": p.today.isoformat(),
                "period_start": p.period_start.isoformat(),
                "period_end": p.period_end.isoformat(),
                "days_in_period": p.days_in_period,
                "days_remaining": p.days_remaining,
                "base_difference": money_str(p.base_difference),
                "charge": money_str(case.prorated_charge_today),
            },
        },
        "as_of": iso(now),
    }


def _signal_figure(crossing: Crossing, value) -> str:
    # Down-tier crossings compare costs (money); the others compare whole-number usage.
    return money_str(value) if crossing.metric == "cost" else str(int(value))


def signal_json(crossing: Crossing, detected_at: datetime, decision=None) -> dict[str, Any]:
    return {
        "direction": crossing.direction,
        "from_plan": crossing.from_plan,
        "to_plan": crossing.to_plan,
        "metric": crossing.metric,
        "value": _signal_figure(crossing, crossing.value),
        "threshold": _signal_figure(crossing, crossing.threshold),
        "at": iso(crossing.at),
        "detected_at": iso(detected_at),
        "event_id": crossing.event_id,
        "outcome": decision.outcome if decision else None,
        "reason": decision.reason if decision else None,
        "defer_until": iso(decision.defer_until) if decision else None,
    }


def thread_json(detail) -> dict[str, Any]:
    """GET /accounts/<id>/thread: the thread, its messages, what was held back, the upgrade.

    `current_plan` is the plan the offer starts from while the thread is live, and the account's
    plan once it is finished: an upgraded thread shows the new plan (the plan it started from
    stays in `upgrade.from_plan`)."""
    t, change, contact = detail.thread, detail.upgrade, detail.contact
    current_plan = None if t is None else \
        t.current_plan if t.state in LIVE else detail.account.plan
    return {
        "account": detail.account.external_id,
        "thread_id": t.id if t else None,
        "state": t.state if t else None,
        "current_plan": current_plan,
        "target_plan": t.target_plan if t else None,
        "direction": t.direction if t else None,
        "decline_reason": t.decline_reason if t else None,
        "last_channel": t.last_channel if t else None,
        "opened_at": iso(t.opened_at) if t else None,
        "contact": None if contact is None else {
            "external_id": contact.external_id, "erased_at": iso(contact.erased_at)},
        "messages": [{"direction": m.direction, "channel": m.channel, "kind": m.kind,
                      "body": m.body, "status": m.status, "at": iso(m.at),
                      "not_before": iso(m.not_before), "redacted_at": iso(m.redacted_at)}
                     for m in detail.messages],
        "suppressions": [{"outcome": d.outcome, "reason": d.reason, "metric": c.metric,
                          "to_plan": c.to_plan, "at": iso(at), "defer_until": iso(d.defer_until)}
                         for c, at, d in detail.suppressions],
        "upgrade": None if change is None else {
            "from_plan": change.from_plan, "to_plan": change.to_plan,
            "direction": change.direction, "status": change.status,
            "effective": change.effective.isoformat(),
            "charge_today": money_str(change.charge_today), "channel": change.channel,
            "requested_at": iso(change.requested_at)},
        "escalations": [{"reason": e.reason, "status": e.status, "thread_id": e.thread_id,
                         "at": iso(e.created_at)} for e in detail.escalations],
        "calls": [{"id": c.id, "status": c.status, "scheduled_for": iso(c.scheduled_for),
                   "reason": c.reason, "attempt": c.attempt,
                   "requested_for": iso(c.requested_at) if c.requested_at else None,
                   "provider_id": c.provider_id, "note": c.note, "updated_at": iso(c.updated_at)}
                  for c in detail.calls],
    }


def erasure_json(result) -> dict[str, Any]:
    """POST /contacts/<id>/erase: what the erasure did (core.erasure.ErasureResult)."""
    return {
        "contact": result.contact,
        "already_erased": result.already_erased,
        "erased_at": iso(result.erased_at),
        "messages_blanked": result.messages_blanked,
        "addresses_removed": result.addresses_removed,
        "jobs_cancelled": result.jobs_cancelled,
        "threads_closed": result.threads_closed,
        "escalations_redrawn": result.escalations_redrawn,
        "spool_entries_removed": result.spool_entries_removed,
    }


# --- the program's figures (core.metrics) -------------------------------------------------------

def _lift_json(lift: Lift) -> dict[str, Any]:
    return {"absolute": lift.absolute, "ci95": list(lift.ci95) if lift.ci95 else None,
            "relative": lift.relative, "p_value": lift.p_value, "note": lift.note}


def report_json(r: Report) -> dict[str, Any]:
    t = r.time_to_prompt
    return {
        "opportunities": dict(r.opportunities),
        "converted": dict(r.converted),
        "cross_to_upgrade_rate": {**r.cross_to_upgrade_rate, "target": r.target_rate},
        "time_to_prompt_seconds": {"count": t.count, "p50": t.p50, "p90": t.p90, "p99": t.p99,
                                   "share_under_1h": t.share_under_1h},
        "prompt_to_conversion_rate": r.prompt_to_conversion_rate,
        "prompted_threads": r.prompted_threads,
        "mean_arr_uplift": money_str(r.mean_arr_uplift) if r.mean_arr_uplift is not None
        else None,
        "decline_reasons": dict(r.decline_reasons),
        "nrr_90d": r.nrr_90d,
        "nrr_upgrades": r.nrr_upgrades,
        "lift": {**_lift_json(r.lift), "arr": _lift_json(r.arr_lift)},
        "srm": {"p_value": r.srm.p_value, "flag": r.srm.flag,
                "expected_control_share": r.srm.expected_control_share},
    }


def figures_json(f: Figures) -> dict[str, Any]:
    r = f.report
    return {"from": r.start.date().isoformat(), "to": r.end.date().isoformat(),
            "conversion_days": r.conversion_days, "by": f.by, **report_json(r),
            "groups": {name: report_json(g) for name, g in f.groups.items()} if f.by else None}


OPPORTUNITY_COLUMNS = ("account", "arm", "vertical", "channel", "metric", "step", "crossed_at",
                       "detected_at", "outcome", "reason", "opening_sent_at",
                       "seconds_to_prompt", "thread_state", "decline_reason", "converted",
                       "converted_at", "converted_to", "arr_uplift")


def opportunity_row(o: Opportunity) -> list[str]:
    f = o.facts
    wait = (f.opening_sent_at - f.crossed_at).total_seconds() if f.opening_sent_at else None
    return [f.account, o.arm, f.vertical, f.opening_channel or "", f.metric,
            f"{f.from_plan}->{f.to_plan}", iso(f.crossed_at) or "", iso(f.detected_at) or "",
            f.outcome or "", f.reason or "", iso(f.opening_sent_at) or "",
            "" if wait is None else f"{max(0.0, wait):.0f}", f.thread_state or "",
            f.decline_reason or "", "yes" if o.converted else "no",
            iso(o.conversion.at) if o.conversion else "",
            o.conversion.to_plan if o.conversion else "", money_str(o.arr)]


def figure_rows(f: Figures) -> list[list[str]]:
    """The figures as long rows: group, figure, treatment, control, value."""
    def rows(group: str, r: Report) -> list[list[str]]:
        def num(x: float | None) -> str:
            return "" if x is None else f"{x:.6g}"
        t = r.time_to_prompt
        out = [
            [group, "opportunities", str(r.opportunities["treatment"]),
             str(r.opportunities["control"]), ""],
            [group, "converted", str(r.converted["treatment"]), str(r.converted["control"]), ""],
            [group, "cross_to_upgrade_rate", num(r.cross_to_upgrade_rate["treatment"]),
             num(r.cross_to_upgrade_rate["control"]), ""],
            [group, "time_to_prompt_p50_seconds", "", "", num(t.p50)],
            [group, "time_to_prompt_p90_seconds", "", "", num(t.p90)],
            [group, "time_to_prompt_p99_seconds", "", "", num(t.p99)],
            [group, "time_to_prompt_share_under_1h", "", "", num(t.share_under_1h)],
            [group, "prompt_to_conversion_rate", "", "", num(r.prompt_to_conversion_rate)],
            [group, "mean_arr_uplift", "", "",
             money_str(r.mean_arr_uplift) if r.mean_arr_uplift is not None else ""],
            [group, "nrr_90d", "", "", num(r.nrr_90d)],
            [group, "lift_absolute", "", "", num(r.lift.absolute)],
            [group, "lift_ci95_low", "", "", num(r.lift.ci95[0] if r.lift.ci95 else None)],
            [group, "lift_ci95_high", "", "", num(r.lift.ci95[1] if r.lift.ci95 else None)],
            [group, "lift_relative", "", "", num(r.lift.relative)],
            [group, "lift_p_value", "", "", num(r.lift.p_value)],
            [group, "arr_lift_absolute", "", "", num(r.arr_lift.absolute)],
            [group, "srm_p_value", "", "", num(r.srm.p_value)],
        ]
        out += [[group, f"declined_{reason}", "", "", str(n)]
                for reason, n in r.decline_reasons.items()]
        return out
    result = rows("all", f.report)
    for name, g in f.groups.items():
        result += rows(name, g)
    return result


def _plain(value: Any, metric: Any = None) -> Any:
    """A ledger field as JSON: times in ISO 8601 UTC; a crossing's figures as its signal shows
    them (money for a cost, else a whole number)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return money_str(value) if metric == "cost" else str(int(value))
    return value


def account_summary_json(item: AccountSummary, bounds: HealthBounds = HealthBounds()) -> dict[str, Any]:
    t = item.live_thread
    return {
        "external_id": item.external_id,
        "name": item.name,
        "plan": item.plan,
        "vertical": item.vertical,
        "timezone": item.timezone,
        "health": "red" if item.health.is_red(bounds) else "green",
        "thread": None if t is None else {"id": t.id, "state": t.state,
                                          "target_plan": t.target_plan},
        "updated_at": iso(item.updated_at),
    }


def account_page_json(page: AccountPage, bounds: HealthBounds = HealthBounds()) -> dict[str, Any]:
    return {"accounts": [account_summary_json(a, bounds) for a in page.items],
            "total": page.total, "page": page.page, "per_page": page.per_page,
            "next_page": page.next_page}


def ledger_json(ledger: Ledger) -> dict[str, Any]:
    return {"account": ledger.account.external_id,
            "entries": [{"at": iso(e.at), "type": e.type,
                         **{k: _plain(v, e.fields.get("metric")) for k, v in e.fields.items()}}
                        for e in ledger.entries]}
