"""The fuzz tests' budgets, the seeded app they run against, and the properties they share.

Budgets are hypothesis profiles, chosen by UPGRADE_CHAT_FUZZ:

- unset (the normal suite): "fuzz", a few hundred examples in all, derandomized, so a run is the
  same run every time and cannot flake;
- `ci` (`.ci/run`, after the suite): "fuzz-ci", ten times as many, random, from the seed given
  with `--hypothesis-seed` (`.ci/run` prints it; pass it again to replay the run).

UPGRADE_CHAT_FUZZ_EXAMPLES=<n> sets the examples per test of either profile, for a long local
session (docs/architecture.md, "Fuzzing").
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from channels.webchat import user_hash
from devtools import demo
from tests.conftest import API_KEY, Clock, migrated_database

MODES = {"": "fuzz", "ci": "fuzz-ci"}
MODE = os.environ.get("UPGRADE_CHAT_FUZZ", "").strip().lower()
if MODE not in MODES:
    raise pytest.UsageError(f"UPGRADE_CHAT_FUZZ={MODE!r}: expected nothing or 'ci'")

# One app and one database serve all the examples of a test, so the examples share state, and
# the database they write grows on purpose: function-scoped fixtures are what they run against.
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large, HealthCheck.large_base_example,
                                      HealthCheck.filter_too_much])
settings.register_profile("fuzz", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("fuzz-ci", max_examples=250, derandomize=False, **_COMMON)
PROFILE = settings.get_profile(MODES[MODE])
_override = os.environ.get("UPGRADE_CHAT_FUZZ_EXAMPLES", "").strip()
if _override:
    PROFILE = settings(PROFILE, max_examples=int(_override))


def budget(share: float = 1.0) -> settings:
    """The profile, with `share` of its examples (a test whose examples cost more takes less)."""
    return settings(PROFILE, max_examples=max(1, round(PROFILE.max_examples * share)))


def pytest_report_header(config) -> str:
    seed = config.getoption("hypothesis_seed", None)
    return (f"fuzz: profile {MODES[MODE]!r}, {PROFILE.max_examples} examples per test, "
            f"{'derandomized' if PROFILE.derandomize else f'seed {seed}'}")


# --- the seeded app -----------------------------------------------------------------------------

SPEC = Path(__file__).resolve().parents[2] / "channels" / "openapi.json"
TWILIO_TOKEN = "fuzz-twilio-token"
BASE = "https://chat.example.com"
WEB_SECRET = "fuzz-web-chat-secret"

# The demo accounts (one per vertical, each with one contact) are the real ids the fuzzers aim
# at some of the time.
ACCOUNTS = [a.external_id for a, _, _ in demo.ACCOUNTS]
CONTACTS = [a.contacts[0] for a, _, _ in demo.ACCOUNTS]
CONTACT_IDS = [c.external_id for c in CONTACTS]
PHONES = sorted({n for c in CONTACTS for n in (c.phone, c.whatsapp) if n})
WEB_USERS = [(a.external_id, a.contacts[0].web_user_id) for a, _, _ in demo.ACCOUNTS]


SQLITE, POSTGRESQL = "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)


@pytest.fixture(scope="module", params=[SQLITE, POSTGRESQL])
def fuzz_db(request, tmp_path_factory, sqlite_template) -> str:
    """A migrated database per test module, SQLite then PostgreSQL: a module's examples all write
    to it (a fresh one per test would cost more than the examples)."""
    return fuzz_database(request, tmp_path_factory, sqlite_template)


def fuzz_database(request, tmp_path_factory, sqlite_template) -> str:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    return migrated_database(request.getfixturevalue("pg_admin_url"), "upgrade_chat_fuzz")


@pytest.fixture(scope="module")
def seeded(fuzz_db, tmp_path_factory):
    """Builds the app on the module's database with the six demo accounts, their usage, signals
    and openings (sent), and every channel's secrets, so that generated requests reach real
    accounts, contacts, threads and messages some of the time. Keywords override config."""
    from app import create_app, start

    apps = []

    def build(**config):
        settings = {"DATABASE_URL": fuzz_db, "API_KEY": API_KEY, "CLOCK": Clock(),
                    "AUTO_MIGRATE": False, "SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
                    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "PUBLIC_BASE_URL": BASE,
                    "WEB_CHAT_SECRET": WEB_SECRET, "BUSINESS_NAME": "Beacon",
                    "SUPPORT_CONTACT": "support@beacon.example", **config}
        app = create_app(settings)
        apps.append(app)
        start(app, demo=True)  # the demo accounts that are missing
        app.extensions["upgrade_chat"].dispatcher.dispatch_due()  # their openings go out
        return app

    yield build
    for app in apps:
        app.extensions["upgrade_chat"].engine.dispose()


def identity_headers(account: str, user: str) -> dict[str, str]:
    """The widget's signed identity for a user of an account."""
    return {"X-User-Id": user, "X-Account": account, "X-User-Hash": user_hash(WEB_SECRET, user)}


# --- what every answer must be ------------------------------------------------------------------

# What a stack trace or an exception's own text looks like in a body or a log line.
TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+"
    r"|\b(?:sqlalchemy|psycopg|sqlite3|werkzeug|slack_bolt|slack_sdk|twilio)"
    r"(?:\.[a-z_]\w*)*\.[A-Z]\w+"  # an exception's dotted name
    r"|\b[A-Z]\w*(?:Error|Exception): ")


def assert_no_trace(body: str) -> None:
    found = TRACEBACK.search(body)
    assert found is None, f"a trace in the body ({found.group(0)!r}): {body[:2000]}"


def _tracebacks(records) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno >= logging.ERROR
            and (r.exc_info or TRACEBACK.search(r.getMessage()))]


@contextmanager
def no_logged_traceback(caplog) -> Iterator[None]:
    """Around one example: nothing logged at ERROR with a traceback (a crash the edge caught and
    answered politely is still a crash)."""
    caplog.clear()
    yield
    bad = _tracebacks(caplog.records)
    assert not bad, "logged with a traceback:\n" + "\n\n".join(_shown(r) for r in bad)


def _shown(record: logging.LogRecord) -> str:
    trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
    return f"{record.name}: {record.getMessage()}\n{trace}"
