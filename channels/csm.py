"""The CSM lane's notifier until Slack arrives: escalations are logged for the operator.

It is the sender of the "csm_escalation" outbox jobs (core.engine enqueues one per escalation,
after which the Slack adapter of a later issue takes its place). The log line carries the account
id, the reason and the thread, never message text or phone numbers.
"""

from __future__ import annotations

import logging

from core.jobs import OutboxJob

log = logging.getLogger(__name__)


class LoggingCsmNotifier:
    def __call__(self, job: OutboxJob) -> None:
        p = job.payload
        log.warning("CSM escalation: account %s, reason %s, thread %s", p.get("account"),
                    p.get("reason"), p.get("thread_id"))
