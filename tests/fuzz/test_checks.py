"""The fuzzers' own checks can fail: a trace in a body and a traceback in the log are caught,
and the app's ordinary errors are not taken for one."""

from __future__ import annotations

import logging
import traceback

import pytest

from tests.fuzz.conftest import TRACEBACK, assert_no_trace, no_logged_traceback


def a_traceback() -> str:
    try:
        {}["missing"]
    except KeyError:
        return traceback.format_exc()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("body", [
    a_traceback(),
    '{"error": {"code": "internal_error", "message": "KeyError: \'missing\'"}}',
    "(sqlalchemy.exc.IntegrityError) UNIQUE constraint failed: messages.channel",
    "psycopg.errors.InvalidTimeZoneDisplacementValue: time zone displacement out of range",
    '  File "/srv/app/core/handlers.py", line 12, in handle',
])
def test_a_trace_in_a_body_is_caught(body):
    with pytest.raises(AssertionError, match="a trace in the body"):
        assert_no_trace(body)


@pytest.mark.parametrize("body", [
    '{"error": {"code": "malformed", "message": "events[0].quantity: expected a whole number"}}',
    '{"error": {"code": "invalid_timestamp", "message": "plan_since: \'x\' is not an ISO 8601 '
    'timestamp with a time zone (e.g. 2026-11-26T09:30:00Z)"}}',
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Sorry, I did not catch that."
    "</Message></Response>",
    '{"error": "malformed", "message": "the body is not an object"}',
])
def test_the_apps_own_errors_are_no_trace(body):
    assert TRACEBACK.search(body) is None
    assert_no_trace(body)


def test_an_error_logged_with_its_traceback_is_caught(caplog):
    log = logging.getLogger("channels.api")
    with pytest.raises(AssertionError, match="logged with a traceback"):
        with no_logged_traceback(caplog):
            try:
                {}["missing"]
            except KeyError:
                log.exception("unhandled error on POST /api/v1/usage")


def test_a_warning_or_an_error_without_a_traceback_is_not(caplog):
    log = logging.getLogger("channels.twilio_messaging")
    with no_logged_traceback(caplog):
        log.warning("twilio webhook refused: missing or invalid signature on /twilio/messaging")
        log.error("API request refused: no API key")
