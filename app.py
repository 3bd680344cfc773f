"""Upgrade Chat's composition root: create_app() reads config, wires storage and channels, adds CLI.

Config comes from DEFAULTS, then environment variables prefixed UPGRADE_CHAT_ (for example
UPGRADE_CHAT_DATABASE_URL), then the mapping a test passes. This is the only module that reads the
environment or the clock; everything else gets them handed in.

create_app() only reads config and wires things: it touches neither the file system nor the
database, so `flask --app app --help` or importing the app leaves no trace. What a running service
needs besides (the instance folder, the API key file, the schema, the demo accounts) is made by an
explicit start step, `start()`: run by scripts/serve (`main()`) and by `flask --app app init`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache, partial
from importlib import resources
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

import click
import phonenumbers
from flask import Flask, current_app, jsonify
from flask.cli import with_appcontext
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core.accounts import HealthBounds
from core.catalog import Catalog
from core.conversation import Business
from core.calls import CALL_KIND, RETRY as CALL_RETRY
from core.delivery import MESSAGE_KIND, RETRY, MessageJobs
from core.handlers import Settings
from core.errors import CatalogError, DomainError
from core.guardrails import GuardrailPolicy
from core.intent_model import IntentModel

import channels
from channels import when
import cli
import devtools
from devtools import local
from channels.slack import SlackConfigError
from storage.audit import SqlAuditTrail
from cli.audit import audited_command, record as record_command
from core.audit import Outcome
from web import audit, logs
from web.catalog_file import DEFAULT_CATALOG, load_catalog
from storage.usage_sources import SqlSourceCursors
from web.usage_sources_file import load_sources
from core.usage_sources import SourcesError, UsageSource
from web.audit import not_audited
from web.api_key import ApiKey, ApiKeyUnavailable
from web.sandbox_secrets import FILE_NAME as SANDBOX_SECRETS_FILE
from web.sandbox_secrets import SandboxSecrets, SandboxSecretsUnavailable
from web.webhooks import SignedWebhookSender
from storage import migrate
from storage.db import is_sqlite, make_engine
from storage.outbox import OutboxDispatcher
from storage.scheduler_lock import SchedulerLock
from storage.uow import SqlUnitOfWork

log = logging.getLogger("upgrade_chat")

ENV_PREFIX = "UPGRADE_CHAT_"

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # default: SQLite file in the instance folder
    # A read replica of DATABASE_URL (same kind of database): the console's pages and the
    # metrics read through it (Runtime.replica_uow); every write and every read that decides
    # something stays on DATABASE_URL. None: everything on DATABASE_URL.
    "DATABASE_REPLICA_URL": None,
    "INSTANCE_PATH": None,  # default: Flask's (instance/ beside app.py in a checkout)
    "API_KEY": None,  # default on SQLite: generated once by the start step, in instance/api_key
    "CATALOG_PATH": None,  # default: core/catalog.toml
    # Pull mode: a TOML file of usage sources (databases the scheduler reads usage from, cli/
    # pull.py; usage_sources.example.toml); none: usage arrives by the API and CSV only.
    "USAGE_SOURCES": None,
    # Both apply to the explicit start step (scripts/serve, `flask --app app init`), never to
    # create_app. DEMO: load the demo accounts; default on for scripts/serve on SQLite, else off.
    "DEMO": None,
    # AUTO_MIGRATE: migrate before use (the start step and the CLI commands that use the
    # database); default on for SQLite, off for PostgreSQL (run `flask --app app db upgrade`).
    "AUTO_MIGRATE": None,
    "DEFAULT_PHONE_REGION": "US",  # how phone numbers written without +country are read
    "HEALTH_CSAT_RED_BELOW": "3.0",
    "HEALTH_SENTIMENT_RED_BELOW": "-0.3",
    "HEALTH_ESCALATIONS_RED_ABOVE": 0,
    "CONTROL_SHARE": "0.10",  # share of accounts held out as the control cohort (§5.2)
    "CONTROL_SALT": "upgrade-chat-control",  # change it to draw a new cohort
    # Who the messages come from: the SaaS product's own name, the one the buyer knows (named
    # first in every phone opening, in HELP, STOP and "are you a bot?"). "Beacon" is the demo's.
    "BUSINESS_NAME": "Beacon",
    "SUPPORT_CONTACT": "support@beacon.example",
    "BILLING_WEBHOOK_URL": None,  # where plan changes are POSTed (signed); none: not sent
    "BILLING_WEBHOOK_SECRET": None,  # HMAC-SHA256 key for the webhook signature
    "TWILIO_ACCOUNT_SID": None,  # none: sandbox channels (stored, shown at /sandbox/phone)
    # Required with an account SID: every webhook is verified. The sandbox generates its own,
    # once per instance folder (web/sandbox_secrets.py), as it does WEB_CHAT_SECRET.
    "TWILIO_AUTH_TOKEN": None,
    "TWILIO_SMS_FROM": None,  # the Twilio number SMS goes out from (E.164)
    "TWILIO_WHATSAPP_FROM": None,  # the WhatsApp sender (E.164)
    "TWILIO_VOICE_FROM": None,  # the number calls are placed from (E.164); none: TWILIO_SMS_FROM
    "TWILIO_WHATSAPP_TEMPLATE_SID": None,  # approved template for WhatsApp outside 24 hours
    "PUBLIC_BASE_URL": None,  # the URL Twilio calls us at (signatures are over it)
    "TWILIO_WEBHOOK_SHARED_KEY_SECRET": None,  # Twilio's SharedKey webhook signing, if used
    "TWILIO_API_URL": None,  # tests and benchmarks only: a fake Twilio's base URL
    "SLACK_BOT_TOKEN": None,  # none: escalations are logged and shown at /sandbox/csm
    "SLACK_SIGNING_SECRET": None,  # required with the token: every Slack request is verified
    "SLACK_CHANNEL": None,  # the channel id escalations are posted to
    "SLACK_API_URL": None,  # tests only: a fake Slack's base URL
    "OPERATOR_URL": None,  # links in CSM messages: OPERATOR_URL/accounts/<id>
    "WEB_CHAT_SECRET": None,  # HMAC-SHA256 key of the widget's user_hash (sandbox: generated)
    "SPOOL_DIR": None,  # where inbound webhooks wait while the database is down (instance/spool)
    "PORT": 5000,  # the embedded server's port (scripts/serve)
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,  # bytes per request body; larger is a 413
    # Logs show an exception by its type and code, never its text (web/logs.py); on: the text
    # too, for a developer's own machine (it may quote a buyer's number or message).
    "LOG_EXCEPTION_DETAILS": False,
    # Message bodies older than this many days are purged by the scheduler (core.retention);
    # 0 or empty: kept forever.
    "MESSAGE_RETENTION_DAYS": 365,
    # Metrics: days after a crossing within which a move up counts as its conversion (§8)
    "METRICS_CONVERSION_DAYS": 30,
    # The key that signs the operator console's session cookie; default: generated once by the
    # start step into instance/secret_key (requests only read it).
    "SECRET_KEY": None,
    # The console's session cookie is Secure unless the service is a sandbox on plain-http
    # loopback (channels/console.py, cookie_secure); true or false forces it.
    "CONSOLE_COOKIE_SECURE": None,
    "CLOCK": None,  # tests only: a callable returning an aware datetime
}
BOOL_KEYS = ("DEMO", "AUTO_MIGRATE", "LOG_EXCEPTION_DETAILS", "CONSOLE_COOKIE_SECURE")
INT_KEYS = ("METRICS_CONVERSION_DAYS", "HEALTH_ESCALATIONS_RED_ABOVE", "PORT", "MAX_CONTENT_LENGTH")
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
MAX_RETENTION_DAYS = 36_500  # a hundred years; more would overflow the dates it is taken from


class ConfigError(Exception):
    """A setting that cannot work; the message names the key and what was expected."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Runtime:
    """What the edges need, built once per app: config values, the catalog, storage, the clock."""

    catalog: Catalog
    engine: Engine  # the primary (DATABASE_URL): every write, every read that decides
    api_key: ApiKey  # .read() in requests; created only by the start step
    session_key: ApiKey  # the console's session key (SECRET_KEY, or instance/secret_key)
    phone_region: str
    health_bounds: HealthBounds
    settings: Settings = field(default_factory=Settings)  # guardrails, business, billing, channels
    clock: Callable[[], datetime] = field(default=utc_now)
    # How long message bodies are kept (MESSAGE_RETENTION_DAYS); None: forever.
    message_retention: timedelta | None = None

    def now(self) -> datetime:
        value = self.clock()
        if value.tzinfo is None:
            raise ConfigError("CLOCK must return an aware datetime")
        return value.astimezone(timezone.utc)

    def uow(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, read_only=read_only)

    # The read replica (DATABASE_REPLICA_URL), read-only; None: no replica.
    replica: Engine | None = None

    def replica_uow(self) -> SqlUnitOfWork:
        """A read-only unit of work for reads that may be a few seconds behind: the console's
        pages and the metrics (their edges choose it). On the replica when there is one, else on
        the primary. Never for a read that decides something (a thread's state, a lock, a
        duplicate, consent, a sign-in): those take `uow()` on the primary."""
        return SqlUnitOfWork(self.replica or self.engine, read_only=True)

    @property
    def audit(self) -> SqlAuditTrail:
        """The audit trail (web/audit.py and cli write it; `flask --app app audit export`)."""
        return SqlAuditTrail(self.engine)

    # Which configuration this process runs (config_fingerprint): every CLI audit event says it.
    config_fingerprint: str = ""

    # Pull mode's sources by name (USAGE_SOURCES), validated at start-up; empty: none.
    usage_sources: dict[str, UsageSource] = field(default_factory=dict)

    def source_states(self) -> dict[str, Any]:
        """Each usage source's kept state (cursor, last pull, the error that stopped it) by name,
        for the console; through the replica when there is one."""
        return SqlSourceCursors(self.replica or self.engine).all() if self.usage_sources else {}

    # The outbox (webhooks, CSM notices, SMS and WhatsApp): run by the scheduler, never in a
    # request.
    dispatcher: OutboxDispatcher | None = None
    # Sandbox mode only: the secrets it generates once per instance folder, shared by every
    # process (web/sandbox_secrets.py); read through web.http.secret.
    sandbox_secrets: SandboxSecrets | None = None
    # Makes the database usable before a CLI command uses it (`prepare_database`): the instance
    # folder of the default SQLite file and, with schema=True, AUTO_MIGRATE's migration.
    prepare_database: Callable[..., None] = field(default=lambda *, schema=True: None)


SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "DATABASE_URL", "DATABASE_REPLICA_URL")


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of the settings that shape behaviour and of the catalog file's text, never
    of a secret: the audit trail's CLI events carry it, so a change of configuration shows
    between two events (`audit export`) without the trail holding any setting."""
    settings = {k: str(config.get(k)) for k in sorted(DEFAULTS)
                if k != "CLOCK" and not any(word in k for word in SECRET_WORDS)}
    source = Path(config["CATALOG_PATH"]) if config.get("CATALOG_PATH") else DEFAULT_CATALOG
    try:
        catalog = source.read_bytes()
    except OSError:
        catalog = b""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + b"\0" + catalog)
    return digest.hexdigest()[:12]


def settings(environ: Mapping[str, str], test_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS, then UPGRADE_CHAT_<KEY> environment variables, then the test mapping, typed.

    Environment values are text: booleans must say true/false (or 1/0, yes/no, on/off), numbers
    must be numbers, and everything else is kept as written (an API key of "1e3" stays "1e3").
    """
    values = dict(DEFAULTS)
    for key in DEFAULTS:
        if key != "CLOCK" and ENV_PREFIX + key in environ:
            values[key] = environ[ENV_PREFIX + key]
    values.update(test_config or {})
    for key in BOOL_KEYS:
        value = values[key]
        if isinstance(value, str):
            word = value.strip().lower()
            if word not in TRUE | FALSE:
                raise ConfigError(f"{ENV_PREFIX}{key}: expected true or false, got {value!r}")
            values[key] = word in TRUE
    for key in INT_KEYS:
        try:
            values[key] = int(values[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{ENV_PREFIX}{key}: expected a whole number, "
                              f"got {values[key]!r}") from None
    values["MESSAGE_RETENTION_DAYS"] = _retention_days(values["MESSAGE_RETENTION_DAYS"])
    if not 1 <= values["METRICS_CONVERSION_DAYS"] <= 365:
        raise ConfigError(f"{ENV_PREFIX}METRICS_CONVERSION_DAYS: expected days from 1 to 365, "
                          f"got {values['METRICS_CONVERSION_DAYS']!r}")
    region = str(values["DEFAULT_PHONE_REGION"]).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{ENV_PREFIX}DEFAULT_PHONE_REGION: expected a two-letter region such "
                          f"as US or GB, got {values['DEFAULT_PHONE_REGION']!r}")
    values["DEFAULT_PHONE_REGION"] = region
    return values


def _retention_days(value: Any) -> int:
    """MESSAGE_RETENTION_DAYS as a whole number of days; 0 (or empty) keeps bodies forever."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    days = None
    if isinstance(value, int) and not isinstance(value, bool):
        days = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        days = int(value.strip())
    if days is None or not 0 <= days <= MAX_RETENTION_DAYS:
        raise ConfigError(f"{ENV_PREFIX}MESSAGE_RETENTION_DAYS: expected a whole number of days "
                          f"from 0 to {MAX_RETENTION_DAYS:,} (0 or empty: keep message bodies "
                          f"forever), got {value!r}")
    return days


def _twilio(values: dict[str, Any]) -> None:
    """Production Twilio or the sandbox; fail closed: never accept unsigned webhooks."""
    if values["TWILIO_ACCOUNT_SID"]:
        for key in ("TWILIO_AUTH_TOKEN", "TWILIO_SMS_FROM", "PUBLIC_BASE_URL"):
            if not values[key]:
                raise ConfigError(f"{ENV_PREFIX}{key} is required when {ENV_PREFIX}"
                                  f"TWILIO_ACCOUNT_SID is set (webhooks are verified against "
                                  f"the auth token at the public URL)")
        values["SANDBOX"] = False
        return
    # Sandbox: the sandbox page signs its requests with a token of its own, and /demo the
    # widget's identity with a web chat secret of its own, unless configured: both are generated
    # once per instance folder, on first use (create_app makes nothing), so every process
    # agrees (web/sandbox_secrets.py).
    values["SANDBOX"] = True
    values["PUBLIC_BASE_URL"] = values["PUBLIC_BASE_URL"] or f"http://127.0.0.1:{values['PORT']}"


def _api_key(app: Flask, url: str) -> ApiKey:
    """The configured key; on SQLite without one, the file the start step writes. Nothing is read
    or written here: a PostgreSQL deployment without a key is refused at once."""
    configured = str(app.config["API_KEY"] or "").strip()  # blank counts as not set
    if not configured and not is_sqlite(url):
        raise ConfigError("API_KEY is not set: set UPGRADE_CHAT_API_KEY (a long random string) "
                          "for a PostgreSQL deployment")
    return ApiKey(configured, None if configured else Path(app.instance_path) / "api_key")


def _replica_engine(value: Any, primary_url: str) -> Engine | None:
    """The read replica's engine (DATABASE_REPLICA_URL; blank: none), read-only: on PostgreSQL
    its transactions are READ ONLY, so a write sent there by mistake fails instead of landing
    (a hot standby refuses it anyway). The URL is never quoted back: it may hold a password."""
    text = str(value or "").strip()
    if not text:
        return None
    key = f"{ENV_PREFIX}DATABASE_REPLICA_URL"
    try:
        backend = make_url(text).get_backend_name()
        engine = make_engine(text)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"{key}: not a database URL this service can use ({type(exc).__name__}"
                          f"); expected one like postgresql+psycopg://user:pass@replica.internal/"
                          f"upgrade_chat") from None
    primary = make_url(primary_url).get_backend_name()
    if backend != primary:
        raise ConfigError(f"{key}: a replica of DATABASE_URL must be the same kind of database: "
                          f"DATABASE_URL is {primary}, the replica's URL is {backend}")
    if backend == "postgresql":
        engine = engine.execution_options(postgresql_readonly=True)
    return engine


def _decimal(app: Flask, key: str) -> Decimal:
    try:
        return Decimal(str(app.config[key]))
    except ArithmeticError:
        raise ConfigError(f"{key}: expected a number, got {app.config[key]!r}") from None


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The Upgrade Chat web app, wired. `test_config` overrides defaults and the environment.

    Reads config and the catalog and builds objects (the SQLAlchemy engine connects on first
    use); creates no folder or file and opens no database connection. `start()` does that."""
    config = settings(os.environ, test_config)
    _twilio(config)
    app = Flask(__name__, instance_path=config["INSTANCE_PATH"], static_folder=None)
    app.json.sort_keys = False  # keep fields in the documented order, easier to read
    app.config.from_mapping(config)
    _setup_logging(keep_exception_details=bool(app.config["LOG_EXCEPTION_DETAILS"]))

    url = app.config["DATABASE_URL"] or \
        f"sqlite:///{Path(app.instance_path) / 'upgrade_chat.sqlite3'}"  # created by start()
    app.config["DATABASE_URL"] = url
    if app.config["AUTO_MIGRATE"] is None:
        app.config["AUTO_MIGRATE"] = is_sqlite(url)
    engine = make_engine(url)
    replica = _replica_engine(app.config["DATABASE_REPLICA_URL"], url)
    runtime = Runtime(
        catalog=load_catalog(app.config["CATALOG_PATH"]),
        engine=engine,
        api_key=_api_key(app, url),
        session_key=ApiKey(app.config["SECRET_KEY"], Path(app.instance_path) / "secret_key",
                           setting="SECRET_KEY"),
        phone_region=app.config["DEFAULT_PHONE_REGION"],
        health_bounds=HealthBounds(
            csat_below=_decimal(app, "HEALTH_CSAT_RED_BELOW"),
            sentiment_below=_decimal(app, "HEALTH_SENTIMENT_RED_BELOW"),
            escalations_above=app.config["HEALTH_ESCALATIONS_RED_ABOVE"],
        ),
        clock=app.config["CLOCK"] or utc_now,
        message_retention=timedelta(days=app.config["MESSAGE_RETENTION_DAYS"])
        if app.config["MESSAGE_RETENTION_DAYS"] else None,
    )
    runtime.replica = replica
    runtime.settings = _settings(app, runtime.health_bounds)
    try:
        runtime.usage_sources = load_sources(app.config["USAGE_SOURCES"])
    except SourcesError as exc:
        raise ConfigError(f"{ENV_PREFIX}USAGE_SOURCES: {exc}") from None
    runtime.config_fingerprint = config_fingerprint(app.config)
    runtime.prepare_database = partial(prepare_database, app)
    if app.config["SANDBOX"]:
        runtime.sandbox_secrets = SandboxSecrets(Path(app.instance_path) / SANDBOX_SECRETS_FILE)
    app.extensions["upgrade_chat"] = runtime
    # The factory itself, for a command that runs a second app of its own (`simulate`: its own
    # clock and database); nothing may import this module, so it is handed over.
    app.extensions["upgrade_chat_factory"] = create_app

    senders: dict[str, Any] = {}
    message_senders: dict[str, Any] = {}
    for channel in channels.modules():  # each registers its routes and names its senders
        try:
            installed = channel.install(app, runtime)
        except SlackConfigError as exc:
            raise ConfigError(str(exc)) from None
        for mine, theirs in ((installed.jobs, senders), (installed.messages, message_senders)):
            taken = sorted(set(mine) & set(theirs))
            if taken:
                raise ConfigError(f"channel {channel.name!r} registers a sender for "
                                  f"{', '.join(taken)}, which another channel sends already")
            theirs.update(mine)
    senders[MESSAGE_KIND] = MessageJobs(message_senders, runtime.settings.channels,
                                        runtime.settings.policy)
    if app.config["BILLING_WEBHOOK_URL"]:
        senders["billing_webhook"] = SignedWebhookSender(
            str(app.config["BILLING_WEBHOOK_URL"]), str(app.config["BILLING_WEBHOOK_SECRET"]),
            timeout=5.0, clock=runtime.now)
    runtime.dispatcher = OutboxDispatcher(engine, senders, runtime.now,
                                          backoffs={MESSAGE_KIND: RETRY, CALL_KIND: CALL_RETRY})
    if app.config["SANDBOX"]:  # the sandbox phone, the demo page, the stand-in for Slack
        devtools.install(app)
    cli.register(app)
    app.cli.add_command(init_command)
    audit.install(app)  # every operator request leaves an event (web/audit.py)

    @app.get("/healthz")
    @not_audited("the health check: no account data")
    def healthz():
        return jsonify({"status": "ok"})

    # The migration scripts' head is read now (files of the package, no database), so a worker's
    # first request only asks the database its revision: serving starts without a stall.
    migrate.head_revision()
    checked: list[bool] = []

    @app.before_request
    def _check_schema_once():
        # What start-up used to say, said on the first request instead: a worker that serves a
        # database behind the code (or none at all) says what to run, once.
        if not checked:
            checked.append(True)
            _warn_if_schema_behind(app)

    return app


def start(app: Flask, *, demo: bool) -> tuple[str, int]:
    """The explicit start step (scripts/serve, `flask --app app init`); safe to run again.

    Creates the instance folder and the API key file (SQLite without API_KEY: generated once,
    then read), in sandbox mode the sandbox's secrets (generated once, then read: the local
    pages' token is printed), makes the database usable (`prepare_database`: AUTO_MIGRATE's
    migration) and, with `demo`, loads the demo accounts that are missing. Returns the API key
    and how many demo accounts it loaded. Raises ApiKeyUnavailable for an empty key file and
    SandboxSecretsUnavailable for a secrets file that cannot be made or read."""
    rt: Runtime = app.extensions["upgrade_chat"]
    key = rt.api_key.create()
    rt.session_key.create()
    if rt.sandbox_secrets is not None:
        rt.sandbox_secrets.load()
    prepare_database(app)
    first_operator(app)
    loaded = 0
    if demo:
        from devtools import demo as demo_data

        loaded = demo_data.load(rt, only_missing=True)
        if loaded:
            log.info("demo data: loaded %d accounts", loaded)
    return key, loaded


FIRST_OPERATOR_EMAIL = "admin@localhost.localdomain"
FIRST_OPERATOR_PASSWORD_FILE = "console_admin_password"


def first_operator(app: Flask) -> bool:
    """The start step's console admin, made only when there is no operator at all: its password
    is generated and written once, 0600, to instance/console_admin_password (never printed or
    logged). True when it made one."""
    from core import operators
    from web.passwords import WerkzeugHasher, generate_password

    rt: Runtime = app.extensions["upgrade_chat"]
    if migrate.current_revision(rt.engine) != migrate.head_revision():
        log.warning("console: no first operator yet (the schema is behind): run `flask --app "
                    "app db upgrade`, then `flask --app app init`")
        return False
    path = Path(app.instance_path) / FIRST_OPERATOR_PASSWORD_FILE
    password = generate_password()
    made = operators.create_first_operator(rt.uow(), WerkzeugHasher(),
                                           email=FIRST_OPERATOR_EMAIL, name="Administrator",
                                           password=password, now=rt.now())
    if made is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # an old file names a password no operator has any more
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{FIRST_OPERATOR_EMAIL}\n{password}\n")
    log.info("console: the first operator was made; its password is in %s", path)
    return True


def console_sign_in(app: Flask, base: str) -> str:
    """How to sign in to the console, as the banner says it."""
    path = Path(app.instance_path) / FIRST_OPERATOR_PASSWORD_FILE
    where = (f"email {FIRST_OPERATOR_EMAIL}, password in {path}" if path.exists() else
             "as an operator (`flask --app app operators create`)")
    return f"{base}/console   ({where})"


def sandbox_links(app: Flask, base: str) -> list[tuple[str, str]]:
    """The local pages as scripts/serve and `flask --app app init` print them: (label, URL)
    with the instance's local token, so that opening one signs this browser in (a cookie) and
    lands on the page (devtools/local.py). Empty outside sandbox mode."""
    rt: Runtime = app.extensions["upgrade_chat"]
    if rt.sandbox_secrets is None:
        return []
    token = rt.sandbox_secrets.get("LOCAL_TOKEN")
    pages = [("Phone", "/sandbox/phone"), ("CSM lane", "/sandbox/csm"), ("Web chat", "/demo")]
    return [(label, base + local.sign_in_link(path, token)) for label, path in pages
            if any(rule.rule == path for rule in app.url_map.iter_rules())]


def prepare_database(app: Flask, *, schema: bool = True) -> None:
    """Make the database usable before a command uses it: create the instance folder when the
    SQLite file lives there; with `schema`, migrate (AUTO_MIGRATE) or warn when it is behind."""
    rt: Runtime = app.extensions["upgrade_chat"]
    database = _sqlite_file(app.config["DATABASE_URL"])
    if database is not None and database.parent == Path(app.instance_path):
        database.parent.mkdir(parents=True, exist_ok=True)
    if not schema:
        return
    if app.config["AUTO_MIGRATE"]:
        migrate.upgrade(rt.engine)
    else:
        _warn_if_schema_behind(app)


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or SQLite in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@click.command("init", help="Set this service up, once (running it again changes nothing "
                            "twice): create the instance folder and, on SQLite without "
                            "UPGRADE_CHAT_API_KEY, the API key in instance/api_key; migrate the "
                            "database (AUTO_MIGRATE: on for SQLite); with --demo, load the demo "
                            "accounts. scripts/serve does the same before serving.")
@click.option("--demo/--no-demo", default=None,
              help="Load the demo accounts that are missing [default: the DEMO setting, else no].")
@with_appcontext
@audited_command("service.init")
def init_command(demo: bool | None) -> None:
    app = current_app._get_current_object()
    rt: Runtime = app.extensions["upgrade_chat"]
    load_demo = bool(app.config["DEMO"]) if demo is None else demo
    try:
        key, loaded = start(app, demo=load_demo)
    except (ApiKeyUnavailable, SandboxSecretsUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    revision = migrate.current_revision(rt.engine)
    state = "up to date" if revision == migrate.head_revision() else \
        "behind: run `flask --app app db upgrade`"
    click.echo(f"database: schema {revision or 'empty'} ({state})")
    if rt.api_key.configured:
        click.echo("API key : from UPGRADE_CHAT_API_KEY")
    else:
        click.echo(f"API key : {key}   (kept in {rt.api_key.path})")
    if load_demo:
        click.echo(f"demo    : {loaded} accounts loaded" if loaded else
                   "demo    : the demo accounts are there already")
    console_base = f"http://127.0.0.1:{app.config['PORT']}"
    click.echo(f"console : {console_sign_in(app, console_base)}")
    links = sandbox_links(app, f"http://127.0.0.1:{app.config['PORT']}")
    if links:
        click.echo("sandbox : open on this machine (each link signs this browser in; the pages "
                   "answer 404 without it):")
        for label, url in links:
            click.echo(f"  {label:<9}: {url}")


def _settings(app: Flask, health: HealthBounds) -> Settings:
    url, secret = app.config["BILLING_WEBHOOK_URL"], app.config["BILLING_WEBHOOK_SECRET"]
    if url and not secret:
        raise ConfigError("BILLING_WEBHOOK_URL is set without BILLING_WEBHOOK_SECRET: webhooks "
                          "are always signed (set UPGRADE_CHAT_BILLING_WEBHOOK_SECRET)")
    try:
        policy = GuardrailPolicy(control_share=_decimal(app, "CONTROL_SHARE"),
                                 control_salt=str(app.config["CONTROL_SALT"]))
    except DomainError as exc:
        raise ConfigError(f"{ENV_PREFIX}CONTROL_SHARE: {exc.message}") from None
    return Settings(policy=policy, health=health,
                        business=Business(str(app.config["BUSINESS_NAME"]),
                                          str(app.config["SUPPORT_CONTACT"])),
                        billing_webhook=bool(url), model=load_intent_model(),
                        channels=channels.registered(), read_time=when.read_time)


@lru_cache(maxsize=1)
def load_intent_model() -> IntentModel:
    """The reply model shipped in the package (core/intent_model.json), read once per process
    and handed to the core."""
    text = resources.files("core").joinpath("intent_model.json").read_text(encoding="utf-8")
    return IntentModel.from_json(text)


def _warn_if_schema_behind(app: Flask) -> None:
    database = _sqlite_file(app.config["DATABASE_URL"])
    if database is not None and not database.exists():  # connecting would create an empty one
        log.warning("no database at %s yet: run scripts/serve or `flask --app app init`", database)
        return
    engine = app.extensions["upgrade_chat"].engine
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
    except SQLAlchemyError as exc:  # the database may be down at start; workers retry later
        log.warning("could not read the schema revision: %s", exc)
        return
    if current != head:
        log.warning("database schema is at %s, this code needs %s: run `flask --app app db "
                    "upgrade` before serving traffic", current or "nothing", head)


def _setup_logging(*, keep_exception_details: bool = False) -> None:
    logs.install(keep_details=keep_exception_details)  # before anything can log a traceback
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # a line per request
    # APScheduler says "Running job" and "executed successfully" at INFO on every tick: the
    # scheduler logs a line only when a pass did something (cli._in_context).
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


def main() -> None:
    """Run the embedded service (SQLite, demo data) and print what a new user needs: the start
    step first (instance folder, API key, migration, demo accounts), then the server."""
    try:
        app = create_app()
        demo = app.config["DEMO"]
        key, loaded = start(app, demo=is_sqlite(app.config["DATABASE_URL"]) if demo is None
                            else demo)
    except (CatalogError, ConfigError, ApiKeyUnavailable, SandboxSecretsUnavailable) as exc:
        click.echo(f"upgrade-chat: cannot start: {exc}", err=True)
        sys.exit(2)
    with app.app_context():  # the start step changed data (the demo accounts): on the record
        record_command("service.start", "service", "-", Outcome.OK, demo_accounts=loaded)
    host, port = "127.0.0.1", app.config["PORT"]
    base = f"http://{host}:{port}"
    what = {"Phone": "the buyers' phones: SMS and WhatsApp, stored not sent; calls too:\n"
                     "              text \"call me\" on Dana's phone and it rings",
            "CSM lane": "escalations, without Slack",
            "Web chat": "a demo product page with the widget, as Dana"}
    links = "".join(f"  {label:<9}: {url}\n             ({what[label]})\n"
                    for label, url in sandbox_links(app, base))
    if links:  # the local pages answer 404 to a browser that has not opened one of these
        links += ("             (open them on this machine: the link signs your browser in, "
                  "then the page\n              opens without the token; without it: 404)\n")
    click.echo(f"""
Upgrade Chat is running (embedded mode).
  Database : {app.config['DATABASE_URL']}
  API      : {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)
  API key  : {key}
  Console  : {console_sign_in(app, base)}
{links}  Index    : {base}/
  Try      : curl -H 'Authorization: Bearer {key}' {base}/api/v1/accounts/acme-clinic/case
""")
    _start_background_jobs(app)
    app.run(host=host, port=port, threaded=True)


def _start_background_jobs(app: Flask) -> None:
    """The embedded service is one process, so it runs its own scheduler (production runs
    `flask --app app scheduler` once instead)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from cli import schedule_jobs

    scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
    # Every 2 s, while no other scheduler runs against this database (storage/scheduler_lock.py).
    schedule_jobs(scheduler, app, 2, SchedulerLock(app.extensions["upgrade_chat"].engine))
    scheduler.start()


if __name__ == "__main__":
    main()
