"""The job outbox and the signed webhook sender, on real SQLite and PostgreSQL against a real
local HTTP server: idempotent enqueueing, signatures, backoff, failures, leases, concurrency."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from web.webhooks import SignedWebhookSender, WebhookError, verify_signature
from core.jobs import AccountRefused, Backoff, ProviderBusy, Settle
from storage.models import OutboxRow
from storage.outbox import DispatchStats, OutboxDispatcher, enqueue
from tests.conftest import NOW
from tests.support.receiver import HANG, HANG_SECONDS

SECRET = "whsec-test-0123456789"
KIND = "billing.plan_change"
PAYLOAD = {"account": "acct-1", "from_plan": "starter", "to_plan": "growth",
           "effective": "2026-11-26", "charge_today": "12.50", "note": "Zürich"}
TIMEOUT = 0.2  # the sender's; a "hang" answers after HANG_SECONDS, well past it
LEASE = timedelta(minutes=5)


@pytest.fixture
def webhook(receiver, clock):
    return SignedWebhookSender(receiver.url, SECRET, timeout=TIMEOUT, clock=clock)


@pytest.fixture
def dispatcher(engine, webhook, clock):
    """Build a dispatcher on this test's database; keyword arguments override its settings."""

    def build(senders=None, **settings):
        return OutboxDispatcher(engine, {KIND: webhook} if senders is None else senders, clock,
                                **{"lease": LEASE, **settings})

    return build


def _enqueue(engine, key: str, *, kind: str = KIND, payload: dict = PAYLOAD, now=NOW) -> bool:
    with Session(engine) as session, session.begin():
        return enqueue(session, kind, key, payload, now)


def _row(engine, key: str) -> OutboxRow:
    with Session(engine) as session:
        return session.scalars(select(OutboxRow).where(OutboxRow.key == key)).one()


class _DispatcherDied(BaseException):
    """What a killed process looks like to the dispatcher: nothing after the send runs."""


def test_a_job_enqueued_twice_with_one_key_is_stored_once_and_delivered_once(
        engine, dispatcher, receiver):
    assert _enqueue(engine, "plan-change:1") is True
    assert _enqueue(engine, "plan-change:1", payload={"other": True}) is False

    with Session(engine) as session:
        assert len(session.scalars(select(OutboxRow)).all()) == 1
    row = _row(engine, "plan-change:1")
    assert (row.kind, row.payload, row.status, row.attempts) == (KIND, PAYLOAD, "pending", 0)
    assert row.next_attempt_at == NOW and row.created_at == NOW

    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    assert dispatcher().dispatch_due() == DispatchStats()
    assert receiver.per_key() == {"plan-change:1": 1}
    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, NOW, None)


def test_a_job_enqueued_in_a_transaction_that_rolls_back_is_never_sent(
        engine, dispatcher, receiver):
    with Session(engine) as session:
        assert enqueue(session, KIND, "plan-change:1", PAYLOAD, NOW) is True
        session.rollback()

    assert dispatcher().dispatch_due() == DispatchStats()
    assert receiver.requests == []


def test_a_delivered_webhook_is_signed_so_the_receiver_can_verify_it(
        engine, dispatcher, receiver, clock):
    _enqueue(engine, "plan-change:1")
    dispatcher().dispatch_due()

    [request] = receiver.requests
    body, headers = request.body, request.headers
    timestamp, signature = headers["X-Upgrade-Chat-Timestamp"], headers["X-Upgrade-Chat-Signature"]
    assert request.path == "/hooks/plan-change"
    assert body == (b'{"account":"acct-1","charge_today":"12.50","effective":"2026-11-26",'
                    b'"from_plan":"starter","note":"Z\\u00fcrich","to_plan":"growth"}')
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "plan-change:1"
    assert headers["User-Agent"] == "upgrade-chat"
    assert timestamp == str(int(clock.now.timestamp()))
    assert signature.startswith("sha256=")

    assert verify_signature(SECRET, timestamp, body, signature, now=clock.now)
    assert not verify_signature("another-secret", timestamp, body, signature, now=clock.now)
    assert not verify_signature(SECRET, timestamp, body.replace(b"growth", b"scale"), signature,
                                now=clock.now)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), body, signature, now=clock.now)
    assert not verify_signature(SECRET, timestamp, body, signature,
                                now=clock.now + timedelta(minutes=6))  # a late replay
    assert not verify_signature(SECRET, "not-a-number", body, signature, now=clock.now)
    assert not verify_signature(SECRET, timestamp, body, "sha256=ünicode", now=clock.now)


def test_a_server_error_is_retried_after_the_backoff_and_not_before(
        engine, dispatcher, receiver, clock):
    receiver.answer(500, 200)
    _enqueue(engine, "plan-change:1")
    outbox = dispatcher(base_delay=timedelta(seconds=10))

    assert outbox.dispatch_due() == DispatchStats(retried=1)
    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == NOW + timedelta(seconds=10)
    assert "HTTP 500" in row.last_error

    assert outbox.dispatch_due() == DispatchStats()
    clock.now = NOW + timedelta(seconds=9)
    assert outbox.dispatch_due() == DispatchStats()
    assert len(receiver.requests) == 1

    clock.now = NOW + timedelta(seconds=10)
    assert outbox.dispatch_due() == DispatchStats(sent=1)
    assert receiver.per_key() == {"plan-change:1": 2}
    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts, row.sent_at) == ("sent", 2, clock.now)


def test_a_webhook_that_does_not_answer_in_time_is_retried(engine, dispatcher, receiver, clock):
    receiver.answer(HANG, 200)
    _enqueue(engine, "plan-change:1")
    outbox = dispatcher()

    started = time.monotonic()
    assert outbox.dispatch_due() == DispatchStats(retried=1)
    assert time.monotonic() - started < HANG_SECONDS
    assert "timed out" in _row(engine, "plan-change:1").last_error

    clock.now = NOW + timedelta(seconds=10)
    assert outbox.dispatch_due() == DispatchStats(sent=1)
    assert receiver.per_key() == {"plan-change:1": 2}


def test_a_rejected_webhook_fails_at_once_and_is_never_retried(
        engine, dispatcher, receiver, clock):
    receiver.answer((400, "x" * 1000))
    _enqueue(engine, "plan-change:1")
    outbox = dispatcher()

    assert outbox.dispatch_due() == DispatchStats(failed=1)
    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts) == ("failed", 1)
    assert "HTTP 400" in row.last_error
    assert "x" * 200 in row.last_error and "x" * 201 not in row.last_error

    clock.now = NOW + timedelta(days=1)
    assert outbox.dispatch_due() == DispatchStats()
    assert len(receiver.requests) == 1


def test_a_job_fails_for_good_once_it_reaches_max_attempts_with_capped_backoff(
        engine, dispatcher, receiver, clock):
    receiver.answer(503, 429, 503)
    _enqueue(engine, "plan-change:1")
    outbox = dispatcher(max_attempts=3, base_delay=timedelta(seconds=10),
                        max_delay=timedelta(seconds=15))

    assert outbox.dispatch_due() == DispatchStats(retried=1)
    assert _row(engine, "plan-change:1").next_attempt_at == NOW + timedelta(seconds=10)
    clock.now += timedelta(seconds=10)
    assert outbox.dispatch_due() == DispatchStats(retried=1)
    assert _row(engine, "plan-change:1").next_attempt_at == clock.now + timedelta(seconds=15)
    clock.now += timedelta(seconds=15)
    assert outbox.dispatch_due() == DispatchStats(failed=1)

    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts) == ("failed", 3)
    assert "HTTP 503" in row.last_error
    clock.now += timedelta(days=1)
    assert outbox.dispatch_due() == DispatchStats()
    assert len(receiver.requests) == 3


def test_a_job_whose_sender_crashes_does_not_stop_the_next_job(
        engine, dispatcher, webhook, receiver):
    def crash(job):
        raise RuntimeError("the CSM notifier has a bug")

    _enqueue(engine, "notice:1", kind="csm.notice")
    _enqueue(engine, "plan-change:1")

    assert dispatcher({"csm.notice": crash, KIND: webhook}).dispatch_due() == \
        DispatchStats(sent=1, retried=1)
    # A crash's text may quote what it failed on: the record has its type (the log its frames).
    assert _row(engine, "notice:1").last_error == "builtins.RuntimeError (details withheld)"
    assert _row(engine, "plan-change:1").status == "sent"
    assert receiver.per_key() == {"plan-change:1": 1}


def test_a_job_of_a_kind_with_no_sender_fails_with_a_clear_error(engine, dispatcher, receiver):
    _enqueue(engine, "mystery:1", kind="mystery")

    assert dispatcher().dispatch_due() == DispatchStats(failed=1)
    row = _row(engine, "mystery:1")
    assert row.status == "failed"
    assert "no sender is configured for outbox kind 'mystery'" in row.last_error
    assert receiver.requests == []


def test_two_dispatchers_running_at_once_deliver_every_job_exactly_once(
        engine, dispatcher, receiver):
    keys = [f"plan-change:{n}" for n in range(20)]
    for key in keys:
        _enqueue(engine, key)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    @event.listens_for(engine, "after_cursor_execute")
    def linger_after_claiming(conn, cursor, statement, parameters, context, executemany):
        # Widen the gap between selecting due jobs and leasing them, so the other dispatcher's
        # claim runs inside it: a claim that did not lock its rows would then double-send.
        if statement.startswith("SELECT") and "ORDER BY outbox.next_attempt_at" in statement:
            time.sleep(0.02)

    def run(outbox: OutboxDispatcher) -> None:
        try:
            start.wait()
            while outbox.dispatch_due(limit=3) != DispatchStats():
                pass
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(dispatcher(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert errors == []
    assert receiver.per_key() == {key: 1 for key in keys}
    assert {_row(engine, key).status for key in keys} == {"sent"}


def test_a_job_whose_dispatcher_died_mid_send_is_sent_again_once_the_lease_ends(
        engine, dispatcher, webhook, receiver, clock):
    def send_then_die(job):
        webhook(job)
        raise _DispatcherDied()

    _enqueue(engine, "plan-change:1")
    with pytest.raises(_DispatcherDied):
        dispatcher({KIND: send_then_die}).dispatch_due()
    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, NOW + LEASE)

    healthy = dispatcher()
    clock.now = NOW + LEASE - timedelta(seconds=1)
    assert healthy.dispatch_due() == DispatchStats()
    clock.now = NOW + LEASE
    assert healthy.dispatch_due() == DispatchStats(sent=1)

    # At least once: the receiver saw the job twice, under one idempotency key.
    assert receiver.per_key() == {"plan-change:1": 2}
    assert _row(engine, "plan-change:1").attempts == 2


def test_a_job_that_kills_its_dispatcher_every_time_fails_after_max_attempts(
        engine, dispatcher, clock):
    def die(job):
        raise _DispatcherDied()

    _enqueue(engine, "plan-change:1")
    doomed = dispatcher({KIND: die}, max_attempts=2)
    for _ in range(2):
        with pytest.raises(_DispatcherDied):
            doomed.dispatch_due()
        clock.now += LEASE

    assert doomed.dispatch_due() == DispatchStats(failed=1)
    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts) == ("failed", 2)
    assert "no outcome recorded for the last" in row.last_error


def test_a_late_failure_after_the_lease_ran_out_does_not_undo_a_newer_delivery(
        engine, dispatcher, webhook, receiver, clock):
    healthy = dispatcher()

    def slow_then_fail(job):
        # While this send drags on past its lease, another dispatcher takes the job and delivers
        # it. (That it can, on SQLite and PostgreSQL, shows no lock is held during a send.)
        clock.now += LEASE
        assert healthy.dispatch_due() == DispatchStats(sent=1)
        raise WebhookError("webhook unreachable: timed out")

    _enqueue(engine, "plan-change:1")
    assert dispatcher({KIND: slow_then_fail}).dispatch_due() == DispatchStats()

    row = _row(engine, "plan-change:1")
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert receiver.per_key() == {"plan-change:1": 1}


def test_a_batch_that_outlives_its_lease_leaves_the_rest_to_the_next_run(
        engine, dispatcher, webhook, receiver, clock):
    def slow(job):
        webhook(job)
        clock.now += LEASE  # this send took the whole lease

    _enqueue(engine, "plan-change:1")
    _enqueue(engine, "plan-change:2")
    outbox = dispatcher({KIND: slow})

    assert outbox.dispatch_due() == DispatchStats(sent=1)
    row = _row(engine, "plan-change:2")
    assert (row.status, row.next_attempt_at) == ("pending", NOW + LEASE)
    assert dispatcher().dispatch_due() == DispatchStats(sent=1)
    assert receiver.per_key() == {"plan-change:1": 1, "plan-change:2": 1}


def test_a_refused_account_holds_its_kind_untried_and_lets_the_other_kinds_go_out(
        engine, dispatcher, webhook, receiver, clock):
    calls = []

    def refused(job):
        calls.append(job.key)
        raise AccountRefused("the provider refused the account (a test)")

    for n in range(3):
        _enqueue(engine, f"notice:{n}", kind="csm.notice")
    _enqueue(engine, "plan-change:1")
    outbox = dispatcher({"csm.notice": refused, KIND: webhook}, max_attempts=1)

    # One request of the refused kind, then its batch-mates are given back with it; the other
    # kind is sent all the same.
    assert outbox.dispatch_due() == DispatchStats(sent=1, held=3)
    assert calls == ["notice:0"]
    assert receiver.per_key() == {"plan-change:1": 1}
    for n in range(3):
        row = _row(engine, f"notice:{n}")
        assert (row.status, row.attempts, row.next_attempt_at) == (
            "pending", 0, NOW + timedelta(minutes=5))
        assert row.last_error == "the provider refused the account (a test)"
    assert outbox.dispatch_due() == DispatchStats()  # not due again yet

    # Held more often than max_attempts allows, and still nothing fails: no attempt counted.
    clock.now += timedelta(minutes=5)
    assert outbox.dispatch_due() == DispatchStats(held=3)
    clock.now += timedelta(minutes=5)
    assert dispatcher({"csm.notice": lambda job: None}, max_attempts=1).dispatch_due() == \
        DispatchStats(sent=3)


def test_a_provider_asking_to_wait_holds_its_kind_for_the_retry_after_and_counts_no_attempt(
        engine, dispatcher, webhook, receiver, clock):
    calls = []
    busy = [True]

    def provider(job):
        calls.append(job.key)
        if busy[0]:
            raise ProviderBusy("HTTP 503: asked to wait", 20503,
                               retry_after=timedelta(seconds=40))

    for n in range(2):
        _enqueue(engine, f"notice:{n}", kind="csm.notice")
    _enqueue(engine, "plan-change:1")
    outbox = dispatcher({"csm.notice": provider, KIND: webhook}, max_attempts=1)
    assert outbox.dispatch_due() == DispatchStats(sent=1, held=2)
    assert calls == ["notice:0"]
    for n in range(2):
        row = _row(engine, f"notice:{n}")
        assert (row.status, row.attempts, row.next_attempt_at) == (
            "pending", 0, NOW + timedelta(seconds=40))

    # A job of the kind that is due meanwhile waits too: the provider is not asked before then.
    _enqueue(engine, "notice:late", kind="csm.notice", now=NOW + timedelta(seconds=10))
    for seconds in (10, 20, 39):
        clock.now = NOW + timedelta(seconds=seconds)
        assert outbox.dispatch_due() == DispatchStats()
    assert calls == ["notice:0"]

    clock.now = NOW + timedelta(seconds=40)  # asked again (the job due first), still busy:
    assert outbox.dispatch_due() == DispatchStats(held=3)  # held again, not failed
    assert calls == ["notice:0", "notice:late"]
    busy[0] = False
    clock.now += timedelta(seconds=40)
    assert outbox.dispatch_due() == DispatchStats(sent=3)
    assert calls[2:] == ["notice:0", "notice:1", "notice:late"]


def test_a_kind_with_its_own_backoff_is_retried_on_its_own_schedule(
        engine, dispatcher, webhook, receiver, clock):
    def flaky(job):
        raise WebhookError("try later")

    _enqueue(engine, "notice:1", kind="csm.notice")
    _enqueue(engine, "plan-change:1")
    receiver.answer(500)
    outbox = dispatcher({"csm.notice": flaky, KIND: webhook}, base_delay=timedelta(seconds=10),
                        backoffs={"csm.notice": Backoff(max_attempts=2,
                                                        base_delay=timedelta(minutes=1))})
    assert outbox.dispatch_due() == DispatchStats(retried=2)
    assert _row(engine, "notice:1").next_attempt_at == NOW + timedelta(minutes=1)
    assert _row(engine, "plan-change:1").next_attempt_at == NOW + timedelta(seconds=10)
    clock.now += timedelta(minutes=1)
    assert outbox.dispatch_due() == DispatchStats(sent=1, failed=1)  # its 2nd and last attempt
    assert _row(engine, "notice:1").status == "failed"


class _Handler:
    """A kind whose jobs are checked at claim: even payloads go out, odd ones are cancelled."""

    def __init__(self) -> None:
        self.recorded = []

    def prepare(self, uow, jobs, now):
        return {job.id: job.payload["n"] if job.payload["n"] % 2 == 0
                else Settle("cancelled", f"{job.payload['n']} is odd") for job in jobs}

    def send(self, job, prepared):
        return f"sent {prepared}"

    def record(self, uow, job, prepared, outcome, now):
        self.recorded.append((job.key, outcome.status, outcome.attempts, outcome.result,
                              outcome.error))


def test_a_handler_settles_jobs_at_claim_and_records_every_outcome(engine, dispatcher):
    handler = _Handler()
    for n in range(4):
        _enqueue(engine, f"n:{n}", kind="numbers", payload={"n": n})
    assert dispatcher({"numbers": handler}).dispatch_due() == DispatchStats(sent=2, cancelled=2)
    assert sorted(handler.recorded) == [
        ("n:0", "sent", 1, "sent 0", None), ("n:1", "cancelled", 0, None, "1 is odd"),
        ("n:2", "sent", 1, "sent 2", None), ("n:3", "cancelled", 0, None, "3 is odd")]
    row = _row(engine, "n:1")
    assert (row.status, row.attempts, row.last_error) == ("cancelled", 0, "1 is odd")
    assert dispatcher({"numbers": handler}).dispatch_due() == DispatchStats()


def test_a_webhook_sender_needs_an_http_url_and_a_secret(clock):
    with pytest.raises(ValueError):
        SignedWebhookSender("ftp://example.com/hook", SECRET, clock=clock)
    with pytest.raises(ValueError):
        SignedWebhookSender("https://example.com/hook", "", clock=clock)
    assert SECRET not in repr(SignedWebhookSender("https://example.com/hook", SECRET, clock=clock))
