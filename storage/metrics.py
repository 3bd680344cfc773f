"""The facts the program's figures are computed from (core.ports.MetricsRepository): each
account's first up-tier crossing in a window, with its thread, the thread's first message that
went out (the opening, or the reply that carried it) and the account's plan history from then
on. Read in batches of accounts; the figures themselves are core.metrics'."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.ports import OpportunityFacts, PlanMove
from storage.models import (AccountRow, MessageRow, PlanHistoryRow, SignalRow, ThreadRow,
                            UTCDateTime)

# What counts as gone out: sent by us, delivered, or returned to the API's caller to deliver.
SENT = ("sent", "delivered", "read", "relayed")


class SqlMetricsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def opportunity_facts(self, start: datetime, end: datetime) -> list[OpportunityFacts]:
        """Three statements whatever the window holds, each joined to the window's first
        crossings on the server: the crossings with their threads, the outbound messages that
        went out in those threads, the plan history from each crossing on. (One batch of
        500 accounts at a time with id lists cost a statement compiled and three round trips per
        batch: at a million accounts, minutes; bench/scale.py.)"""
        first = (select(SignalRow.account_id, func.min(SignalRow.detected_at).label("first"))
                 .where(SignalRow.direction == "up", SignalRow.detected_at >= start,
                        SignalRow.detected_at < end)
                 .group_by(SignalRow.account_id).subquery())
        at_first = (first.c.account_id == SignalRow.account_id) & \
            (first.c.first == SignalRow.detected_at)
        rows = self.session.execute(
            select(SignalRow.id, SignalRow.account_id, SignalRow.metric, SignalRow.from_plan,
                   SignalRow.to_plan, SignalRow.crossed_at, SignalRow.detected_at,
                   SignalRow.outcome, SignalRow.reason, SignalRow.thread_id,
                   AccountRow.external_id, AccountRow.vertical,
                   ThreadRow.state.label("thread_state"), ThreadRow.decline_reason)
            .join(first, at_first)
            .join(AccountRow, AccountRow.id == SignalRow.account_id)
            .outerjoin(ThreadRow, ThreadRow.id == SignalRow.thread_id)
            .where(SignalRow.direction == "up")
            .order_by(SignalRow.account_id, SignalRow.id)).all()
        chosen: dict[int, Any] = {}
        for row in rows:  # two metrics crossing at once: the first recorded
            chosen.setdefault(row.account_id, row)
        if not chosen:
            return []
        threads = (select(SignalRow.thread_id).join(first, at_first)
                   .where(SignalRow.direction == "up", SignalRow.thread_id.is_not(None)))
        openings: dict[int, tuple[datetime, str]] = {}
        went = func.coalesce(MessageRow.sent_at, MessageRow.at, type_=UTCDateTime())
        for m in self.session.execute(
                select(MessageRow.thread_id, MessageRow.channel, went.label("went"))
                .where(MessageRow.thread_id.in_(threads), MessageRow.direction == "out",
                       MessageRow.status.in_(SENT))
                .order_by(MessageRow.thread_id, went, MessageRow.id)):
            openings.setdefault(m.thread_id, (m.went, m.channel))
        moves: dict[int, list[PlanMove]] = defaultdict(list)
        for h in self.session.execute(
                select(PlanHistoryRow.account_id, PlanHistoryRow.at, PlanHistoryRow.from_plan,
                       PlanHistoryRow.to_plan)
                .join(first, (first.c.account_id == PlanHistoryRow.account_id)
                      & (PlanHistoryRow.at >= first.c.first))
                .order_by(PlanHistoryRow.account_id, PlanHistoryRow.at, PlanHistoryRow.id)):
            moves[h.account_id].append(PlanMove(h.at, h.from_plan, h.to_plan))
        out = []
        for s in chosen.values():
            opening = openings.get(s.thread_id) if s.thread_id is not None else None
            out.append(OpportunityFacts(
                account=s.external_id, vertical=s.vertical, metric=s.metric,
                from_plan=s.from_plan, to_plan=s.to_plan, crossed_at=s.crossed_at,
                detected_at=s.detected_at, outcome=s.outcome, reason=s.reason,
                thread_state=s.thread_state, decline_reason=s.decline_reason,
                opening_channel=opening[1] if opening else None,
                opening_sent_at=opening[0] if opening else None,
                plan_moves=tuple(moves[s.account_id])))
        return out
