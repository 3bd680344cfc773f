"""A real local HTTP endpoint standing in for the operator's webhook receiver in tests.

It records every request and answers from a script (status codes, (status, text), or HANG to
answer only after the sender's timeout), then 200.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

HANG = "hang"
HANG_SECONDS = 0.5


@dataclass(frozen=True)
class Received:
    path: str
    headers: Message  # looked up case-insensitively, as HTTP header names are
    body: bytes


class Receiver:
    """The operator's endpoint: records every request, answers from a script (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: list[int | tuple[int, str] | str] = []
        self._lock = threading.Lock()
        self.url = ""

    def answer(self, *responses: int | tuple[int, str] | str) -> None:
        with self._lock:
            self._script.extend(responses)

    def take(self, request: Received):
        with self._lock:
            self.requests.append(request)
            return self._script.pop(0) if self._script else 200

    def per_key(self) -> Counter:
        with self._lock:
            return Counter(r.headers["Idempotency-Key"] for r in self.requests)


class _Handler(BaseHTTPRequestHandler):
    # Headers and body leave in separate writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms a request on Linux).
    disable_nagle_algorithm = True
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if len(body) < length:  # the sender died mid-request: no server acts on half a request
            self.close_connection = True
            return
        response = self.server.receiver.take(Received(self.path, self.headers, body))
        if response == HANG:
            time.sleep(HANG_SECONDS)
            response = 200
        status, text = response if isinstance(response, tuple) else (response, f"status {response}")
        data = text.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the sender gave up waiting (the hang case)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.receiver = Receiver()
    server.receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/plan-change"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
