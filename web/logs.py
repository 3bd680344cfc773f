"""Logs never carry what an exception's text quotes.

An exception's message is written by whoever raised it, about the values it failed on: a
database error quotes key values (PostgreSQL's DETAIL) and the JSON or text it could not read
(its CONTEXT), which can be a buyer's number or message; a KeyError quotes its key. Any library
may log a traceback (Flask, slack-bolt, APScheduler, ours). So, once `install()` has run, every
log record's exception is replaced, before any handler formats it, by a stand-in that names the
exception's type and code only (`describe`), link by link along the chain (`raise ... from`,
and the exception being handled when another was raised), with the original frames: the
operator sees what failed and where, never the values.

`UPGRADE_CHAT_LOG_EXCEPTION_DETAILS=1` keeps the text, for a developer's own machine only.
"""

from __future__ import annotations

import logging
from typing import Any

_INSTALLED = "_upgrade_chat_redacts"


class Redacted(Exception):
    """An exception as logs may show it: its type and code, not its text."""


def describe(exc: BaseException) -> str:
    """`module.Type (code)`: the kind of failure without its message. The code is a domain
    error's code, or a database driver's SQLSTATE / SQLite error name (also behind SQLAlchemy's
    wrapper), when there is one."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    parts = []
    code = getattr(exc, "code", None)
    if isinstance(code, (str, int)) and not isinstance(code, bool):
        parts.append(f"code={code}")
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    for source in (orig, exc):
        if source is None:
            continue
        state = getattr(source, "sqlstate", None) or getattr(source, "sqlite_errorname", None)
        if state:
            if source is orig:
                parts.append(f"{type(orig).__module__}.{type(orig).__qualname__}")
            parts.append(f"SQLSTATE {state}" if getattr(source, "sqlstate", None) else str(state))
            break
    return f"{name} ({', '.join(parts) if parts else 'details withheld'})"


def redacted(exc: BaseException, _seen: dict[int, BaseException] | None = None) -> BaseException:
    """A stand-in for `exc` and the exceptions chained to it, each named by `describe`, each
    with its original traceback."""
    seen = {} if _seen is None else _seen
    if id(exc) in seen:  # a cycle in the chain
        return seen[id(exc)]
    stand_in = Redacted(describe(exc))
    seen[id(exc)] = stand_in
    stand_in.__traceback__ = exc.__traceback__
    if exc.__cause__ is not None:
        stand_in.__cause__ = redacted(exc.__cause__, seen)
    if exc.__context__ is not None:
        stand_in.__context__ = redacted(exc.__context__, seen)
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in


def install(keep_details: bool = False) -> None:
    """Make every log record of this process show exceptions redacted (idempotent). Records
    are changed where they are made (the record factory), so no handler, ours or a library's,
    ever sees the text."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, _INSTALLED, False) or keep_details:
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        info = record.exc_info
        if info and info[1] is not None and not isinstance(info[1], Redacted):
            stand_in = redacted(info[1])
            record.exc_info = (type(stand_in), stand_in, info[2])
            record.exc_text = None
        return record

    setattr(make_record, _INSTALLED, True)
    logging.setLogRecordFactory(make_record)
