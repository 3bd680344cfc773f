"""gunicorn settings for Upgrade Chat in production. From the source checkout:

    gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'

What it protects against (issue 11): with gunicorn's defaults (sync workers: one request at a
time per process, no limit on how long a client takes to send its headers), four connections
that trickle their header bytes held all four workers and /healthz timed out for 45 s until
gunicorn killed them. Here a worker serves `threads` connections at once, so a slow client holds
one thread, not a process: it takes workers x threads such clients to stall the service, against
`workers` before (tests/e2e/test_serving.py: 8 slow clients, /healthz still answers at once).
gunicorn itself has no header or body timeout, though: a service reachable from the internet
belongs behind a proxy that reads each request whole before passing it on (deploy/nginx.conf),
which is what stops a slow client for good.

Any setting here can be overridden on the command line or in GUNICORN_CMD_ARGS
(e.g. GUNICORN_CMD_ARGS="--threads 8"); the number of workers also in WEB_CONCURRENCY.
"""

import os


def _workers() -> int:
    """WEB_CONCURRENCY (the usual variable for it), else two per CPU this process may use, at
    most 5: each worker has its own pool of up to 15 PostgreSQL connections (SQLAlchemy's 5 + 10
    overflow), and 5 x 15 plus the scheduler's stays under PostgreSQL's default max_connections
    (100). More workers: raise max_connections first."""
    configured = os.environ.get("WEB_CONCURRENCY", "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise SystemExit(f"WEB_CONCURRENCY: expected a whole number >= 1, got {configured!r}")
        return int(configured)
    try:
        cpus = len(os.sched_getaffinity(0))  # what a container's cpuset allows, not the host's
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(2, min(2 * cpus, 5))


# Where to listen: this host only, for the proxy in front (deploy/nginx.conf). To serve without
# one, `--bind 0.0.0.0:8000` (and read the module docstring first).
bind = ["127.0.0.1:8000"]

# Threaded workers: a request waiting on its client (slow headers, a slow upload, a slow reader
# of the answer) holds a thread, not the whole process. The work itself is short (a webhook costs
# ~5 ms of CPU) and releases the GIL while it waits on the database.
worker_class = "gthread"
workers = _workers()
# Per worker. A worker keeps accepting connections while all its threads are busy, and those
# wait for a thread: so `threads` is how many slow clients one worker absorbs before its other
# clients wait. 16 is cheap (a thread costs little memory) and stays near the database pool's 15.
threads = 16

# gthread's `timeout` is the worker's heartbeat: a worker whose main loop is stuck this long is
# killed and replaced. It does not bound a request (a thread may take longer); 30 s is gunicorn's
# default and far above any request of ours.
timeout = 30
# On a restart or a stop (SIGHUP, SIGTERM), requests in progress get this long to finish. Twilio
# gives up on a webhook after 15 s, so 20 s lets every webhook in flight be answered.
graceful_timeout = 20
# How long an idle keep-alive connection is kept for the client's next request. Short: an idle
# connection waits in the worker's poller, but each one counts towards worker_connections.
keepalive = 5

# Refuse oversized request heads before any code of ours runs (gunicorn answers 400 or 431).
# Our request lines are short (the longest, a widget poll with its cursor, is under 100 bytes;
# Twilio's and Slack's webhooks are POSTs to short paths). 4094 is gunicorn's default.
limit_request_line = 4094
# At most 50 header fields (gunicorn's default is 100): browsers send about 20, Twilio about 15.
limit_request_fields = 50
# Each header field up to 8190 bytes (gunicorn's default): room for a browser's cookies.
limit_request_field_size = 8190
# Request bodies are limited by the app: MAX_CONTENT_LENGTH (8 MiB) everywhere, and Twilio's
# webhooks refuse a body over 64 KiB (413), a missing Content-Length (411) and a missing
# signature (403) before reading it (channels/twilio_messaging.py).

# Logs to stdout and stderr, for the service manager. The access log says what was asked and
# how it went, never who asked: the path without its query string (a client may put in it what
# belongs in a header: the widget's identity is refused there, but it was sent all the same), no
# Referer, no User-Agent, no client address, no headers (Twilio's signature, a bearer key,
# cookies). Behind nginx the client's address is in nginx's log.
# Fields: time, worker pid, method, path, protocol, status, response bytes, milliseconds.
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = '%(t)s %(p)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'

proc_name = "upgrade-chat"


def post_worker_init(worker):
    """Each worker replays this host's inbound spool every few seconds: the webhooks it kept
    while the database was unreachable (web/spool.py). The spool is a folder on this host, so
    no other host's process, the scheduler's included, can replay it. The workers of a host
    take turns (a lock on the folder); an idle look is one directory listing."""
    from channels.twilio_messaging import start_spool_replayer

    start_spool_replayer(worker.wsgi)
