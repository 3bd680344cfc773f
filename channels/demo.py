"""Demo accounts for the embedded service: one per vertical, each showing a different case.

Loaded through the same use cases as the API, with usage spread over the trailing 30 days, so
their signals and cases are exactly what a real account with that usage would get. Event ids are
tied to the calendar day, so loading twice on one day stores nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from core import services
from core.accounts import Contact
from core.services import AccountInput
from core.usage import UsageEvent

DAYS = 28  # spread counters over the last 28 days: safely inside the 30-day window


class DemoAccount(NamedTuple):
    external_id: str
    name: str
    plan: str
    vertical: str
    timezone: str
    billing_day: int
    contact: Contact
    plan_days: int | None = None  # how long on the plan; None: since loading


# Each demo account, then its usage: messages over the window, seats, integrations, feature hits.
ACCOUNTS = [
    (DemoAccount("acme-clinic", "Acme Family Clinic", "starter", "healthcare", "America/Chicago", 5,
              Contact("acme-dana", "Dana Reyes", "billing", "+13125550142", "+13125550142",
                      "u-dana", "dana@acme-clinic.example")),
     {"messages": 4800, "seats": 3, "integrations": 1}),
    (DemoAccount("bright-salon", "Bright Salon", "starter", "salon", "America/Los_Angeles", 12,
              Contact("bright-jo", "Jo Park", "billing", "+14155550100", None, "u-jo",
                      "jo@bright-salon.example")),
     {"messages": 900, "seats": 4, "integrations": 1}),
    (DemoAccount("harbor-realty", "Harbor Realty", "growth", "real_estate", "America/New_York", 1,
              Contact("harbor-sam", "Sam Ortiz", "admin", "+12125551234", None, "u-sam",
                      "sam@harbor-realty.example"), plan_days=120),
     {"messages": 2100, "seats": 5, "integrations": 1}),
    (DemoAccount("pipeline-sales", "Pipeline Sales Co", "growth", "sales", "America/Denver", 20,
              Contact("pipeline-lee", "Lee Chen", "billing", "+13035550188", "+13035550188",
                      "u-lee", "lee@pipeline.example")),
     {"messages": 31000, "seats": 8, "integrations": 4}),
    (DemoAccount("northwind-msp", "Northwind IT", "starter", "it_msp", "Europe/London", 15,
              Contact("northwind-ali", "Ali Khan", "billing", "+442079460958", None, "u-ali",
                      "ali@northwind.example")),
     {"messages": 800, "seats": 2, "integrations": 1, "feature:workflows": 3}),
    (DemoAccount("quiet-studio", "Quiet Studio", "starter", "generic", "Australia/Sydney", 3,
              Contact("quiet-max", "Max Hill", "billing", "+61291234567", None, "u-max",
                      "max@quiet.example")),
     {"messages": 400, "seats": 2, "integrations": 0}),
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
    for demo, usage in ACCOUNTS:
        if only_missing:
            with runtime.uow() as uow:
                if uow.accounts.get(demo.external_id) is not None:
                    continue
        plan_since = now - timedelta(days=demo.plan_days) if demo.plan_days else None
        services.upsert_account(runtime.uow(), runtime.catalog, AccountInput(
            external_id=demo.external_id, name=demo.name, plan=demo.plan, vertical=demo.vertical,
            timezone=demo.timezone, billing_day=demo.billing_day, contacts=(demo.contact,),
            plan_since=plan_since), now)
        services.record_usage(runtime.uow(), runtime.catalog,
                              _events(demo.external_id, usage, now), now)
        loaded += 1
    return loaded
