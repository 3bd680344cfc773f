"""Benchmark Twilio's two webhooks on the service (gunicorn, PostgreSQL) against durable ceilings.

Run from the repository root (needs gunicorn in the venv, the `prod` extra, and `wrk` on PATH):

    .venv/bin/pip install 'gunicorn>=22,<24'; apt-get install -y wrk
    .venv/bin/python bench/webhook.py          # --duration 15 --connections 50 --rounds 2
    .venv/bin/python bench/webhook.py --workers 2 --threads 4 --duration 30   # gthread workers

A throwaway PostgreSQL cluster gets N accounts with a billing contact on SMS, most of them with a
usage crossing and an offered thread. gunicorn serves, always with the same command line:
`echo_app` (signature check, fixed TwiML, no database: the upper bound of the box), then, in
rounds that alternate which goes first, `bench.ceiling:app` (the durable ceiling: the same
signature check and the least SQL a correct answer needs, raw psycopg, one transaction) and
`app:create_app()` (the service). Each of those two serves, one after the other, signed inbound
messages (`/twilio/messaging`: questions in offered threads, each with its own MessageSid) and
signed delivery reports (`/twilio/status`: queued, sent, delivered or failed for messages we
sent, some out of order, some retried). `wrk` (bench/webhook.lua) replays the pre-signed
requests. Progress on stderr; on stdout a table and the ratios service/ceiling per round.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import format_table  # noqa: E402

import click  # noqa: E402
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,  # noqa: E402
                                      RequestValidator, get_signature_algorithm)
from werkzeug.wrappers import Request  # noqa: E402

LUA = Path(__file__).resolve().with_suffix(".lua")
PATH = "/twilio/messaging"
STATUS_PATH = "/twilio/status"
PAYLOAD = ROOT / "tests" / "payloads" / "twilio" / "sms_inbound.json"  # a recorded Twilio form
TOKEN = "bench-twilio-auth-token-0123456789"
API_KEY = "bench-api-key-0123456789abcdef"
NO_THREAD_SHARE = 0.10  # accounts without a usage crossing: no thread, the no-offer answer
# What buyers in an offered thread ask, with weights. Questions only: they leave the thread
# `offered`, so the mix is the same at the end of a run as at its start.
BODIES = (("how much would I be charged today?", 50), ("how much is growth a month?", 20),
          ("what do I get with growth?", 15), ("can I downgrade later if it doesn't work out?", 10),
          ("hi", 5))


def say(message: str) -> None:
    click.echo(message, err=True)


# --- the ceiling: a signed-TwiML echo, no database ---------------------------------------------

ECHO_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'
_echo_config: tuple[RequestValidator, str] | None = None


def echo_app(environ, start_response):
    """WSGI: verify Twilio's signature over PUBLIC_BASE_URL + the raw target and the form, exactly
    as channels.twilio_messaging does, and answer a fixed TwiML; 403 when the signature is bad."""
    global _echo_config
    if _echo_config is None:
        _echo_config = (RequestValidator(os.environ["UPGRADE_CHAT_TWILIO_AUTH_TOKEN"]),
                        os.environ["UPGRADE_CHAT_PUBLIC_BASE_URL"].rstrip("/"))
    validator, base = _echo_config
    req = Request(environ)
    if req.path == "/healthz":
        status, body, kind = "200 OK", b'{"status": "ok"}', "application/json"
    elif req.path != PATH or req.method != "POST":
        status, body, kind = "404 Not Found", b"not found", "text/plain"
    else:
        signature = req.headers.get(SIGNATURE_HEADER, "")
        url = base + str(environ.get("RAW_URI") or req.full_path.rstrip("?"))
        algorithm = get_signature_algorithm(req.headers.get(SIGNATURE_SETTINGS_HEADER))
        if signature and validator.validate(url, req.form, signature, algorithm):
            status, body, kind = "200 OK", ECHO_TWIML, "application/xml; charset=utf-8"
        else:
            status, body, kind = "403 Forbidden", b"invalid signature", "text/plain"
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


# --- the workload -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Buyer:
    account: str
    phone: str
    thread: bool  # the account had a crossing: an offered thread


def phone(i: int) -> str:
    return f"+1312555{i:04d}"


def setup_accounts(url: str, n: int, seed: int) -> list[Buyer]:
    """Accounts, contacts and crossings through the JSON API (in process); openings sent by the
    sandbox sender, as the scheduler would. Returns the buyers, checked against the database.

    The recipient's zone comes from the number (Chicago): in Chicago's quiet hours (20:00-09:00)
    the guardrails defer the openings and the threads stay `open`. A buyer who writes first gets
    the opening with the answer and the thread is `offered` from then on, so the warm-up, which
    reaches every buyer, leaves every thread `offered` at any time of day (checked after the run).
    """
    import phonenumbers

    from app import create_app
    from storage.db import make_engine
    from storage.migrate import upgrade

    if n > 10_000:
        raise click.BadParameter("at most 10,000 accounts (numbers +13125550000 to +13125559999)", param_hint="--accounts")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "TWILIO_AUTH_TOKEN": TOKEN,
                      "PUBLIC_BASE_URL": "http://127.0.0.1", "CONTROL_SHARE": "0",
                      "DEMO": False, "AUTO_MIGRATE": False})
    rt = app.extensions["upgrade_chat"]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    buyers, events = [], []
    for i in range(n):
        number = phone(i)
        assert phonenumbers.is_valid_number(phonenumbers.parse(number)), number
        ext = f"bench-{i:05d}"
        body = {"name": f"Bench Clinic {i}", "plan": "starter", "vertical": "generic",
                "timezone": "America/Chicago", "billing_day": 1 + i % 28,
                "plan_since": (now - timedelta(days=120)).isoformat(),
                "contacts": [{"external_id": f"{ext}-billing", "name": f"Billing {i}",
                              "role": "billing", "email": f"billing{i}@example.com",
                              "phone": number}]}
        r = client.put(f"/api/v1/accounts/{ext}", json=body, headers=auth)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"PUT account {ext}: {r.status_code} {r.get_data(as_text=True)}")
        crossing = rng.random() >= NO_THREAD_SHARE
        buyers.append(Buyer(ext, number, crossing))
        # 30 days of messages: about 4,800 when crossing (Starter -> Growth at 4,500), else 2,400.
        per_day = 160 if crossing else 80
        events += [{"id": f"{ext}-m{d}", "account": ext, "metric": "messages",
                    "quantity": per_day + rng.randint(-10, 10),
                    "at": (now - timedelta(days=29 - d, hours=1)).isoformat()} for d in range(30)]
        events.append({"id": f"{ext}-seats", "account": ext, "metric": "seats", "quantity": 3,
                       "at": (now - timedelta(days=2)).isoformat()})
    for start in range(0, len(events), 5_000):
        r = client.post("/api/v1/usage", json={"events": events[start:start + 5_000]},
                        headers=auth)
        if r.status_code != 200:
            raise RuntimeError(f"POST usage: {r.status_code} {r.get_data(as_text=True)}")
    while rt.dispatcher.dispatch_due(limit=200).sent:  # the openings go out (sandbox sender)
        pass
    # One signed "hi" from every buyer: an opening deferred by the quiet hours goes out with its
    # answer, so every thread is `offered` before any server runs (both targets find the same).
    signer = Signer("http://127.0.0.1")
    for b in buyers:
        signature, form = signer.sign(b.phone, "hi", f"SM{uuid.uuid4().hex}")
        r = client.post(PATH, data=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: signature})
        if r.status_code != 200:
            raise RuntimeError(f"priming: {r.status_code}")
    rt.engine.dispose()
    states = thread_states(url)
    expected = sum(b.thread for b in buyers)
    if states.get("offered", 0) + states.get("open", 0) != expected or len(states) > 2:
        raise RuntimeError(f"threads after setup: {states}, expected {expected} open or offered")
    if states.get("open"):
        raise RuntimeError(f"threads after priming: {states}, expected none open")
    return buyers


def thread_states(url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        states = dict(conn.execute(
            text("SELECT state, count(*) FROM threads GROUP BY state")).all())
    engine.dispose()
    return states


def messages(buyers: list[Buyer], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(From, Body) for `count` messages: rounds over a shuffled list of the buyers, so one
    buyer's messages are far apart (a buyer does not write twice in the same 50 ms)."""
    texts, weights = zip(*BODIES)
    out: list[tuple[str, str]] = []
    order = list(buyers)
    while len(out) < count:
        rng.shuffle(order)
        out += [(b.phone, rng.choices(texts, weights)[0]) for b in order]
    return out[:count]


class Signer:
    """Signs inbound messages as Twilio does (the auth token, the URL it calls, the form's
    parameters), on the recorded form of tests/payloads/twilio/sms_inbound.json."""

    def __init__(self, base_url: str, token: str = TOKEN) -> None:
        self.template = json.loads(PAYLOAD.read_text(encoding="utf-8"))
        self.validator = RequestValidator(token)
        self.url = base_url + PATH

    def sign(self, sender: str, body: str, sid: str) -> tuple[str, str]:
        """(X-Twilio-Signature, urlencoded form) of one message with MessageSid `sid`."""
        params = dict(self.template, From=sender, Body=body, MessageSid=sid, SmsSid=sid,
                      SmsMessageSid=sid)
        return self.validator.compute_signature(self.url, params), urlencode(params)


def message_sid(tag: str, i: int) -> str:
    """The i-th MessageSid of a run tagged `tag` (8 hex): SM and 32 hex, as Twilio's."""
    return f"SM{tag}{i:024x}"


def write_requests(path: Path, base_url: str, msgs: list[tuple[str, str]], tag: str) -> None:
    """One "signature<TAB>form body" line per message, signed like Twilio does (the auth token,
    the URL it calls, the form's parameters), each with its own MessageSid."""
    signer = Signer(base_url)
    with path.open("w", encoding="ascii") as f:
        for i, (sender, body) in enumerate(msgs):
            signature, form = signer.sign(sender, body, message_sid(tag, i))
            f.write(f"{signature}\t{form}\n")


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


# --- the delivery reports ---------------------------------------------------------------------

STATUS_PAYLOAD = PAYLOAD.with_name("status_delivered.json")  # a recorded status callback
FAILED_CODE = "30003"  # unreachable handset: a failure that opts nobody out (21610 would)


def psycopg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def add_sent_messages(url: str, tag: str, count: int) -> list[tuple[str, str]]:
    """`count` SMS we "sent" (one per buyer with a thread in turn, each with its provider id,
    status sent, no delivery report yet), copied into `messages`; (provider id, phone) of each."""
    import psycopg

    now = datetime.now(timezone.utc)
    with psycopg.connect(psycopg_dsn(url)) as conn:
        rows = conn.execute(
            "SELECT c.phone, c.id, t.id FROM contacts c JOIN threads t ON t.contact_id = c.id "
            "ORDER BY c.id").fetchall()
        out = []
        with conn.cursor().copy(
                "COPY messages (thread_id, contact_id, channel, direction, kind, body, "
                "provider_id, status, at, attempts, sent_at) FROM STDIN") as copy:
            for i in range(count):
                number, contact_id, thread_id = rows[i % len(rows)]
                sid = f"SB{tag}{i:024x}"
                copy.write_row((thread_id, contact_id, "sms", "out", "reply", "bench", sid,
                                "sent", now, 1, now))
                out.append((sid, number))
    return out


def status_sequences(count: int, rng: random.Random) -> list[list[str]]:
    """For each of `count` messages, the delivery reports Twilio sends, in the order they
    arrive: queued, sent, then delivered (90%), undelivered or failed; one in five with two
    neighbours swapped (late), one in ten with one of them retried."""
    out = []
    for _ in range(count):
        r = rng.random()
        final = "delivered" if r < 0.9 else "undelivered" if r < 0.95 else "failed"
        seq = ["queued", "sent", final]
        if rng.random() < 0.2:
            i = rng.randrange(2)
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
        if rng.random() < 0.1:
            i = rng.randrange(len(seq))
            seq.insert(i + 1, seq[i])
        out.append(seq)
    return out


def write_status_requests(path: Path, base_url: str, sent: list[tuple[str, str]],
                          rng: random.Random, group: int = 64) -> int:
    """One signed delivery report a line (as write_requests), for every message of `sent`:
    the reports of `group` messages at a time interleaved, so a message's reports are close but
    never back to back. Returns the number of lines."""
    template = json.loads(STATUS_PAYLOAD.read_text(encoding="utf-8"))
    template.pop("RawDlrDoneDate", None)
    validator = RequestValidator(TOKEN)
    url = base_url + STATUS_PATH
    seqs = status_sequences(len(sent), rng)
    lines = 0
    with path.open("w", encoding="ascii") as f:
        for start in range(0, len(sent), group):
            chunk = list(zip(sent[start:start + group], seqs[start:start + group]))
            for step in range(max(len(q) for _, q in chunk)):
                for (sid, number), seq in chunk:
                    if step >= len(seq):
                        continue
                    params = dict(template, MessageSid=sid, SmsSid=sid, To=number,
                                  MessageStatus=seq[step], SmsStatus=seq[step])
                    if seq[step] in ("failed", "undelivered"):
                        params["ErrorCode"] = FAILED_CODE
                    f.write(f"{validator.compute_signature(url, params)}\t"
                            f"{urlencode(params)}\n")
                    lines += 1
    return lines


def delivery_states(url: str, tag: str) -> dict[str | None, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        states = dict(conn.execute(text(
            "SELECT delivery_status, count(*) FROM messages WHERE provider_id LIKE :p "
            "GROUP BY delivery_status"), {"p": f"SB{tag}%"}).all())
    engine.dispose()
    return states


# --- servers and load -------------------------------------------------------------------------

def busy_share(seconds: float = 1.0) -> float:
    """The share of all CPUs busy over `seconds` (/proc/stat), 0 where it cannot be read."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes so far (/proc/<pid>/stat), 0 for a gone one."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int | None) -> list[int]:
    if pid is None:
        return []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def postmaster_pid(cluster) -> int | None:
    """The throwaway cluster's main process (its postmaster.pid); None for a server of
    UPGRADE_CHAT_TEST_PG_URL (its CPU is then not counted)."""
    try:
        return int((cluster.data / "postmaster.pid").read_text().split()[0])
    except (AttributeError, OSError, ValueError, IndexError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerConfig:
    workers: int
    threads: int

    def args(self) -> list[str]:
        if self.threads > 1:
            return ["--workers", str(self.workers), "--worker-class", "gthread",
                    "--threads", str(self.threads)]
        return ["--workers", str(self.workers), "--worker-class", "sync"]

    def describe(self) -> str:
        if self.threads > 1:
            return (f"gunicorn --workers {self.workers} --worker-class gthread "
                    f"--threads {self.threads}")
        return f"gunicorn --workers {self.workers} --worker-class sync"


class Server:
    """gunicorn serving `target` on 127.0.0.1:<port>, its output in `log`."""

    def __init__(self, target: str, port: int, config: ServerConfig, env: dict[str, str],
                 log: Path) -> None:
        self.port, self.log = port, log
        cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT),
               "--bind", f"127.0.0.1:{port}", *config.args(), "--backlog", "2048",
               "--log-level", "warning", target]
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}):\n"
                                   f"{self.log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout:.0f} s")

    def worker_pids(self) -> list[int]:
        """The arbiter's worker processes now (its children, from /proc)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: the arbiter stops its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()



def post_signed(port: int, base_url: str, params: dict[str, str], *, path: str = PATH,
                token: str = TOKEN) -> tuple[int, str]:
    signature = RequestValidator(token).compute_signature(base_url + path, params)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, urlencode(params), {
        "Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: signature})
    r = conn.getresponse()
    out = r.status, r.read().decode()
    conn.close()
    return out


def smoke(port: int, base_url: str, sender: str, expect: str) -> None:
    """One signed message answered with TwiML containing `expect`, the same again answered with
    no message (a provider retry), a forged one refused."""
    params = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    sid = f"SM{uuid.uuid4().hex}"  # Twilio's shape: SM and 32 hex
    params.update(From=sender, Body="how much would I be charged today?", MessageSid=sid,
                  SmsSid=sid, SmsMessageSid=sid)
    status, body = post_signed(port, base_url, params)
    if status != 200 or "<Response>" not in body or expect not in body \
            or "something went wrong" in body:
        raise RuntimeError(f"smoke test failed: {status} {body[:300]}")
    status, body = post_signed(port, base_url, params)
    if expect != ECHO_EXPECT and (status != 200 or "<Message>" in body):
        raise RuntimeError(f"a retried MessageSid got {status} {body[:300]}, expected no reply")
    status, _ = post_signed(port, base_url, params, token="not-the-token")
    if status != 403:
        raise RuntimeError(f"a forged signature got {status}, expected 403")


def prime(port: int, base_url: str, buyers: list[Buyer]) -> None:
    """One signed message from every buyer (eight at a time), through a running server: its
    workers warm up (bench/faults.py; setup_accounts has already made every thread `offered`)."""
    from concurrent.futures import ThreadPoolExecutor

    template = json.loads(PAYLOAD.read_text(encoding="utf-8"))

    def one(buyer: Buyer) -> int:
        sid = f"SM{uuid.uuid4().hex}"
        params = dict(template, From=buyer.phone, Body="hi", MessageSid=sid, SmsSid=sid,
                      SmsMessageSid=sid)
        return post_signed(port, base_url, params)[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, buyers))
    if any(s != 200 for s in statuses):
        raise RuntimeError(f"priming: statuses {sorted(set(statuses))}")


@dataclass(frozen=True)
class Result:
    target: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    wraps: int
    text: str  # wrk's own report
    worker_cpu_ms: float = 0.0  # gunicorn workers' CPU per request
    db_cpu_ms: float = 0.0  # PostgreSQL's server processes' CPU per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def measured(target: str, port: int, path: str, requests_file: Path, duration: float,
             connections: int, threads: int, server: Server,
             postmaster: int | None) -> Result:
    """run_wrk, with the CPU the server's workers and PostgreSQL's processes spent per request
    (a figure other processes on the machine disturb less than the rate)."""
    workers, backends = server.worker_pids(), children(postmaster)
    w0, d0 = cpu_seconds(workers), cpu_seconds(backends)
    result = run_wrk(target, port, path, requests_file, duration, connections, threads)
    w1, d1 = cpu_seconds(workers), cpu_seconds(children(postmaster))
    n = max(1, result.requests)
    return replace(result, worker_cpu_ms=(w1 - w0) / n * 1000, db_cpu_ms=(d1 - d0) / n * 1000)


def run_wrk(target: str, port: int, path: str, requests_file: Path, duration: float,
            connections: int, threads: int) -> Result:
    """wrk in its own process; the figures from the JSON line bench/webhook.lua prints."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
           "--timeout", "10s", "--latency", "-s", str(LUA), f"http://127.0.0.1:{port}{path}",
           "--", str(requests_file), str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WEBHOOK_BENCH ")), None)
    if line is None:
        raise RuntimeError(f"no figures in wrk's output:\n{done.stdout}\n{done.stderr}")
    f = json.loads(line.split(" ", 1)[1])
    report = "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith("WEBHOOK_BENCH"))
    return Result(target, f["requests"], f["duration_us"] / 1e6, f["p50_us"] / 1e3,
                  f["p90_us"] / 1e3, f["p99_us"] / 1e3, f["max_us"] / 1e3, f["non2xx"],
                  f["connect"] + f["read"] + f["write"] + f["timeout"], f["wraps"], report)


def check_replies(url: str, tag: str, result: Result, log: Path, offered: int) -> list[str]:
    """Problems the status codes do not show: a request answered without its inbound message and
    reply stored, a logged failure (answered 200 with an apology), a re-sent MessageSid."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        inbound = conn.scalar(text(
            "SELECT count(*) FROM messages WHERE direction = 'in' AND provider_id LIKE :p"),
            {"p": f"SM{tag}%"})
        replied = conn.scalar(text(
            "SELECT count(DISTINCT r.in_reply_to) FROM messages r JOIN messages i "
            "ON i.id = r.in_reply_to WHERE r.kind = 'reply' AND i.provider_id LIKE :p"),
            {"p": f"SM{tag}%"})
    engine.dispose()
    problems = []
    if result.wraps:
        problems.append(f"{result.target}: wrk ran out of pre-signed requests ({result.wraps} "
                        f"wraps): some were duplicates")
    if inbound < result.requests:
        problems.append(f"{result.target}: {inbound:,} inbound messages stored for "
                        f"{result.requests:,} answers")
    if replied != inbound:
        problems.append(f"{result.target}: {replied:,} of {inbound:,} inbound messages have a "
                        f"stored reply")
    states = thread_states(url)
    if set(states) != {"offered"} or states["offered"] != offered:
        problems.append(f"{result.target}: threads after the run: {states}, expected {offered} "
                        f"offered")
    failures = log.read_text(errors="replace").count("twilio inbound message failed")
    if failures:
        problems.append(f"{result.target}: {failures} requests failed inside (fallback TwiML), "
                        f"see {log}")
    say(f"{result.target}: {inbound:,} inbound messages stored and {replied:,} answered "
        f"for {result.requests:,} completed requests; {failures} logged failures")
    return problems


def check_statuses(url: str, tag: str, result: Result, log: Path) -> list[str]:
    """Problems of a delivery report run: a report refused or failed, a wrap (a message's
    reports sent again from the start), nothing recorded."""
    states = delivery_states(url, tag)
    problems = []
    if result.wraps:
        problems.append(f"{result.target}: wrk ran out of pre-signed reports ({result.wraps} "
                        f"wraps)")
    if result.non2xx:
        problems.append(f"{result.target}: {result.non2xx:,} reports answered with an error")
    failures = log.read_text(errors="replace").count("twilio status callback failed")
    if failures:
        problems.append(f"{result.target}: {failures} reports failed inside, see {log}")
    if sum(n for s, n in states.items() if s is not None) == 0:
        problems.append(f"{result.target}: no delivery status recorded")
    say(f"{result.target}: delivery statuses after the run: "
        + ", ".join(f"{s or 'none'} {n:,}" for s, n in sorted(states.items(), key=str)))
    return problems


def base_env() -> dict[str, str]:
    """This process's environment without any UPGRADE_CHAT_ setting, plus the Twilio token the
    requests are signed with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPGRADE_CHAT_")}
    env.update(UPGRADE_CHAT_TWILIO_AUTH_TOKEN=TOKEN, PYTHONDONTWRITEBYTECODE="1")
    return env


def service_env(url: str, **settings: str) -> dict[str, str]:
    """The service's environment on database `url` (sandbox Twilio: nothing is sent), with
    further UPGRADE_CHAT_<key> settings."""
    env = dict(base_env(), UPGRADE_CHAT_DATABASE_URL=url, UPGRADE_CHAT_API_KEY=API_KEY,
               UPGRADE_CHAT_DEMO="false", UPGRADE_CHAT_AUTO_MIGRATE="false",
               UPGRADE_CHAT_CONTROL_SHARE="0")
    env.update({f"UPGRADE_CHAT_{k}": v for k, v in settings.items()})
    return env


# --- one server -------------------------------------------------------------------------------

ECHO_EXPECT = "<Message>ok</Message>"


@dataclass
class Run:
    """What bench_server needs besides the target: the workload and the load's shape."""

    url: str
    config: ServerConfig
    work: Path
    buyers: list[Buyer]
    msgs_for: Callable[[int], list[tuple[str, str]]]  # count -> [(From, Body)]
    rng: random.Random
    duration: float
    warmup: float
    connections: int
    wrk_threads: int
    postmaster: int | None  # PostgreSQL's main process: its children serve the connections


def bench_server(name: str, target: str, env: dict[str, str], run: Run, sized_for: float, *,
                 statuses: bool, expect: str = "<Message>") -> tuple[list[Result], list[str]]:
    """Start gunicorn on `target`, warm it up, measure the replies (and then, with `statuses`,
    the delivery reports) under load; return the results and the problems found."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(env, UPGRADE_CHAT_PUBLIC_BASE_URL=base)
    work = run.work
    warm_tag, tag = new_tag(), new_tag()
    warm_file, measured_file = work / f"{name}-warmup.txt", work / f"{name}.txt"
    msgs_for = run.msgs_for
    write_requests(warm_file, base, msgs_for(max(1_000, int(sized_for * run.warmup))), warm_tag)
    write_requests(measured_file, base, msgs_for(int(sized_for * run.duration)), tag)
    if statuses:
        status_warm_tag, status_tag = new_tag(), new_tag()
        status_warm = work / f"{name}-status-warmup.txt"
        status_file = work / f"{name}-status.txt"
        # Four reports a message or so: sized so that no message's reports are sent twice.
        write_status_requests(status_warm, base, add_sent_messages(
            run.url, status_warm_tag, max(500, int(sized_for * run.warmup / 2))), run.rng)
        write_status_requests(status_file, base, add_sent_messages(
            run.url, status_tag, int(sized_for * run.duration / 2)), run.rng)
    log = work / f"{name}-gunicorn.log"
    busy = busy_share()
    if busy > 0.15:
        say(f"WARNING: {busy:.0%} of the CPUs busy before the {name} run (other processes): "
            f"its figures will be low")
    results, problems = [], []
    server = Server(target, port, run.config, env, log)
    try:
        server.wait_ready()
        smoke(port, base, next(b for b in run.buyers if b.thread).phone, expect)
        say(f"{name}: replies: {run.warmup:g} s of warm-up, then {run.duration:g} s at "
            f"{run.connections} connections ...")
        run_wrk(name, port, PATH, warm_file, run.warmup, run.connections, run.wrk_threads)
        results.append(measured(f"{name} reply", port, PATH, measured_file, run.duration,
                                run.connections, run.wrk_threads, server, run.postmaster))
        say(results[-1].text)
        if statuses:
            say(f"{name}: delivery reports: {run.warmup:g} s of warm-up, then "
                f"{run.duration:g} s ...")
            run_wrk(name, port, STATUS_PATH, status_warm, run.warmup, run.connections,
                    run.wrk_threads)
            results.append(measured(f"{name} status", port, STATUS_PATH, status_file,
                                    run.duration, run.connections, run.wrk_threads, server,
                                    run.postmaster))
            say(results[-1].text)
    finally:
        server.stop()
    if expect != ECHO_EXPECT:
        problems += check_replies(run.url, tag, results[0], log,
                                  sum(b.thread for b in run.buyers))
    if statuses:
        problems += check_statuses(run.url, status_tag, results[1], log)
    return results, problems


def bench_target(name: str, target: str, env: dict[str, str], config: ServerConfig,
                 work: Path, buyers: list[Buyer], msgs_for, duration: float, warmup: float,
                 connections: int, wrk_threads: int, smoke_expect: str,
                 sized_for: float) -> tuple[Result, str, Path]:
    """One target's replies alone (bench/faults.py measures its peak with it): start gunicorn,
    warm it up, run the measured load; the result, the MessageSid tag of the measured requests
    and the server log."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(env, UPGRADE_CHAT_PUBLIC_BASE_URL=base)
    warm_tag, tag = new_tag(), new_tag()
    warm_file, measured_file = work / f"{name}-warmup.txt", work / f"{name}.txt"
    write_requests(warm_file, base, msgs_for(max(1_000, int(sized_for * warmup))), warm_tag)
    write_requests(measured_file, base, msgs_for(int(sized_for * duration)), tag)
    log = work / f"{name}-gunicorn.log"
    server = Server(target, port, config, env, log)
    try:
        server.wait_ready()
        smoke(port, base, next(b for b in buyers if b.thread).phone, smoke_expect)
        say(f"{name}: warm-up: one message from each of {len(buyers)} buyers, then "
            f"{warmup:g} s of load ...")
        prime(port, base, buyers)
        run_wrk(name, port, PATH, warm_file, warmup, connections, wrk_threads)
        say(f"{name}: {duration:g} s at {connections} connections ...")
        result = run_wrk(name, port, PATH, measured_file, duration, connections, wrk_threads)
    finally:
        server.stop()
    say(result.text)
    return result, tag, log


# --- report -----------------------------------------------------------------------------------

def table(results: list[Result]) -> str:
    head = ("target", "requests", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "non-2xx", "socket err", "CPU ms/req: workers", "PostgreSQL")
    rows = [(r.target, f"{r.requests:,}", f"{r.rate:,.0f}", f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}",
             f"{r.p99_ms:.1f}", f"{r.max_ms:.0f}", f"{r.non2xx:,}", f"{r.socket_errors:,}",
             f"{r.worker_cpu_ms:.2f}", f"{r.db_cpu_ms:.2f}")
            for r in results]
    return format_table(head, rows)


def verdict(ratios: list[float], p99s: list[float], connections: int) -> str:
    if connections != 50:
        return "stated at 50 connections"
    return "met" if min(ratios) >= 0.8 and max(p99s) < 100 else "not met"


@click.command(help=__doc__.splitlines()[0])
@click.option("--duration", default=15.0, show_default=True, type=click.FloatRange(1),
              help="Seconds of measured load per target and webhook.")
@click.option("--connections", default=50, show_default=True, type=click.IntRange(1),
              help="Concurrent connections (wrk -c).")
@click.option("--accounts", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Accounts, one buyer (billing contact on SMS) each.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1),
              help="gunicorn worker processes (every target).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="Threads per worker: more than 1 runs gthread workers, 1 sync workers "
                   "(gunicorn's default).")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1),
              help="Rounds of ceiling and service, taking turns at going first.")
@click.option("--warmup", default=3.0, show_default=True, type=click.FloatRange(0.5),
              help="Seconds of unmeasured load before each measured run.")
@click.option("--wrk-threads", default=1, show_default=True, type=click.IntRange(1),
              help="wrk threads (one is plenty, and leaves the CPU to the server).")
@click.option("--no-echo", is_flag=True, help="Skip the echo (its rate sizes the request files; "
              "without it they are sized for 3,000 requests/s).")
@click.option("--seed", default=1, show_default=True, help="Seed of the message mix.")
def main(duration: float, connections: int, accounts: int, workers: int, threads: int,
         rounds: int, warmup: float, wrk_threads: int, no_echo: bool, seed: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A polite kill unwinds like Ctrl+C, so the servers, wrk and the cluster are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if shutil.which("wrk") is None:
        raise click.ClickException("wrk not found: apt-get install -y wrk")
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        raise click.ClickException("gunicorn not installed: .venv/bin/pip install "
                                   "'gunicorn>=22,<24'") from None
    from tests.support import postgres

    from bench.report import machine

    config = ServerConfig(workers, threads)
    work = Path(tempfile.mkdtemp(prefix="upgrade-chat-bench-webhook-"))
    cluster = None
    results: list[Result] = []
    problems: list[str] = []
    pairs: list[tuple[Result, Result, Result, Result]] = []
    try:
        say("starting a throwaway PostgreSQL cluster ...")
        try:
            admin_url, cluster = postgres.start_server()
        except postgres.Unavailable as exc:
            raise click.ClickException(f"PostgreSQL unavailable: {exc}") from None
        url = postgres.create_database(admin_url, "bench_webhook")
        pg_version = postgres.server_version(admin_url)
        say(f"creating {accounts} accounts with their crossings ...")
        buyers = setup_accounts(url, accounts, seed)
        rng = random.Random(seed)

        def msgs_for(count: int) -> list[tuple[str, str]]:
            return messages(buyers, count, rng)

        run = Run(url, config, work, buyers, msgs_for, rng, duration, warmup, connections,
                  wrk_threads, postmaster_pid(cluster))
        sized_for = 3_000.0
        if not no_echo:
            # The echo first: it stores nothing (a repeat is fine), and its rate sizes the
            # other targets' files so that no MessageSid (and no report) is sent twice.
            echo, _ = bench_server("echo", "bench.webhook:echo_app", base_env(), run, 3_000,
                                   statuses=False, expect=ECHO_EXPECT)
            results += echo
            sized_for = max(1_000, echo[0].rate * 1.3)
        ceiling_env = dict(base_env(), UPGRADE_CHAT_DATABASE_URL=url)
        for r in range(rounds):
            found: dict[str, list[Result]] = {}
            order = ("ceiling", "service") if r % 2 == 0 else ("service", "ceiling")
            for name in order:
                target, env = (("bench.ceiling:app", ceiling_env) if name == "ceiling"
                               else ("app:create_app()", service_env(url)))
                got, trouble = bench_server(f"{name} {r + 1}", target, env, run, sized_for,
                                            statuses=True)
                found[name] = got
                problems += trouble
            results += found["ceiling"] + found["service"]
            pairs.append((found["ceiling"][0], found["service"][0], found["ceiling"][1],
                          found["service"][1]))
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{config.describe()}; wrk -t{wrk_threads} -c{connections} -d{duration:g}s; "
          f"{accounts} accounts, {sum(b.thread for b in buyers)} with an offered thread; "
          f"{rounds} rounds, ceiling and service taking turns at going first")
    print(machine(pg_version))
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min)")
    print(table(results))
    reply_ratios = [s.rate / c.rate for c, s, _, _ in pairs]
    status_ratios = [s.rate / c.rate for _, _, c, s in pairs]
    for i, (c, s, cs, ss) in enumerate(pairs):
        print(f"round {i + 1}: service/ceiling replies {s.rate / c.rate:.3f} (p99 "
              f"{s.p99_ms:.0f} ms), delivery reports {ss.rate / cs.rate:.3f} (p99 "
              f"{ss.p99_ms:.0f} ms)")
    cpu = [(c, s) for c, s, _, _ in pairs] + [(c, s) for _, _, c, s in pairs]
    for label, chosen in (("replies", cpu[:len(pairs)]), ("delivery reports", cpu[len(pairs):])):
        shares = [(c.worker_cpu_ms + c.db_cpu_ms) / max(1e-9, s.worker_cpu_ms + s.db_cpu_ms)
                  for c, s in chosen]
        print(f"CPU per request, ceiling/service (workers + PostgreSQL), {label}: "
              f"{min(shares):.3f}-{max(shares):.3f}")
    print(f"service/ceiling, replies: {min(reply_ratios):.3f}-{max(reply_ratios):.3f}; "
          f"aim >= 0.80 with p99 < 100 ms at 50 connections: "
          f"{verdict(reply_ratios, [s.p99_ms for _, s, _, _ in pairs], connections)}")
    print(f"service/ceiling, delivery reports: {min(status_ratios):.3f}-{max(status_ratios):.3f}; "
          f"aim >= 0.80 with p99 < 100 ms at 50 connections: "
          f"{verdict(status_ratios, [s.p99_ms for _, _, _, s in pairs], connections)}")
    for p in problems:
        print(f"PROBLEM: {p}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
