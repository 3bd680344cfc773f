"""Beyond one machine: two web hosts and two schedulers on one PostgreSQL, as the production
layout runs them (docs/architecture.md, "Production layout").

Two real gunicorn processes with the shipped deploy/gunicorn.conf.py, each with its own instance
folder and spool (two "hosts"), and two `flask --app app scheduler` processes, all on one real
PostgreSQL database:

- Signed Twilio inbound messages go alternately to both web hosts from four client threads; one
  web host is killed (SIGKILL, its whole process group: a host that dies) mid-stream, and the
  clients send what failed to the survivor, as Twilio does when it cannot connect. Every
  MessageSid is stored once, with exactly one reply.
- A message one host kept in its spool (as it does while the database is unreachable) is
  replayed by that host itself: the schedulers, on another "host", never see that folder.
- Due outbox work (sandbox SMS replies and billing webhooks to a real local receiver) is sent
  exactly once by the two schedulers: the one holding the lock sends the first part; it is
  killed (SIGKILL) with nothing claimed; the other takes over and sends the rest.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from channels.twilio_messaging import InboundMessage, spool_entry
from storage.db import make_engine
from tests.conftest import API_KEY, Api
from tests.e2e.test_scheduler_due_work import (_enqueue_webhook, _lock_is_taken, _scheduler,
                                               _stop, _until)
from tests.e2e.test_serving import CONFIG, _free_port
from tests.e2e.test_twilio_inbound import (BASE, DANA, DANA_PHONE, TOKEN, Twilio, cross_messages,
                                           new_sid, replies, setup_account)
from web.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "how much would I be charged today?"
MESSAGES = 48  # inbound messages in the stream
CLIENTS = 4


# --- the web hosts ------------------------------------------------------------------------------

@dataclass
class Host:
    """One web host: gunicorn with the shipped config, one worker, its own instance folder."""

    name: str
    port: int
    folder: Path
    proc: subprocess.Popen
    log: Path

    @property
    def spool(self) -> Spool:
        return Spool(self.folder / "instance" / "spool")

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()[-3000:]}"
        try:
            return self.request("GET", "/healthz", timeout=2).status_code == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, response.getheader("Content-Type", ""),
                          response.read())
        finally:
            conn.close()

    # The test client's `post`, over a socket: tests.e2e.test_twilio_inbound.Twilio signs with it.
    def post(self, target: str, data: dict[str, str], headers: dict[str, str]) -> Answer:
        return self.request("POST", target, urlencode(data).encode(), {
            **headers, "Content-Type": "application/x-www-form-urlencoded"})

    def kill(self) -> None:
        """The host dies: gunicorn's master and its worker at once (SIGKILL to the group)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@dataclass
class Answer:
    status_code: int
    content_type: str
    data: bytes

    @property
    def mimetype(self) -> str:
        return self.content_type.split(";")[0].strip()


def _start_host(name: str, db_url: str, tmp_path: Path) -> Host:
    folder = tmp_path / name
    folder.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPGRADE_CHAT_")}
    env.pop("GUNICORN_CMD_ARGS", None)
    env.update(UPGRADE_CHAT_DATABASE_URL=db_url, UPGRADE_CHAT_API_KEY=API_KEY,
               UPGRADE_CHAT_INSTANCE_PATH=str(folder / "instance"),
               UPGRADE_CHAT_TWILIO_AUTH_TOKEN=TOKEN, UPGRADE_CHAT_PUBLIC_BASE_URL=BASE,
               UPGRADE_CHAT_CONTROL_SHARE="0", WEB_CONCURRENCY="1",
               PYTHONDONTWRITEBYTECODE="1")
    log = folder / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "--bind", f"127.0.0.1:{port}",
             "app:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: killed whole, as a host dies
    return Host(name, port, folder, proc, log)


def _stop_hosts(*hosts: Host | None) -> None:
    for host in hosts:
        if host is not None and host.proc.poll() is None:
            os.killpg(host.proc.pid, signal.SIGTERM)
    for host in hosts:
        if host is not None:
            try:
                host.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(host.proc.pid, signal.SIGKILL)
                host.proc.wait(timeout=10)


# --- the inbound stream ---------------------------------------------------------------------------

@dataclass
class Stream:
    """Signed inbound messages, each with its own MessageSid, sent by CLIENTS threads to the
    hosts in turn. A send that fails to get an answer (refused, reset, cut off) is sent again to
    the next host that is up, as Twilio does when it cannot connect; an answer of any status is
    final (Twilio does not retry it)."""

    hosts: list[Host]
    down: set[str] = field(default_factory=set)
    answers: dict[str, list[str]] = field(default_factory=dict)  # sid -> the TwiML's replies
    failed_sends: Counter = field(default_factory=Counter)  # host -> sends without an answer
    by_host: Counter = field(default_factory=Counter)  # host -> answers given
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, n: int) -> None:
        sid = new_sid()
        for attempt in range(10):
            live = [h for h in self.hosts if h.name not in self.down]
            host = live[(n + attempt) % len(live)]
            try:
                answer = Twilio(host).text(QUESTION, sid)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failed_sends[host.name] += 1
                time.sleep(0.05)
                continue
            with self.lock:
                self.answers[sid] = replies(answer)
                self.by_host[host.name] += 1
            return
        raise AssertionError(f"message {n} was never answered")

    def run(self, count: int, kill_after: int, victim: Host) -> None:
        counter = iter(range(count))
        sent = Counter()

        def client() -> None:
            for n in counter:
                if n == kill_after:
                    victim.kill()  # mid-stream: the other clients have requests in flight
                    with self.lock:
                        self.down.add(victim.name)
                self.send(n)
                with self.lock:
                    sent["n"] += 1
                time.sleep(0.02)

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sent["n"] == count, f"{sent['n']} of {count} sent"


# --- reading the database -----------------------------------------------------------------------

def _rows(db_url: str, sql: str, **params) -> list:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def _inbound_and_replies(db_url: str) -> dict[str, list[int]]:
    """MessageSid -> [stored inbound rows, stored replies to them]."""
    rows = _rows(db_url, """
        SELECT m.provider_id, m.id,
               (SELECT count(*) FROM messages r WHERE r.in_reply_to = m.id AND r.kind = 'reply')
        FROM messages m WHERE m.direction = 'in' AND m.channel = 'sms'""")
    found: dict[str, list[int]] = {}
    for sid, _id, reply_count in rows:
        seen = found.setdefault(sid, [0, 0])
        seen[0] += 1
        seen[1] += reply_count
    return found


def _outbox(db_url: str) -> dict[str, tuple[str, int]]:
    return {key: (status, attempts) for key, status, attempts in
            _rows(db_url, "SELECT key, status, attempts FROM outbox")}


def _leased(db_url: str) -> int:
    """Jobs claimed and not settled: a send started (attempts > 0) and still pending."""
    return _rows(db_url, "SELECT count(*) FROM outbox WHERE status = 'pending' "
                         "AND attempts > 0")[0][0]


def _deliver(api_post, n: int, prefix: str) -> None:
    """`n` buyer questions relayed with "deliver": true: each reply is queued for the outbox (an
    SMS, sent by the sandbox sender)."""
    for i in range(n):
        r = api_post(f"/conversations/{DANA}/messages",
                     {"channel": "sms", "text": QUESTION, "id": f"{prefix}-{i}",
                      "deliver": True})
        assert r[0] == 200 and len(r[1]["replies"]) == 1, r


# --- the test -----------------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_web_hosts_and_two_schedulers_lose_nothing_and_run_nothing_twice(
        db_url, make_app, tmp_path, receiver):
    # The buyer (Dana of acme, an offer open on SMS), set up in this process.
    app = make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0")
    api = Api(app.test_client())
    setup_account(api)
    cross_messages(api)  # the opening is sent here, before any scheduler runs
    assert _leased(db_url) == 0 and all(s == "sent" for s, _ in _outbox(db_url).values())

    # Due work, part one: 10 SMS replies and 5 billing webhooks, due now.
    def in_process(path: str, body: dict) -> tuple[int, dict]:
        r = api.post(path, body)
        return r.status_code, r.get_json()

    _deliver(in_process, 10, "first")
    now = datetime.now(timezone.utc)
    first_hooks = [f"first-hook-{n}" for n in range(5)]
    for key in first_hooks:
        _enqueue_webhook(db_url, key, now, due=now)

    web_a = web_b = first = second = None
    try:
        web_a = _start_host("host-a", db_url, tmp_path)
        web_b = _start_host("host-b", db_url, tmp_path)
        # Host B kept a message in its spool (the database was unreachable when it came).
        spooled = new_sid()
        web_b.spool.write(spool_entry(InboundMessage("sms", DANA_PHONE, QUESTION, spooled),
                                      datetime.now(timezone.utc)))
        first, first_out = _scheduler(db_url, tmp_path, "scheduler-1", receiver.url)
        second, second_out = _scheduler(db_url, tmp_path, "scheduler-2", receiver.url)
        _until(lambda: web_a.ready() and web_b.ready(), 60,
               lambda: web_a.log.read_text()[-2000:] + web_b.log.read_text()[-2000:])
        running = "running background jobs every 1 s"
        _until(lambda: running in first_out.read_text() + second_out.read_text(), 60,
               lambda: first_out.read_text() + second_out.read_text(), (first, second))
        holder, holder_out, other, other_out = (
            (first, first_out, second, second_out) if running in first_out.read_text()
            else (second, second_out, first, first_out))
        _until(lambda: "another scheduler is running" in other_out.read_text(), 30,
               other_out.read_text, (other,))

        # The inbound stream; host A dies a third of the way through.
        stream = Stream([web_a, web_b])
        stream.run(MESSAGES, kill_after=MESSAGES // 3, victim=web_a)
        assert web_a.proc.poll() is not None  # dead

        # Part one is sent by the scheduler holding the lock; host B replays its own spool
        # (nobody else can see it) and its reply is queued and sent too.
        _until(lambda: web_b.spool.pending() == [], 20, web_b.log.read_text)

        def part_one_sent() -> bool:
            jobs = _outbox(db_url)
            return len(jobs) >= 10 + 5 + 2 and all(s == "sent" for s, _ in jobs.values())
        _until(part_one_sent, 30, lambda: holder_out.read_text() + str(_outbox(db_url)),
               (holder, other))

        assert sorted(receiver.per_key().values()) == [1] * 5

        # Nothing is claimed now (nothing is due): the holder dies between passes, as a host
        # may, and leaves no lease behind. The other takes over.
        assert _leased(db_url) == 0
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        before_takeover = len(_outbox(db_url))

        # Due work, part two: queued through the surviving web host's API, and 5 webhooks.

        def post(path: str, body: dict) -> tuple[int, dict]:
            r = web_b.request("POST", f"/api/v1{path}", json.dumps(body).encode(), {
                "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
            return r.status_code, json.loads(r.data)

        _deliver(post, 10, "second")
        later = datetime.now(timezone.utc)
        second_hooks = [f"second-hook-{n}" for n in range(5)]
        for key in second_hooks:
            _enqueue_webhook(db_url, key, later, due=later)
        _until(lambda: running in other_out.read_text(), 20, other_out.read_text, (other,))
        _until(lambda: len(_outbox(db_url)) == before_takeover + 15 and all(
            s == "sent" for s, _ in _outbox(db_url).values()), 30,
            lambda: other_out.read_text() + str(_outbox(db_url)), (other,))
        time.sleep(2)  # two more passes: nothing is sent again
        assert _lock_is_taken(db_url)  # the survivor holds the lock
    finally:
        _stop(first, second)
        _stop_hosts(web_a, web_b)

    # No inbound lost, none stored twice, exactly one reply each.
    stored = _inbound_and_replies(db_url)
    assert set(stream.answers) | {spooled} <= set(stored)
    assert {sid: stored[sid] for sid in set(stream.answers) | {spooled}} == {
        sid: [1, 1] for sid in set(stream.answers) | {spooled}}
    assert len(stream.answers) == MESSAGES
    # What each buyer got back: one reply, unless host A stored it and died before answering
    # (the retry then finds a duplicate and answers nothing): at most one, never two.
    assert all(len(r) <= 1 for r in stream.answers.values())
    unanswered = [sid for sid, r in stream.answers.items() if not r]
    assert len(unanswered) <= stream.failed_sends["host-a"]
    assert stream.by_host["host-a"] >= 1 and stream.by_host["host-b"] > stream.by_host["host-a"]

    # No due job ran twice: every outbox job was claimed once and sent; every webhook reached
    # the receiver once; every queued SMS went out (the sandbox's id) once.
    jobs = _outbox(db_url)
    assert set(jobs.values()) == {("sent", 1)}, jobs
    assert receiver.per_key() == Counter({key: 1 for key in first_hooks + second_hooks})
    sms = _rows(db_url, "SELECT status, provider_id FROM messages WHERE kind = 'reply' "
                        "AND status <> 'relayed' AND id IN (SELECT CAST(substr(key, 9) AS "
                        "BIGINT) FROM outbox WHERE kind = 'message')")
    assert len(sms) == 10 + 10 + 1  # the two parts and the spooled message's reply
    assert all(status == "sent" and provider_id.startswith("SB") for status, provider_id in sms)
    holder_log, other_log = holder_out.read_text(), other_out.read_text()
    assert all(f"outbox job {key} (billing_webhook) sent on attempt 1" in holder_log
               for key in first_hooks)
    assert all(f"outbox job {key} (billing_webhook) sent on attempt 1" in other_log
               for key in second_hooks)
    assert not any(key in holder_log for key in second_hooks)
    assert not any(key in other_log for key in first_hooks)
    assert "Traceback" not in web_b.log.read_text() + other_log
