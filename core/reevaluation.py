"""Every account's thresholds evaluated again, at `now`, with no new event: what a catalog change
asks for (`flask --app app thresholds reevaluate`).

Ingestion evaluates an account's thresholds only when its usage arrives, so a catalog that
lowers a threshold would otherwise reach an account already above the new level only on its
next event of that metric, and one that raises it would leave the old "above" standing. The
re-evaluation walks every account by id, a page at a time:

- read (one unit of work per page, nothing locked): the accounts' plan terms, their threshold
  state and their usage matrices (`UsageRepository.matrices`, the rollups ingestion keeps);
- evaluate each in the core (`core.thresholds.reevaluate`: the state carried over into the
  catalog's keys, then crossings for what is met and was not, re-armed keys for what is not);
- write only the accounts whose state or crossings change, in a unit of work that locks them
  first (in id order, as ingestion does), reads them again under the lock and decides again,
  so a batch ingested meanwhile is not overwritten. A crossing is handled exactly as
  ingestion's (`record_usage`): through the guardrails (`open_conversation`: quiet hours, caps,
  cooldowns, health, the control cohort logged and not prompted), its opening queued in the
  outbox in the same transaction (nothing is sent before the commit), the decision stored on
  the signal.

Running it again changes nothing: the state it wrote is what it would compute again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.catalog import Catalog
from core.errors import DomainError
from core.handlers import Settings, open_conversation
from core.ports import SignalDecision, UnitOfWork, UsageTerms
from core.retry import retrying
from core.thresholds import Crossing, carry_over, reevaluate

log = logging.getLogger(__name__)

BATCH = 1_000  # accounts read per unit of work
WRITE_BATCH = 200  # accounts changed per writing unit of work: short transactions, short locks


@dataclass
class Reevaluation:
    """What a re-evaluation did: accounts walked, accounts changed, keys added and removed,
    crossings and the guardrails' decisions on them ("prompted", "suppressed: control", ...)."""

    accounts: int = 0
    unknown_plan: int = 0  # on a plan the catalog does not have: left as they are
    changed: int = 0  # accounts whose state or signals were written
    keys_added: int = 0  # thresholds met now that were not
    keys_removed: int = 0  # re-armed (no longer met), or of a threshold the catalog lacks
    keys_moved: int = 0  # kept, under the threshold's new level (core.thresholds.carry_over)
    crossings: int = 0
    decisions: Counter[str] = field(default_factory=Counter)

    def add(self, other: Reevaluation) -> None:
        self.changed += other.changed
        self.keys_added += other.keys_added
        self.keys_removed += other.keys_removed
        self.keys_moved += other.keys_moved
        self.crossings += other.crossings
        self.decisions.update(other.decisions)


def _label(decision: SignalDecision | None) -> str:
    if decision is None:
        return "recorded"
    return f"{decision.outcome}: {decision.reason}" if decision.reason else str(decision.outcome)


def reevaluate_thresholds(uows: Callable[[], UnitOfWork], read_uows: Callable[[], UnitOfWork],
                          catalog: Catalog, now: datetime, settings: Settings | None, *,
                          batch: int = BATCH, write_batch: int = WRITE_BATCH,
                          progress: Callable[[int], None] | None = None) -> Reevaluation:
    """Evaluate every account's thresholds and the down-tier rule at `now` (see the module's
    docstring). `read_uows` makes the read-only units of work of the walk, `uows` the writing
    ones; with `settings` a crossing goes through the guardrails and may open a conversation,
    without them it is only recorded (as `record_usage` does). `progress` hears how many
    accounts each page held."""
    result = Reevaluation()
    after = 0
    while True:
        uow = read_uows()
        with uow:
            page = uow.accounts.usage_terms_after(after, batch)
            ids = [terms.id for _, terms in page]
            states = uow.thresholds.get_many(ids)
            matrices = uow.usage.matrices(ids, now)
        if not page:
            break
        pending = []
        for external_id, terms in page:
            plan = catalog.plans.get(terms.plan)
            if plan is None:
                result.unknown_plan += 1
                continue
            before = states.get(terms.id, frozenset())
            fired, state = reevaluate(catalog, plan, matrices[terms.id], before,
                                      terms.plan_since, now)
            if fired or state != before:
                pending.append(external_id)
        for i in range(0, len(pending), write_batch):
            result.add(_apply(uows(), catalog, settings, pending[i:i + write_batch], now))
        result.accounts += len(page)
        after = page[-1][1].id
        if progress is not None:
            progress(len(page))
        if len(page) < batch:
            break
    if result.crossings:
        log.info("thresholds re-evaluated: %d accounts, %d changed, %d crossings",
                 result.accounts, result.changed, result.crossings)
    return result


def _apply(uow: UnitOfWork, catalog: Catalog, settings: Settings | None,
           external_ids: Sequence[str], now: datetime) -> Reevaluation:
    """Lock these accounts, read them again and write what the evaluation changes, in one unit
    of work: the state, the signals and what the guardrails decide on them."""

    def attempt() -> Reevaluation:
        done = Reevaluation()
        with uow:
            terms: dict[str, UsageTerms] = uow.accounts.lock_usage_terms(external_ids)
            ids = [t.id for t in terms.values()]
            states = uow.thresholds.get_many(ids)
            matrices = uow.usage.matrices(ids, now)
            changed: dict[int, frozenset[str]] = {}
            crossings: list[tuple[int, Crossing, SignalDecision | None]] = []
            for t in sorted(terms.values(), key=lambda t: t.id):
                try:
                    plan = catalog.plan(t.plan)
                except DomainError:
                    continue  # its plan changed meanwhile to one the catalog lacks
                before = states.get(t.id, frozenset())
                fired, state = reevaluate(catalog, plan, matrices[t.id], before, t.plan_since,
                                          now)
                if state == before and not fired:
                    continue
                done.changed += 1
                carried = carry_over(catalog, plan, before)
                done.keys_moved += len((carried - before) & state)
                done.keys_added += len(state - carried)
                done.keys_removed += len(before - state) - len((carried - before) & state)
                if state != before:
                    changed[t.id] = state
                if fired and settings is not None:
                    account = uow.accounts.get_by_id(t.id)
                    crossings.extend((t.id, c, open_conversation(
                        uow, catalog, settings, account, matrices[t.id], c, now)) for c in fired)
                else:
                    crossings.extend((t.id, c, None) for c in fired)
            uow.thresholds.replace_many(changed, now)
            uow.signals.add_many(crossings, now)
            uow.commit()
        done.crossings = len(crossings)
        done.decisions.update(_label(d) for _, _, d in crossings)
        return done

    return retrying(attempt)
