"""The durable ceiling of bench/webhook.py: Twilio's two webhooks answered with the least SQL a
correct answer needs, on the service's own tables (same schema, same indexes).

A WSGI app served by the same gunicorn command line as the service. It checks the signature
exactly as channels.twilio_messaging does (the real twilio RequestValidator over
PUBLIC_BASE_URL + the raw request target and the form), then works in raw psycopg on one
connection per worker (per thread under gthread), in ONE transaction per request, its
statements prepared by the server after their first uses (psycopg's prepare threshold):

`POST /twilio/messaging` (a buyer's SMS):
  1. the sender's contact by number (contacts.phone's index);
  2. the sender's thread, locked (`FOR UPDATE`: two messages of one buyer take turns);
  3. the inbound message stored with its MessageSid, `ON CONFLICT DO NOTHING` on the unique key
     (contact, channel, provider id): nothing comes back for a provider retry, which stops
     there, rolled back, and is answered with an empty <Response/> (never a second reply);
  4. the account's usage: the window's totals per metric from the daily rollups;
  5. the reply stored (`in_reply_to` the inbound);
  6. the thread updated (last channel, updated_at);
  then COMMIT, and only then the TwiML with the reply (nothing is sent before the commit).

`POST /twilio/status` (a delivery report): one conditional `UPDATE` of the message we sent
under that MessageSid, moving its delivery status only forward (the statuses it may replace are
core.handlers.advances' own), in its own transaction; then 204. A retried or late report
matches no row and changes nothing.

It is a ceiling, not a product: no consent, no routing of shared numbers, no intent, no case,
no spool. It says how fast this box can durably answer a signed webhook at all.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape

import psycopg
from sqlalchemy.engine import make_url
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)
from werkzeug.wrappers import Request

from core.handlers import FINAL_FAILURES, PROGRESS, advances

MESSAGING, STATUS = "/twilio/messaging", "/twilio/status"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'
UNKNOWN_TWIML = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>Sorry, we could not '
                 b'find your account for this number.</Message></Response>')
WINDOW_DAYS = 30

CONTACT = "SELECT id, account_id FROM contacts WHERE phone = %s AND erased_at IS NULL " \
          "ORDER BY id LIMIT 1"
THREAD = "SELECT id FROM threads WHERE contact_id = %s ORDER BY opened_at DESC, id DESC " \
         "LIMIT 1 FOR UPDATE"
INBOUND = ("INSERT INTO messages (thread_id, contact_id, channel, direction, kind, body, "
           "provider_id, status, at, attempts) VALUES (%s, %s, 'sms', 'in', 'inbound', %s, %s, "
           "'received', %s, 0) ON CONFLICT (contact_id, channel, provider_id) DO NOTHING "
           "RETURNING id")
USAGE = ("SELECT metric, sum(total) FROM usage_daily WHERE account_id = %s AND day >= %s "
         "GROUP BY metric")
REPLY = ("INSERT INTO messages (thread_id, contact_id, channel, direction, kind, body, "
         "in_reply_to, status, at, attempts) VALUES (%s, %s, 'sms', 'out', 'reply', %s, %s, "
         "'inline', %s, 0)")
TOUCH_THREAD = "UPDATE threads SET last_channel = 'sms', updated_at = %s WHERE id = %s"
# The first message we sent under the provider's id, its delivery status moved only forward.
ADVANCE = ("UPDATE messages SET delivery_status = %s, last_error = coalesce(%s, last_error) "
           "WHERE id = (SELECT id FROM messages WHERE provider_id = %s AND direction = 'out' "
           "ORDER BY id LIMIT 1) AND (delivery_status IS NULL OR delivery_status = ANY(%s))")
# For each status a report may carry: the current statuses it may replace (NULL aside).
KNOWN = tuple(PROGRESS) + tuple(sorted(FINAL_FAILURES))
REPLACES = {new: [old for old in KNOWN if advances(old, new)] for new in KNOWN}

_local = threading.local()
_config: tuple[RequestValidator, str, str] | None = None


def _settings() -> tuple[RequestValidator, str, str]:
    global _config
    if _config is None:
        url = make_url(os.environ["UPGRADE_CHAT_DATABASE_URL"])
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        _config = (RequestValidator(os.environ["UPGRADE_CHAT_TWILIO_AUTH_TOKEN"]),
                   os.environ["UPGRADE_CHAT_PUBLIC_BASE_URL"].rstrip("/"), dsn)
    return _config


def _connection(dsn: str) -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed or conn.broken:
        conn = _local.conn = psycopg.connect(dsn, connect_timeout=5)
    return conn


def _twiml(text: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(text)}'
            f'</Message></Response>').encode()


def reply(conn: psycopg.Connection, form, now: datetime) -> bytes:
    """Steps 1-6 of the module's docstring in one transaction; the TwiML to answer with."""
    sender, sid, body = form.get("From", ""), form.get("MessageSid", ""), form.get("Body", "")
    with conn.transaction():
        contact = conn.execute(CONTACT, (sender,)).fetchone()
        if contact is None:
            return UNKNOWN_TWIML  # (the service keeps such a message; none in the bench)
        contact_id, account_id = contact
        thread = conn.execute(THREAD, (contact_id,)).fetchone()
        thread_id = thread[0] if thread else None
        inbound = conn.execute(INBOUND, (thread_id, contact_id, body, sid, now)).fetchone()
        if inbound is None:  # a provider retry: answered the first time, never twice
            raise _Duplicate
        usage = dict(conn.execute(USAGE, (account_id, (now - timedelta(days=WINDOW_DAYS)).date()))
                     .fetchall())
        text = (f"You sent {usage.get('messages', 0):,} messages in the last {WINDOW_DAYS} days. "
                f"Reply YES to upgrade, or ask me anything.")
        conn.execute(REPLY, (thread_id, contact_id, text, inbound[0], now))
        if thread_id is not None:
            conn.execute(TOUCH_THREAD, (now, thread_id))
    return _twiml(text)


class _Duplicate(Exception):
    """Rolls the transaction back: nothing of a retried delivery is kept twice."""


def status(conn: psycopg.Connection, form) -> None:
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    new = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid or new not in REPLACES:
        return
    with conn.transaction():
        conn.execute(ADVANCE, (new, form.get("ErrorCode") or None, sid, REPLACES[new]))


def app(environ, start_response):
    """WSGI: /healthz, and the two signed webhooks; 403 when the signature is bad."""
    validator, base, dsn = _settings()
    req = Request(environ)
    kind = "text/plain"
    if req.path == "/healthz":
        status_line, body, kind = "200 OK", b'{"status": "ok"}', "application/json"
    elif req.path not in (MESSAGING, STATUS) or req.method != "POST":
        status_line, body = "404 Not Found", b"not found"
    else:
        signature = req.headers.get(SIGNATURE_HEADER, "")
        url = base + str(environ.get("RAW_URI") or req.full_path.rstrip("?"))
        algorithm = get_signature_algorithm(req.headers.get(SIGNATURE_SETTINGS_HEADER))
        if not (signature and validator.validate(url, req.form, signature, algorithm)):
            status_line, body = "403 Forbidden", b"invalid signature"
        elif req.path == STATUS:
            status(_connection(dsn), req.form)
            status_line, body = "204 No Content", b""
        else:
            try:
                body = reply(_connection(dsn), req.form, datetime.now(timezone.utc))
            except _Duplicate:
                body = EMPTY_TWIML
            status_line, kind = "200 OK", "application/xml; charset=utf-8"
    start_response(status_line, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]
