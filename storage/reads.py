"""Read models over accounts (core.ports.AccountReads): the paged, filtered account listing
with each account's live thread, the console's counts, and the rows one account's ledger is
assembled from (core.ledger). They only answer: nothing here locks or writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from core.accounts import Health
from core.ports import (AccountFilter, AccountSummary, CallView, ConsentEventView,
                        MessageView)
from storage.calls import _view as _call
from storage.conversations import _message, _thread
from storage.models import (LIVE_STATES, AccountRow, CallRow, ConsentEventRow, ContactRow,
                            MessageRow, ThreadRow)

NO_LIVE_THREAD = "none"


def _listing() -> Select[Any]:
    """Accounts with their live thread, if any (the newest, were there two for two targets)."""
    live = (select(ThreadRow.account_id, func.max(ThreadRow.id).label("thread_id"))
            .where(ThreadRow.state.in_(LIVE_STATES)).group_by(ThreadRow.account_id).subquery())
    return (select(AccountRow, ThreadRow)
            .outerjoin(live, live.c.account_id == AccountRow.id)
            .outerjoin(ThreadRow, ThreadRow.id == live.c.thread_id))


class SqlAccountReads:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(self, filters: AccountFilter, offset: int,
             limit: int) -> tuple[int, list[AccountSummary]]:
        """The page's accounts by external id, then the live threads of those alone.

        The live thread is the newest of an account's live threads. Only a filter on its state
        joins the threads to every account (from the threads in that state: the fewer side);
        otherwise the count and the page read the accounts alone, and the page's live threads
        are one lookup of its ids. (Joining every account to an aggregate of every live thread
        made a page of 50 cost a pass over all of them per row: bench/scale.py.)"""
        live = aliased(ThreadRow)
        query = select(AccountRow)
        if filters.plan is not None:
            query = query.where(AccountRow.plan == filters.plan)
        if filters.vertical is not None:
            query = query.where(AccountRow.vertical == filters.vertical)
        if filters.state == NO_LIVE_THREAD:
            query = query.where(~exists().where(live.account_id == AccountRow.id,
                                                live.state.in_(LIVE_STATES)))
        elif filters.state is not None:
            # The account's live thread in this state with no newer live thread: correlated
            # to the threads in the state, not to every account.
            shown = aliased(ThreadRow)
            query = (query.join(shown, shown.account_id == AccountRow.id)
                     .where(shown.state == filters.state,
                            ~exists().where(live.account_id == shown.account_id,
                                            live.state.in_(LIVE_STATES), live.id > shown.id)))
        if filters.q:
            needle = filters.q.lower()
            query = query.where(or_(
                func.lower(AccountRow.external_id).contains(needle, autoescape=True),
                func.lower(AccountRow.name).contains(needle, autoescape=True)))
        total = int(self.session.scalar(
            select(func.count()).select_from(query.with_only_columns(AccountRow.id).subquery()))
            or 0)
        accounts = list(self.session.scalars(query.order_by(AccountRow.external_id)
                                             .offset(offset).limit(limit)))
        threads = {}
        if accounts:
            newest = (select(func.max(ThreadRow.id))
                      .where(ThreadRow.account_id.in_([a.id for a in accounts]),
                             ThreadRow.state.in_(LIVE_STATES))
                      .group_by(ThreadRow.account_id))
            threads = {t.account_id: t for t in self.session.scalars(
                select(ThreadRow).where(ThreadRow.id.in_(newest)))}
        return total, [AccountSummary(
            external_id=a.external_id, name=a.name, plan=a.plan, vertical=a.vertical,
            timezone=a.timezone,
            health=Health(csat=a.csat, sentiment=a.sentiment,
                          open_escalations=a.open_escalations, updated_at=a.health_updated_at),
            live_thread=_thread(threads[a.id]) if a.id in threads else None,
            updated_at=a.updated_at)
            for a in accounts]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        by_plan = {plan: int(n) for plan, n in self.session.execute(
            select(AccountRow.plan, func.count()).group_by(AccountRow.plan))}
        listing = _listing().subquery()
        state = func.coalesce(listing.c.state, NO_LIVE_THREAD)
        by_state = {s: int(n) for s, n in self.session.execute(
            select(state, func.count()).select_from(listing).group_by(state))}
        return by_plan, by_state

    def messages_of_account(self, account_id: int) -> list[MessageView]:
        """Every message of the account's threads, and those of its contacts outside one."""
        threads = select(ThreadRow.id).where(ThreadRow.account_id == account_id)
        contacts = select(ContactRow.id).where(ContactRow.account_id == account_id)
        rows = self.session.scalars(
            select(MessageRow).where(or_(MessageRow.thread_id.in_(threads),
                                         MessageRow.thread_id.is_(None)
                                         & MessageRow.contact_id.in_(contacts)))
            .order_by(MessageRow.at, MessageRow.id))
        return [_message(r) for r in rows]

    def calls_of_account(self, account_id: int) -> list[CallView]:
        rows = self.session.scalars(select(CallRow).where(CallRow.account_id == account_id)
                                    .order_by(CallRow.created_at, CallRow.id))
        return [_call(r) for r in rows]

    def consent_of_account(self, account_id: int) -> list[ConsentEventView]:
        rows = self.session.scalars(
            select(ConsentEventRow).join(ContactRow, ContactRow.id == ConsentEventRow.contact_id)
            .where(ContactRow.account_id == account_id)
            .order_by(ConsentEventRow.at, ConsentEventRow.id))
        return [ConsentEventView(contact_id=r.contact_id, action=r.action, channel=r.channel,
                                 source=r.source, at=r.at) for r in rows]
