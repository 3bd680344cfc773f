"""Demo accounts for the embedded service: one per vertical, each showing a different case.

Loaded through the same use cases as the API, with usage spread over the trailing 30 days, so
their signals and cases are exactly what a real account with that usage would get. Event ids are
tied to the calendar day, so loading twice on one day stores nothing twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from core import services
from core.accounts import Contact
from core.services import AccountInput
from core.usage import UsageEvent

DAYS = 28  # spread counters over the last 28 days: safely inside the 30-day window


def _account(external_id, name, plan, vertical, timezone, billing_day, contact) -> AccountInput:
    return AccountInput(external_id=external_id, name=name, plan=plan, vertical=vertical,
                        timezone=timezone, billing_day=billing_day, contacts=(contact,))


# Each demo account, the days it has been on its plan (None: since loading), and its usage:
# messages over the window, seats, integrations, feature hits.
ACCOUNTS: list[tuple[AccountInput, int | None, dict[str, int]]] = [
    (_account("acme-clinic", "Acme Family Clinic", "starter", "healthcare", "America/Chicago", 5,
              Contact("acme-dana", "Dana Reyes", "billing", "+13125550142", "+13125550142",
                      "u-dana", "dana@acme-clinic.example")),
     None, {"messages": 4800, "seats": 3, "integrations": 1}),
    (_account("bright-salon", "Bright Salon", "starter", "salon", "America/Los_Angeles", 12,
              Contact("bright-jo", "Jo Park", "billing", "+14155550100", None, "u-jo",
                      "jo@bright-salon.example")),
     None, {"messages": 900, "seats": 4, "integrations": 1}),
    (_account("harbor-realty", "Harbor Realty", "growth", "real_estate", "America/New_York", 1,
              Contact("harbor-sam", "Sam Ortiz", "admin", "+12125551234", None, "u-sam",
                      "sam@harbor-realty.example")),
     120, {"messages": 2100, "seats": 5, "integrations": 1}),
    (_account("pipeline-sales", "Pipeline Sales Co", "growth", "sales", "America/Denver", 20,
              Contact("pipeline-lee", "Lee Chen", "billing", "+13035550188", "+13035550188",
                      "u-lee", "lee@pipeline.example")),
     None, {"messages": 31000, "seats": 8, "integrations": 4}),
    (_account("northwind-msp", "Northwind IT", "starter", "it_msp", "Europe/London", 15,
              Contact("northwind-ali", "Ali Khan", "billing", "+442079460958", None, "u-ali",
                      "ali@northwind.example")),
     None, {"messages": 800, "seats": 2, "integrations": 1, "feature:workflows": 3}),
    (_account("quiet-studio", "Quiet Studio", "starter", "generic", "Australia/Sydney", 3,
              Contact("quiet-max", "Max Hill", "billing", "+61291234567", None, "u-max",
                      "max@quiet.example")),
     None, {"messages": 400, "seats": 2, "integrations": 0}),
]


def _events(external_id: str, usage: dict[str, int], now: datetime) -> list[UsageEvent]:
    events = []
    for metric, total in usage.items():
        if metric in ("seats", "integrations"):
            at = now - timedelta(hours=1)
            events.append(UsageEvent(f"demo-{external_id}-{metric}-{at:%Y%m%d}", external_id,
                                     metric, total, at))
            continue
        per_day, extra = divmod(total, DAYS)
        for day in range(DAYS):
            at = now - timedelta(days=day, hours=2)
            quantity = per_day + (1 if day < extra else 0)
            if quantity:
                events.append(UsageEvent(f"demo-{external_id}-{metric}-{at:%Y%m%d}", external_id,
                                         metric, quantity, at))
    return events


def load(runtime, *, only_missing: bool = False) -> int:
    """Load (or refresh) the demo accounts and their usage; returns how many accounts it loaded."""
    now = runtime.now()
    loaded = 0
    for account, plan_days, usage in ACCOUNTS:
        if only_missing:
            with runtime.uow() as uow:
                if uow.accounts.get(account.external_id) is not None:
                    continue
        if plan_days:
            account = replace(account, plan_since=now - timedelta(days=plan_days))
        services.upsert_account(runtime.uow(), runtime.catalog, account, now, runtime.phone_region)
        services.record_usage(runtime.uow(), runtime.catalog,
                              _events(account.external_id, usage, now), now, runtime.settings)
        loaded += 1
    return loaded


def ids() -> list[str]:
    """The demo accounts' external ids."""
    return [account.external_id for account, _, _ in ACCOUNTS]


def reset(runtime) -> tuple[dict[str, int], int]:
    """The demo from scratch: remove the demo accounts and everything of theirs, then load them
    again as of now, so their crossings happen again and their openings go out anew. Other
    accounts are not touched. Returns what was removed (per table) and how many were loaded."""
    removed = services.remove_accounts(runtime.uow(), ids())
    return removed, load(runtime)
