"""schemathesis against channels/openapi.json, in process against the real app (WSGI) on SQLite
with the demo accounts: every operation, the API with its bearer key and the widget with a signed
identity. Checks: no 5xx, every status and body as the document says, schema-valid input
accepted and schema-violating input refused, auth enforced, and no stack trace anywhere."""

from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import strategies as st

from tests.conftest import API_KEY
from tests.fuzz.conftest import (ACCOUNTS, CONTACT_IDS, MODE, POSTGRESQL, SPEC, SQLITE, WEB_USERS,
                                 assert_no_trace, budget, fuzz_database, identity_headers,
                                 no_logged_traceback)

METRICS = ["messages", "seats", "integrations", "feature:workflows", "feature:api"]

CONFIG = schemathesis.Config.from_dict({
    # No string may hold a NUL (the document's 400; a JSON schema cannot say it without a pattern
    # on every string): the hypothesis tests beside this one send them on purpose.
    "generation": {"allow-x00": False},
    # 422 is how the API says "well-formed but breaks a rule" (an unknown time zone, a plan the
    # catalog lacks): a schema cannot say which time zones exist, so schema-valid input may get it.
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}},
})
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)


# --- aiming at real data some of the time -------------------------------------------------------
# Only a value that is already valid is swapped for a seeded one, so a case generated to break the
# document still breaks it.

def _sometimes(value: dict, key: str, choices: list[str]):
    """The generated value, or the same with `key` set to one of the seeded ids."""
    return st.one_of(st.just(value), st.sampled_from(choices).map(lambda c: {**value, key: c}))


def _valid_id(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200 and not value.isspace()


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    for key, ids in (("external_id", ACCOUNTS), ("contact_external_id", CONTACT_IDS)):
        if path_parameters and _valid_id(path_parameters.get(key)):
            return _sometimes(path_parameters, key, ids)
    return st.just(path_parameters)


@schema.hook
def flatmap_body(context, body):
    if context.operation.path != "/api/v1/usage" or not isinstance(body, dict):
        return st.just(body)
    events = body.get("events")
    if not isinstance(events, list) or not all(
            isinstance(e, dict) and _valid_id(e.get("account")) and _valid_id(e.get("metric"))
            for e in events):
        return st.just(body)
    real = st.fixed_dictionaries({"account": st.sampled_from(ACCOUNTS),
                                  "metric": st.sampled_from(METRICS)})
    return st.one_of(st.just(body), st.lists(real, min_size=len(events), max_size=len(events)).map(
        lambda picks: {**body, "events": [{**e, **p} for e, p in zip(events, picks)]}))


# --- who is asking ------------------------------------------------------------------------------

def who(case) -> tuple[str, str]:
    """One of the demo users, picked by the case's own content (schemathesis runs the document's
    examples too, which cannot be combined with a strategy of ours): generated requests come
    from each of them, and the same case always from the same one."""
    return WEB_USERS[zlib.crc32(repr((case.query, case.body)).encode()) % len(WEB_USERS)]


@schema.auth(refresh_interval=None)
class Credentials:
    """The API key for /api/v1, a demo user's signed identity for the widget. As schemathesis's
    auth, so its checks know them for credentials (and try the operations without them)."""

    def get(self, case, context):
        return API_KEY

    def set(self, case, data, context):
        case.headers = dict(case.headers or {})
        if case.path.startswith("/webchat/"):
            case.headers.update(identity_headers(*who(case)))
        else:
            case.headers["Authorization"] = f"Bearer {data}"


# --- checks of our own --------------------------------------------------------------------------

@schemathesis.check
def no_stack_trace(ctx, response, case):
    """No traceback, no exception class with its message, in any body."""
    assert_no_trace(response.text)
    return None


# --- the test -----------------------------------------------------------------------------------

# schemathesis's examples cost the most (its coverage phase adds a hundred-odd per operation):
# the suite runs them on SQLite, the CI pass on PostgreSQL too.
@pytest.fixture(scope="module", params=[SQLITE] + ([POSTGRESQL] if MODE == "ci" else []))
def fuzz_db(request, tmp_path_factory, sqlite_template) -> str:
    return fuzz_database(request, tmp_path_factory, sqlite_template)


@pytest.fixture(scope="module")
def app(seeded):
    return seeded()


@schema.parametrize()
@budget(0.5)
def test_every_operation_answers_as_documented(case, app, caplog):
    case.operation.schema.app = app  # the probes (auth removed, say) go to the same app
    with no_logged_traceback(caplog):
        case.call_and_validate(app=app, additional_checks=[no_stack_trace])
