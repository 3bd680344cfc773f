"""Upgrade Chat's composition root: create_app() reads config, wires storage and channels, adds CLI.

Config comes from DEFAULTS, then environment variables prefixed UPGRADE_CHAT_ (for example
UPGRADE_CHAT_DATABASE_URL), then the mapping a test passes. This is the only module that reads the
environment or the clock; everything else gets them handed in.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

import click
import phonenumbers
from flask import Flask, jsonify
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.accounts import HealthBounds
from core.catalog import Catalog, parse_catalog
from core.conversation import Business
from core.delivery import MESSAGE_KIND, RETRY, MessageJobs
from core.engine import EngineConfig
from core.errors import CatalogError, DomainError
from core.guardrails import GuardrailPolicy
from core.intent_model import IntentModel
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from channels import slack as slack_lane
from channels.csm import LoggingCsmNotifier
from channels.twilio_outbound import SandboxSender, TwilioMessagingSender
from channels.webhooks import SignedWebhookSender
from storage import migrate
from storage.db import is_sqlite, make_engine
from storage.outbox import OutboxDispatcher
from storage.uow import SqlUnitOfWork

log = logging.getLogger("upgrade_chat")

DEFAULT_CATALOG = Path(__file__).resolve().parent / "core" / "catalog.toml"

ENV_PREFIX = "UPGRADE_CHAT_"

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # default: SQLite file in the instance folder
    "INSTANCE_PATH": None,  # default: Flask's (instance/ beside app.py in a checkout)
    "API_KEY": None,  # default on SQLite: generated once, kept in instance/api_key
    "CATALOG_PATH": None,  # default: core/catalog.toml
    "DEMO": None,  # default: on for the embedded SQLite service, off with a test mapping
    "AUTO_MIGRATE": None,  # default: on for SQLite, off for PostgreSQL (run `flask db upgrade`)
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
    "TWILIO_AUTH_TOKEN": None,  # required with an account SID: every webhook is verified
    "TWILIO_SMS_FROM": None,  # the Twilio number SMS goes out from (E.164)
    "TWILIO_WHATSAPP_FROM": None,  # the WhatsApp sender (E.164)
    "TWILIO_WHATSAPP_TEMPLATE_SID": None,  # approved template for WhatsApp outside 24 hours
    "PUBLIC_BASE_URL": None,  # the URL Twilio calls us at (signatures are over it)
    "TWILIO_WEBHOOK_SHARED_KEY_SECRET": None,  # Twilio's SharedKey webhook signing, if used
    "SLACK_BOT_TOKEN": None,  # none: escalations are logged and shown at /sandbox/csm
    "SLACK_SIGNING_SECRET": None,  # required with the token: every Slack request is verified
    "SLACK_CHANNEL": None,  # the channel id escalations are posted to
    "SLACK_API_URL": None,  # tests only: a fake Slack's base URL
    "OPERATOR_URL": None,  # links in CSM messages: OPERATOR_URL/accounts/<id>
    "WEB_CHAT_SECRET": None,  # HMAC-SHA256 key of the widget's user_hash (sandbox: generated)
    "SPOOL_DIR": None,  # where inbound webhooks wait while the database is down (instance/spool)
    "PORT": 5000,  # the embedded server's port (scripts/serve)
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,  # bytes per request body; larger is a 413
    "CLOCK": None,  # tests only: a callable returning an aware datetime
}
BOOL_KEYS = ("DEMO", "AUTO_MIGRATE")
INT_KEYS = ("HEALTH_ESCALATIONS_RED_ABOVE", "PORT", "MAX_CONTENT_LENGTH")
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class ConfigError(Exception):
    """A setting that cannot work; the message names the key and what was expected."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Runtime:
    """What the edges need, built once per app: config values, the catalog, storage, the clock."""

    catalog: Catalog
    engine: Engine
    api_key: str
    phone_region: str
    health_bounds: HealthBounds
    conversation: EngineConfig = field(default_factory=EngineConfig)  # guardrails, business, billing
    clock: Callable[[], datetime] = field(default=utc_now)

    def now(self) -> datetime:
        value = self.clock()
        if value.tzinfo is None:
            raise ConfigError("CLOCK must return an aware datetime")
        return value.astimezone(timezone.utc)

    def uow(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, read_only=read_only)

    # The outbox (webhooks, CSM notices, SMS and WhatsApp): run by the scheduler, never in a
    # request.
    dispatcher: OutboxDispatcher | None = None


def load_catalog(path: str | Path | None) -> Catalog:
    """Read and validate the catalog file; a bad one raises CatalogError naming file and key."""
    source = Path(path) if path else DEFAULT_CATALOG
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(str(source), "CATALOG_PATH", "a readable TOML file", exc.strerror) from None
    return parse_catalog(text, str(source))


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
    region = str(values["DEFAULT_PHONE_REGION"]).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{ENV_PREFIX}DEFAULT_PHONE_REGION: expected a two-letter region such "
                          f"as US or GB, got {values['DEFAULT_PHONE_REGION']!r}")
    values["DEFAULT_PHONE_REGION"] = region
    return values


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
    # Sandbox: the sandbox page signs its requests with this process's own token.
    values["SANDBOX"] = True
    values["TWILIO_AUTH_TOKEN"] = values["TWILIO_AUTH_TOKEN"] or secrets.token_hex(16)
    values["WEB_CHAT_SECRET"] = values["WEB_CHAT_SECRET"] or secrets.token_hex(16)
    values["PUBLIC_BASE_URL"] = values["PUBLIC_BASE_URL"] or f"http://127.0.0.1:{values['PORT']}"


def _api_key(app: Flask, url: str) -> str:
    key = str(app.config["API_KEY"] or "").strip()  # blank counts as not set: never an empty key
    if key:
        return key
    if not is_sqlite(url):
        raise ConfigError("API_KEY is not set: set UPGRADE_CHAT_API_KEY (a long random string) "
                          "for a PostgreSQL deployment")
    path = Path(app.instance_path) / "api_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a temporary file, then linked into place (which fails if the key exists):
    # of two processes starting at once one places its key, and neither ever reads a half-written
    # or empty file.
    fd, tmp = tempfile.mkstemp(prefix=".api_key.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links (some bind mounts): exclusive create
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(Path(tmp).read_text(encoding="utf-8"))
    finally:
        os.unlink(tmp)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ConfigError(f"{path} is empty: delete it (a new key is generated at start) or set "
                          "UPGRADE_CHAT_API_KEY")
    return key


def _decimal(app: Flask, key: str) -> Decimal:
    try:
        return Decimal(str(app.config[key]))
    except ArithmeticError:
        raise ConfigError(f"{key}: expected a number, got {app.config[key]!r}") from None


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The Upgrade Chat web app. `test_config` overrides defaults and the environment."""
    config = settings(os.environ, test_config)
    _twilio(config)
    app = Flask(__name__, instance_path=config["INSTANCE_PATH"])
    app.json.sort_keys = False  # keep fields in the documented order, easier to read
    app.config.from_mapping(config)
    _setup_logging()

    url = app.config["DATABASE_URL"]
    if not url:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(app.instance_path) / 'upgrade_chat.sqlite3'}"
    app.config["DATABASE_URL"] = url
    engine = make_engine(url)
    runtime = Runtime(
        catalog=load_catalog(app.config["CATALOG_PATH"]),
        engine=engine,
        api_key=_api_key(app, url),
        phone_region=app.config["DEFAULT_PHONE_REGION"],
        health_bounds=HealthBounds(
            csat_below=_decimal(app, "HEALTH_CSAT_RED_BELOW"),
            sentiment_below=_decimal(app, "HEALTH_SENTIMENT_RED_BELOW"),
            escalations_above=app.config["HEALTH_ESCALATIONS_RED_ABOVE"],
        ),
        clock=app.config["CLOCK"] or utc_now,
    )
    runtime.conversation = _engine_config(app, runtime.health_bounds)
    try:
        slack_on = slack_lane.configured(app.config)
    except slack_lane.SlackConfigError as exc:
        raise ConfigError(str(exc)) from None
    runtime.dispatcher = OutboxDispatcher(engine, _senders(app, runtime, slack_on), runtime.now,
                                          backoffs={MESSAGE_KIND: RETRY})
    app.extensions["upgrade_chat"] = runtime

    auto_migrate = app.config["AUTO_MIGRATE"]
    if auto_migrate is None:
        auto_migrate = is_sqlite(url)
    if auto_migrate:
        migrate.upgrade(engine)
    else:
        _warn_if_schema_behind(engine)

    from channels import api, cli, demo, twilio_messaging, webchat

    app.register_blueprint(api.bp)
    app.register_blueprint(twilio_messaging.bp)
    app.register_blueprint(webchat.bp)
    if slack_on:
        _, slack_bp = slack_lane.create_slack(app.config, engine, runtime.now,
                                              catalog=runtime.catalog)
        app.register_blueprint(slack_bp)
    elif app.config["SANDBOX"]:  # without Slack in production, escalations are logged only
        app.register_blueprint(slack_lane.sandbox_csm_bp)
    api.register_errors(app)
    if app.config["SANDBOX"]:
        from channels import sandbox

        app.register_blueprint(sandbox.bp)
    cli.register(app)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    demo_on = app.config["DEMO"]
    if demo_on is None:
        demo_on = test_config is None and is_sqlite(url)
    if demo_on:
        loaded = demo.load(runtime, only_missing=True)
        if loaded:
            log.info("demo data: loaded %d accounts", loaded)
    return app


def _message_sender(app: Flask):
    """Twilio when an account is configured; otherwise the sandbox, which stores instead."""
    if app.config["SANDBOX"]:
        return SandboxSender()
    client = Client(app.config["TWILIO_ACCOUNT_SID"], app.config["TWILIO_AUTH_TOKEN"],
                    http_client=TwilioHttpClient(timeout=5))  # never the library's no-timeout
    return TwilioMessagingSender(
        client, sms_from=app.config["TWILIO_SMS_FROM"],
        whatsapp_from=app.config["TWILIO_WHATSAPP_FROM"],
        status_callback_url=app.config["PUBLIC_BASE_URL"].rstrip("/") + "/twilio/status",
        whatsapp_template_sid=app.config["TWILIO_WHATSAPP_TEMPLATE_SID"])


def _senders(app: Flask, runtime: Runtime, slack_on: bool) -> dict:
    """The outbox's senders, one per job kind: SMS and WhatsApp to Twilio (or the sandbox), CSM
    notices to Slack (or the log), plan changes to the webhook."""
    csm = (slack_lane.SlackEscalationSender.from_config(app.config, runtime.engine, runtime.catalog)
           if slack_on else LoggingCsmNotifier())
    senders = {MESSAGE_KIND: MessageJobs(_message_sender(app)), slack_lane.POST_KIND: csm}
    if slack_on:  # a button's failed chat.update, redrawn later
        senders[slack_lane.UPDATE_KIND] = csm
    if app.config["BILLING_WEBHOOK_URL"]:
        senders["billing_webhook"] = SignedWebhookSender(
            str(app.config["BILLING_WEBHOOK_URL"]), str(app.config["BILLING_WEBHOOK_SECRET"]),
            timeout=5.0, clock=runtime.now)
    return senders


def _engine_config(app: Flask, health: HealthBounds) -> EngineConfig:
    url, secret = app.config["BILLING_WEBHOOK_URL"], app.config["BILLING_WEBHOOK_SECRET"]
    if url and not secret:
        raise ConfigError("BILLING_WEBHOOK_URL is set without BILLING_WEBHOOK_SECRET: webhooks "
                          "are always signed (set UPGRADE_CHAT_BILLING_WEBHOOK_SECRET)")
    try:
        policy = GuardrailPolicy(control_share=_decimal(app, "CONTROL_SHARE"),
                                 control_salt=str(app.config["CONTROL_SALT"]))
    except DomainError as exc:
        raise ConfigError(f"{ENV_PREFIX}CONTROL_SHARE: {exc.message}") from None
    return EngineConfig(policy=policy, health=health,
                        business=Business(str(app.config["BUSINESS_NAME"]),
                                          str(app.config["SUPPORT_CONTACT"])),
                        billing_webhook=bool(url), model=load_intent_model())


@lru_cache(maxsize=1)
def load_intent_model() -> IntentModel:
    """The reply model shipped in the package (core/intent_model.json), read once per process
    and handed to the core."""
    text = resources.files("core").joinpath("intent_model.json").read_text(encoding="utf-8")
    return IntentModel.from_json(text)


def _warn_if_schema_behind(engine: Engine) -> None:
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
    except SQLAlchemyError as exc:  # the database may be down at start; workers retry later
        log.warning("could not read the schema revision: %s", exc)
        return
    if current != head:
        log.warning("database schema is at %s, this code needs %s: run `flask --app app db "
                    "upgrade` before serving traffic", current or "nothing", head)


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # a line per request


def main() -> None:
    """Run the embedded service (SQLite, demo data) and print what a new user needs."""
    try:
        app = create_app()
    except (CatalogError, ConfigError) as exc:
        click.echo(f"upgrade-chat: cannot start: {exc}", err=True)
        sys.exit(2)
    rt: Runtime = app.extensions["upgrade_chat"]
    host, port = "127.0.0.1", app.config["PORT"]
    base = f"http://{host}:{port}"
    click.echo(f"""
Upgrade Chat is running (embedded mode).
  Database : {app.config['DATABASE_URL']}
  API      : {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)
  API key  : {rt.api_key}
  Phone    : {base}/sandbox/phone   (the buyers' phones: SMS and WhatsApp, stored not sent)
  CSM lane : {base}/sandbox/csm     (escalations, without Slack)
  Web chat : {base}/demo            (a demo product page with the widget, as Dana)
  Try      : curl -H 'Authorization: Bearer {rt.api_key}' {base}/api/v1/accounts/acme-clinic/case
""")
    _start_background_jobs(app)
    app.run(host=host, port=port, threaded=True)


def _start_background_jobs(app: Flask) -> None:
    """The embedded service is one process, so it runs its own scheduler (production runs
    `flask --app app scheduler` once instead)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from channels.cli import _in_context

    scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
    scheduler.add_job(lambda: _in_context(app), "interval", seconds=2, max_instances=1,
                      coalesce=True, id="upgrade-chat-jobs")
    scheduler.start()


if __name__ == "__main__":
    main()
