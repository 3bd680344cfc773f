"""Production serving: a real gunicorn with the shipped settings (deploy/gunicorn.conf.py), over
real sockets, on the embedded SQLite service in a temp folder, set up as an operator would
(`flask --app app init --demo`, then the README's gunicorn command line) with two workers.

- Slow clients: connections that trickle their request head one byte a second must not keep
  /healthz from answering (with the README's old `gunicorn --workers 4` command, four of them
  stalled the service until gunicorn killed its workers).
- Oversized request heads are refused at once, not read forever.
- Two workers share the sandbox's secrets: the widget identity that /demo signed in one worker is
  accepted by every worker (drawn per process, 7 of 40 polls got 403).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
WORKERS = 2


@dataclass
class Served:
    port: int
    log: Path
    init_output: str

    def get(self, path: str, headers: dict[str, str] | None = None,
            timeout: float = 10) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        pytest.fail("gunicorn is not installed: scripts/test installs it with the test extra "
                    "(pip install -e '.[test]')")
    folder = tmp_path_factory.mktemp("serving")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPGRADE_CHAT_")}
    env.update(UPGRADE_CHAT_INSTANCE_PATH=str(folder / "instance"), UPGRADE_CHAT_PORT=str(port),
               WEB_CONCURRENCY=str(WORKERS), PYTHONDONTWRITEBYTECODE="1")
    env.pop("GUNICORN_CMD_ARGS", None)
    init = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "init", "--demo"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    log = folder / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "--bind", f"127.0.0.1:{port}",
             "app:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    served = Served(port, log, init.stdout)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"gunicorn exited:\n{log.read_text()[-3000:]}"
            try:
                if served.get("/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"gunicorn not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        # Every worker up (each logs "Booting worker"), so the tests meet them all.
        while log.read_text().count("Booting worker") < WORKERS:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SlowClients:
    """`n` connections that send a request head one byte a second and never finish it (a
    "slowloris"): each has started its request, so a server reading heads in its request
    handlers is now waiting on it."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000

    def __init__(self, port: int, n: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5)
                        for _ in range(n)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def _trickle(self) -> None:
        for i in range(len(self.HEAD)):
            for s in self.sockets:
                try:
                    s.sendall(self.HEAD[i:i + 1])
                except OSError:
                    pass  # the server closed it: fine, that is one way to cope
            if self.stop.wait(1.0):
                return

    def __enter__(self) -> SlowClients:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for s in self.sockets:
            s.close()


def test_slow_clients_do_not_keep_the_health_check_from_answering(served):
    assert served.get("/healthz")[0] == 200
    with SlowClients(served.port, 8):
        time.sleep(2.5)  # every slow client has sent a few bytes: each has been handed over
        started = time.monotonic()
        status, body = served.get("/healthz", timeout=10)
        took = time.monotonic() - started
    assert status == 200 and b'"ok"' in body
    assert took < 2.0, f"/healthz took {took:.1f} s behind 8 slow clients"


def _raw(port: int, head: bytes) -> tuple[bytes, float]:
    """Send a request head as is; the status line of the answer and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        answer = s.recv(200)
    return answer.split(b"\r\n", 1)[0], time.monotonic() - started


def test_a_request_line_over_the_limit_is_refused_at_once(served):
    status, took = _raw(served.port, b"GET /healthz?" + b"a" * 5000 + b" HTTP/1.1\r\n"
                                     b"Host: 127.0.0.1\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] (400|414) ", status), status
    assert took < 2.0
    assert served.get("/healthz")[0] == 200


def test_too_many_header_fields_are_refused_at_once(served):
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(60))
    status, took = _raw(served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields
                        + b"\r\n")
    assert re.match(rb"HTTP/1\.[01] (400|431) ", status), status
    assert took < 2.0


def test_the_access_log_names_no_query_string_and_no_identity(served):
    user, account, user_hash = "u-dana", "acme-clinic", "f" * 64
    status, _ = served.get(f"/webchat/v1/thread?user_id={user}&account={account}"
                           f"&user_hash={user_hash}",
                           headers={"User-Agent": "agent-007", "Referer": "https://r.example/x",
                                    "Authorization": "Bearer key-in-a-header"})
    assert status == 403  # identity in the query: refused, and logged all the same
    # gunicorn writes the access line after the answer is sent: wait for it (a few seconds at
    # most; a fresh-clone CI run read the log before it was there).
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in served.log.read_text().splitlines()
                 if "/webchat/v1/thread" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines and '"GET /webchat/v1/thread HTTP/1.1" 403' in lines[-1], lines[-1:]
    for secret in (user, account, user_hash, "agent-007", "r.example", "key-in-a-header",
                   "127.0.0.1"):
        assert secret not in lines[-1]


def test_every_worker_accepts_the_widget_identity_that_demo_signed(served):
    """The printed link opens /demo (as a user's click would); the identity the page signed is
    then checked by whichever worker takes each poll."""
    link = re.search(r"^  Web chat *: (\S+)$", served.init_output, re.M)
    assert link, served.init_output
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with browser.open(link.group(1), timeout=10) as r:
        page = r.read().decode()
    tag = {k: v for k, v in re.findall(r'data-(user-id|account|user-hash)="([^"]*)"', page)}
    headers = {"X-User-Id": tag["user-id"], "X-Account": tag["account"],
               "X-User-Hash": tag["user-hash"]}
    statuses, pids = [], set()
    for batch in range(10):  # until two workers have answered polls (a new connection each)
        statuses += [served.get("/webchat/v1/thread", headers=headers)[0] for _ in range(20)]
        pids = set(re.findall(r"<(\d+)> \"GET /webchat/v1/thread HTTP/1\.1\" 200",
                              served.log.read_text()))
        if len(pids) >= WORKERS:
            break
    assert statuses.count(200) == len(statuses), f"{statuses.count(403)} of {len(statuses)} 403"
    assert len(pids) == WORKERS, f"every poll went to one worker ({pids}): inconclusive"
