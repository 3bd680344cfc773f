"""The accounts as an operator browses them (the API's `GET /accounts`, the console's list and
home page): paged, filtered by plan, vertical and the live thread's state, searched by id and
name; and the counts the console's home page shows."""

from __future__ import annotations

from dataclasses import dataclass

from core.catalog import Catalog
from core.conversation import LIVE
from core.errors import DomainError
from core.ports import AccountFilter, AccountSummary, UnitOfWork

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_QUERY = 200
NO_LIVE_THREAD = "none"
STATES = tuple(sorted(str(s) for s in LIVE)) + (NO_LIVE_THREAD,)


@dataclass(frozen=True)
class AccountPage:
    items: tuple[AccountSummary, ...]
    total: int
    page: int
    per_page: int

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page * self.per_page < self.total else None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class AccountCounts:
    total: int
    by_plan: dict[str, int]
    by_state: dict[str, int]  # the live thread's state, or "none"


def check_filter(catalog: Catalog, filters: AccountFilter) -> AccountFilter:
    """The filter, checked: a known plan, a live state or "none", a search of at most 200
    characters; blank values count as not given."""
    def given(value: str | None) -> str | None:
        return value if value is not None and value.strip() else None

    plan, vertical, state, q = (given(filters.plan), given(filters.vertical),
                                given(filters.state), given(filters.q))
    if plan is not None and plan not in catalog.plans:
        raise DomainError(f"plan: unknown plan {plan!r}; known: {', '.join(catalog.plans)}",
                          code="unknown_plan", field="plan")
    if state is not None and state not in STATES:
        raise DomainError(f"state: expected one of {', '.join(STATES)}, got {state!r}",
                          code="invalid_state", field="state")
    if q is not None and len(q) > MAX_QUERY:
        raise DomainError(f"q: at most {MAX_QUERY} characters", code="too_long", field="q")
    return AccountFilter(plan=plan, vertical=vertical, state=state,
                         q=q.strip() if q is not None else None)


def list_accounts(uow: UnitOfWork, catalog: Catalog, filters: AccountFilter, *, page: int = 1,
                  per_page: int = DEFAULT_PER_PAGE) -> AccountPage:
    """One page of the accounts matching `filters`, by external id."""
    if page < 1:
        raise DomainError(f"page: expected a whole number >= 1, got {page}", code="invalid_page",
                          field="page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise DomainError(f"per_page: expected 1 to {MAX_PER_PAGE}, got {per_page}",
                          code="invalid_page", field="per_page")
    checked = check_filter(catalog, filters)
    with uow:
        total, items = uow.reads.page(checked, (page - 1) * per_page, per_page)
    return AccountPage(tuple(items), total, page, per_page)


def account_counts(uow: UnitOfWork) -> AccountCounts:
    """How many accounts there are, by plan and by their live thread's state."""
    with uow:
        by_plan, by_state = uow.reads.counts()
    return AccountCounts(sum(by_plan.values()), by_plan, by_state)
