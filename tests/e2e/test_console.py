"""The operator console: sign-in (right and wrong password, disabled operator, throttle), the
session cookie's flags, CSRF, every /console route refused without sign-in, the read-only role,
the operators commands, the start step's first admin, and the index page."""

from __future__ import annotations

import re
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from core import operators
from storage.audit import SqlAuditTrail
from web.passwords import WerkzeugHasher

PASSWORD = "correct horse battery"
EMAIL = "ops@example.com"


@pytest.fixture
def app(make_app):
    return make_app(SECRET_KEY="console-test-key", DEMO=True)


def make_operator(app, email=EMAIL, role="admin", password=PASSWORD):
    rt = app.extensions["upgrade_chat"]
    return operators.create_operator(rt.uow(), WerkzeugHasher(), email=email, name="Ops",
                                     role=role, password=password, now=rt.now())


def token(client, path="/console/sign-in") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, email=EMAIL, password=PASSWORD, **extra):
    return client.post("/console/sign-in", data={"email": email, "password": password,
                                                 "csrf_token": token(client), **extra})


def events(app):
    return [e.json() for e in SqlAuditTrail(app.extensions["upgrade_chat"].engine).events()]


def console_rules(app):
    return [r for r in app.url_map.iter_rules() if r.rule.startswith("/console")]


def test_every_console_route_but_the_sign_in_is_refused_without_a_session(app):
    client = app.test_client()
    open_rules = {"console.sign_in_form", "console.sign_in", "console.stylesheet"}
    walked = 0
    for rule in console_rules(app):
        if rule.endpoint in open_rules:
            continue
        path = rule.rule.replace("<external_id>", "acme-clinic")
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        html = client.open(path, method=method, headers={"Accept": "text/html"})
        other = client.open(path, method=method)
        if method == "GET":
            assert html.status_code == 302 and "/console/sign-in" in html.location, path
            assert other.status_code == 401 and other.get_json()["error"]["code"] == "unauthorized"
            assert b"Acme Clinic" not in html.data + other.data and b"Starter" not in html.data
        else:  # a POST without a token is refused before anything else
            assert html.status_code == 400 and other.status_code == 400
        walked += 1
    assert walked >= 4
    denied = [e for e in events(app) if e["action"] == "console.accounts"]
    assert denied and {e["outcome"] for e in denied} == {"denied"}


def test_signing_in_sets_a_safe_cookie_and_opens_every_page(app):
    make_operator(app)
    client = app.test_client()
    r = sign_in(client, next="/console/accounts")
    assert r.status_code == 303 and r.location.endswith("/console/accounts")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # sandbox
    home = client.get("/console")
    assert home.status_code == 200 and b'<section id="figures"' in home.data
    assert b"Starter" in home.data and home.headers["X-Frame-Options"] == "DENY"
    listing = client.get("/console/accounts?q=ACME").get_data(as_text=True)
    assert "Acme" in listing and "Bright" not in listing
    assert "Harbor" in client.get("/console/accounts?plan=growth").get_data(as_text=True)
    page = client.get("/console/accounts/acme-clinic").get_data(as_text=True)
    for part in ('id="usage"', 'id="case"', 'id="thread"', 'id="ledger"', "prompted"):
        assert part in page, part
    assert client.get("/console/accounts/nobody").status_code == 404
    audit = [e for e in events(app) if e["source"] == "console"]
    signed = [e for e in audit if e["action"] == "console.sign_in"][-1]
    assert signed["outcome"] == "ok" and signed["actor"].startswith("operator:")
    read = [e for e in audit if e["action"] == "console.account"][0]
    assert read["actor"] == signed["actor"] and read["object_id"] == "acme-clinic"
    assert PASSWORD not in str(events(app))


def test_the_cookie_is_secure_outside_a_plain_http_loopback_sandbox(make_app):
    app = make_app(SECRET_KEY="k", TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="t",
                   TWILIO_SMS_FROM="+13125550000", PUBLIC_BASE_URL="https://chat.example")
    make_operator(app)
    r = sign_in(app.test_client())
    assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]


def test_a_wrong_password_or_unknown_email_says_the_same_and_is_audited_without_it(app):
    make_operator(app)
    client = app.test_client()
    wrong, unknown = sign_in(client, password="not it at all"), sign_in(client, email="x@y.z")
    assert wrong.status_code == unknown.status_code == 401
    say = "That email and password do not match an operator."
    assert say in wrong.get_data(as_text=True) and say in unknown.get_data(as_text=True)
    assert client.get("/console", headers={"Accept": "text/html"}).status_code == 302
    failed = [e for e in events(app) if e["action"] == "console.sign_in"]
    assert [e["outcome"] for e in failed] == ["denied", "denied"]
    assert "not it at all" not in str(failed) and EMAIL not in str(failed)


def test_repeated_failures_are_throttled_even_with_the_right_password(app, clock):
    make_operator(app)
    client = app.test_client()
    for _ in range(operators.FAILURES_BEFORE_LOCK):
        assert sign_in(client, password="wrong password!").status_code == 401
    locked = sign_in(client)
    assert locked.status_code == 429 and "Try again in 1 minute" in locked.get_data(as_text=True)
    clock.now += timedelta(minutes=2)
    assert sign_in(client).status_code == 303


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(app):
    make_operator(app)
    client = app.test_client()
    token(client)
    r = client.post("/console/sign-in", data={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 400
    forged = client.post("/console/sign-in", data={"email": EMAIL, "password": PASSWORD,
                                                   "csrf_token": "forged"})
    assert forged.status_code == 400
    rt = app.extensions["upgrade_chat"]
    with rt.uow() as uow:
        assert uow.operators.by_email(EMAIL).last_sign_in_at is None
    assert sign_in(client).status_code == 303
    assert client.post("/console/sign-out").status_code == 400  # still signed in
    assert client.get("/console").status_code == 200
    cross = client.post("/console/sign-out", data={"csrf_token": token(client, "/console")},
                        headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    out = client.post("/console/sign-out", data={"csrf_token": token(client, "/console")})
    assert out.status_code == 303 and client.get("/console").status_code == 401


def test_a_disabled_operator_is_signed_out_and_cannot_sign_in(app):
    make_operator(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    rt = app.extensions["upgrade_chat"]
    operators.set_disabled(rt.uow(), EMAIL)
    assert client.get("/console").status_code == 401
    assert sign_in(client).status_code == 401


def test_a_new_password_ends_older_sessions(app):
    make_operator(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    rt = app.extensions["upgrade_chat"]
    operators.reset_password(rt.uow(), WerkzeugHasher(), EMAIL, "another long password")
    assert client.get("/console").status_code == 401


def test_the_read_only_role_reads_everything_and_may_change_nothing(app):
    from flask import g

    from channels.console import admin_only

    make_operator(app, email="csm@example.com", role="csm")
    client = app.test_client()
    assert sign_in(client, email="csm@example.com").status_code == 303
    for path in ("/console", "/console/accounts", "/console/accounts/acme-clinic"):
        assert client.get(path).status_code == 200, path
    assert "read-only" in client.get("/console").get_data(as_text=True)
    with app.test_request_context():
        g.operator = operators.list_operators(app.extensions["upgrade_chat"].uow())[-1]
        with pytest.raises(Exception) as refused:
            admin_only(lambda: "changed")()
        assert getattr(refused.value, "code", None) == 403


def test_the_operators_commands(app):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["operators", "create", "--email", "Ann@Example.com", "--name",
                               "Ann", "--role", "csm", "--generate"])
    assert made.exit_code == 0, made.output
    password = re.search(r"password: (\S+)", made.output).group(1)
    assert sign_in(app.test_client(), email="ann@example.com", password=password).status_code == 303
    typed = runner.invoke(args=["operators", "create", "--email", "bo@example.com", "--name",
                                "Bo"], input="a typed password\na typed password\n")
    assert typed.exit_code == 0 and "a typed password" not in typed.output.split("\n", 2)[-1]
    again = runner.invoke(args=["operators", "create", "--email", "bo@example.com", "--name", "Bo",
                                "--generate"])
    assert again.exit_code == 1 and "exists already" in again.output
    listed = runner.invoke(args=["operators", "list"]).output
    assert "ann@example.com\tAnn\tcsm\tactive" in listed and "bo@example.com\tBo\tadmin" in listed
    reset = runner.invoke(args=["operators", "reset-password", "--email", "ann@example.com",
                                "--generate"])
    new = re.search(r"password: (\S+)", reset.output).group(1)
    assert sign_in(app.test_client(), email="ann@example.com", password=password).status_code == 401
    assert sign_in(app.test_client(), email="ann@example.com", password=new).status_code == 303
    assert runner.invoke(args=["operators", "disable", "--email", "ann@example.com"]).exit_code == 0
    assert "ann@example.com\tAnn\tcsm\tdisabled" in runner.invoke(args=["operators", "list"]).output
    missing = runner.invoke(args=["operators", "disable", "--email", "nobody@example.com"])
    assert missing.exit_code == 1
    actions = [e["action"] for e in events(app) if e["source"] == "cli"]
    assert {"operators.create", "operators.list", "operators.reset_password",
            "operators.disable"} <= set(actions)
    assert password not in str(events(app)) and new not in str(events(app))


def test_the_start_step_makes_the_first_admin_once_with_its_password_in_a_private_file(
        make_app, tmp_path):
    from app import FIRST_OPERATOR_EMAIL, FIRST_OPERATOR_PASSWORD_FILE, start

    app = make_app(DEMO=True)  # runs start(): the session key file and the first operator
    path = Path(app.instance_path) / FIRST_OPERATOR_PASSWORD_FILE
    email, password = path.read_text().split()
    assert email == FIRST_OPERATOR_EMAIL and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((Path(app.instance_path) / "secret_key").stat().st_mode) == 0o600
    start(app, demo=False)
    assert path.read_text().split()[1] == password  # not made again
    assert len(operators.list_operators(app.extensions["upgrade_chat"].uow())) == 1
    assert sign_in(app.test_client(), email=email, password=password).status_code == 303


def test_without_a_session_key_the_console_says_what_to_run(make_app):
    app = make_app()
    r = app.test_client().get("/console/sign-in")
    assert r.status_code == 503 and b"flask --app app init" in r.data


def test_the_index_links_the_console_the_api_document_and_the_sandbox_pages(app):
    page = app.test_client().get("/").get_data(as_text=True)
    for link in ('href="/console"', 'href="/api/v1/openapi.json"', 'href="/demo"',
                 'href="/sandbox/phone"', 'href="/sandbox/csm"', "local token"):
        assert link in page, link
