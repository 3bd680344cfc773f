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

BATCH = 500
# What counts as gone out: sent by us, delivered, or returned to the API's caller to deliver.
SENT = ("sent", "delivered", "read", "relayed")


class SqlMetricsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def opportunity_facts(self, start: datetime, end: datetime) -> list[OpportunityFacts]:
        first = (select(SignalRow.account_id, func.min(SignalRow.detected_at).label("first"))
                 .where(SignalRow.direction == "up", SignalRow.detected_at >= start,
                        SignalRow.detected_at < end)
                 .group_by(SignalRow.account_id).subquery())
        rows = self.session.execute(
            select(SignalRow.id, SignalRow.account_id, SignalRow.metric, SignalRow.from_plan,
                   SignalRow.to_plan, SignalRow.crossed_at, SignalRow.detected_at,
                   SignalRow.outcome, SignalRow.reason, SignalRow.thread_id,
                   AccountRow.external_id, AccountRow.vertical)
            .join(first, (first.c.account_id == SignalRow.account_id)
                  & (first.c.first == SignalRow.detected_at))
            .join(AccountRow, AccountRow.id == SignalRow.account_id)
            .where(SignalRow.direction == "up")
            .order_by(SignalRow.account_id, SignalRow.id)).all()
        chosen: dict[int, Any] = {}
        for row in rows:  # two metrics crossing at once: the first recorded
            chosen.setdefault(row.account_id, row)
        signals = list(chosen.values())
        out: list[OpportunityFacts] = []
        for i in range(0, len(signals), BATCH):
            out.extend(self._facts(signals[i:i + BATCH]))
        return out

    def _facts(self, signals: list[Any]) -> list[OpportunityFacts]:
        thread_ids = [s.thread_id for s in signals if s.thread_id is not None]
        threads = {t.id: t for t in self.session.execute(
            select(ThreadRow.id, ThreadRow.state, ThreadRow.decline_reason)
            .where(ThreadRow.id.in_(thread_ids)))} if thread_ids else {}
        openings: dict[int, tuple[datetime, str]] = {}
        if thread_ids:
            went = func.coalesce(MessageRow.sent_at, MessageRow.at, type_=UTCDateTime())
            for m in self.session.execute(
                    select(MessageRow.thread_id, MessageRow.channel, went.label("went"))
                    .where(MessageRow.thread_id.in_(thread_ids), MessageRow.direction == "out",
                           MessageRow.status.in_(SENT))
                    .order_by(MessageRow.thread_id, went, MessageRow.id)):
                openings.setdefault(m.thread_id, (m.went, m.channel))
        since = min(s.detected_at for s in signals)
        moves: dict[int, list[PlanMove]] = defaultdict(list)
        for h in self.session.execute(
                select(PlanHistoryRow.account_id, PlanHistoryRow.at, PlanHistoryRow.from_plan,
                       PlanHistoryRow.to_plan)
                .where(PlanHistoryRow.account_id.in_([s.account_id for s in signals]),
                       PlanHistoryRow.at >= since)
                .order_by(PlanHistoryRow.account_id, PlanHistoryRow.at, PlanHistoryRow.id)):
            moves[h.account_id].append(PlanMove(h.at, h.from_plan, h.to_plan))
        out = []
        for s in signals:
            thread = threads.get(s.thread_id) if s.thread_id is not None else None
            opening = openings.get(s.thread_id) if s.thread_id is not None else None
            out.append(OpportunityFacts(
                account=s.external_id, vertical=s.vertical, metric=s.metric,
                from_plan=s.from_plan, to_plan=s.to_plan, crossed_at=s.crossed_at,
                detected_at=s.detected_at, outcome=s.outcome, reason=s.reason,
                thread_state=thread.state if thread else None,
                decline_reason=thread.decline_reason if thread else None,
                opening_channel=opening[1] if opening else None,
                opening_sent_at=opening[0] if opening else None,
                plan_moves=tuple(m for m in moves[s.account_id] if m.at >= s.detected_at)))
        return out
