"""The audit trail: every route and every command is audited or says why not; each request and
command leaves one event (denials and failures too) with actor, action, object, time, source
and outcome; the trail is append-only and hash-chained, so an edited or deleted event is found;
`flask --app app audit export` writes it as JSON lines, without personal data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import click
import pytest
from sqlalchemy import text

from cli.audit import cli_actor
from core.audit import GENESIS, AuditEvent, Outcome, pseudonym, verify
from storage.audit import SqlAuditTrail
from storage.db import make_engine
from tests.conftest import API_KEY, Api
from tests.e2e.helpers import account, ago, batch, contact, event
from tests.e2e.test_slack import CHANNEL, CSM_ID, SECRET, signed_post, slack  # noqa: F401
from tests.e2e.test_slack import click as slack_click
from tests.support import fake_slack
from web.audit import Audited, NotAudited, spec_of

ROOT = Path(__file__).resolve().parents[2]
ACME = "walk-co"  # not a demo account: `demo load` in the walk leaves it alone
EMAIL = "dana.lee@walk-co.example"  # a contact id that is personal data
PHONE = "+13125550142"

# Flask's own commands: not ours to audit. `shell` opens the service's objects to whoever can run
# it, like psql on the database: access to the host is the control, outside the trail.
FLASK_BUILTINS = {"routes": "lists the routes: no account data",
                  "shell": "a Python shell on the host: host access, like psql, is the control",
                  "run": "the development server; its requests are audited as any"}


@pytest.fixture
def app(make_app, slack):
    """Every surface on: the API, Twilio, the widget, Slack, the sandbox's local pages."""
    return make_app(CONTROL_SHARE="0", SLACK_BOT_TOKEN=fake_slack.BOT_TOKEN,
                    SLACK_SIGNING_SECRET=SECRET, SLACK_CHANNEL=CHANNEL,
                    SLACK_API_URL=slack.base_url)


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def events(app) -> list[dict]:
    return [e.json() for e in SqlAuditTrail(app.extensions["upgrade_chat"].engine).events()]


def last(app) -> dict:
    return events(app)[-1]


def setup(api) -> None:
    body = account(name="Acme Clinic", contacts=[contact(EMAIL, name="Dana Lee", phone=PHONE)])
    assert api.put(f"/accounts/{ACME}", json=body).status_code == 201
    assert api.post("/usage", json=batch(*[event(f"m{i}", ACME, "messages", 700, ago(days=i))
                                           for i in range(7)])).status_code == 200


# --- every route --------------------------------------------------------------------------------

VALUES = {"external_id": ACME, "contact_external_id": EMAIL, "escalation_id": "1"}


def _path(rule) -> str:
    path = rule.rule
    for arg in rule.arguments:
        path = path.replace(f"<{arg}>", VALUES[arg]).replace(f"<int:{arg}>", VALUES[arg])
    return path


def test_every_route_is_audited_or_says_why_not_and_each_request_leaves_one_event(app, api):
    setup(api)
    client = app.test_client()
    walked = set()
    for rule in app.url_map.iter_rules():
        spec = spec_of(app.view_functions[rule.endpoint])
        assert isinstance(spec, (Audited, NotAudited)), \
            f"{rule.rule} ({rule.endpoint}) declares neither audited(...) nor not_audited(...)"
        if isinstance(spec, NotAudited):
            assert len(spec.reason) > 10, rule.rule
            continue
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        before = len(events(app))
        headers = {"Authorization": f"Bearer {API_KEY}"} if rule.rule.startswith("/api/") else {}
        r = client.open(_path(rule), method=method, headers=headers,
                        **({"json": {}} if method in ("POST", "PUT") and "/api/" in rule.rule
                           else {}))
        after = events(app)
        assert len(after) == before + 1, f"{method} {rule.rule}: {len(after) - before} events"
        e = after[-1]
        assert e["source"] == spec.source and e["outcome"] == Outcome.of_status(r.status_code)
        assert e["action"] == spec.action or e["action"].split(".")[0] in ("escalation",), e
        assert e["object_type"] and e["object_id"] and e["at"] and e["actor"]
        assert e["detail"]["status"] == r.status_code and e["detail"]["method"] == method
        walked.add(spec.action)
    assert {"account.read", "account.write", "usage.write", "conversation.relay",
            "slack.request", "sandbox_phone.read", "demo.sign_in", "console.home",
            "console.accounts", "console.account", "console.sign_in", "accounts.list",
            "ledger.read"} <= walked


def test_a_read_and_a_change_name_who_what_and_how_it_ended(app, api):
    setup(api)
    api.get(f"/accounts/{ACME}")
    read = last(app)
    assert read["actor"].startswith("api-key:") and API_KEY not in json.dumps(read)
    assert (read["source"], read["action"], read["object_type"], read["object_id"],
            read["outcome"]) == ("api", "account.read", "account", ACME, "ok")
    assert read["address"] == "127.0.0.1"
    assert api.get("/accounts/nobody").status_code == 404
    assert (last(app)["object_id"], last(app)["outcome"]) == ("nobody", "failed")
    usage = [e for e in events(app) if e["action"] == "usage.write"][0]
    assert usage["detail"]["events"] == 7 and usage["detail"]["accounts"] == 1


def test_a_denied_request_is_on_the_record_with_an_unknown_actor(app, api):
    client = app.test_client()
    r = client.get(f"/api/v1/accounts/{ACME}/thread", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    e = last(app)
    assert (e["actor"], e["action"], e["object_id"], e["outcome"]) == \
        ("unknown", "thread.read", ACME, "denied")
    assert signed_post(client, "command=/upgrade-chat", secret="not-the-secret").status_code == 401
    assert (last(app)["source"], last(app)["outcome"]) == ("slack", "denied")


def test_a_csm_click_and_the_slash_command_are_recorded_as_the_csm(app, api):
    setup(api)
    api.post(f"/conversations/{EMAIL}/messages",
             json={"channel": "sms", "text": "can I talk to a real person?"})
    client = app.test_client()
    slack_click(client, "claim", 1, "1700000000.000100")
    e = last(app)
    assert (e["actor"], e["action"], e["object_type"], e["object_id"], e["outcome"]) == \
        (f"slack:{CSM_ID}", "escalation.claim", "escalation", "1", "ok")
    body = urlencode({"team_id": fake_slack.TEAM_ID, "user_id": CSM_ID,
                      "command": "/upgrade-chat", "text": ACME})
    assert signed_post(client, body).status_code == 200
    e = last(app)
    assert (e["actor"], e["action"], e["object_id"]) == (f"slack:{CSM_ID}", "account.report", ACME)


def test_contacts_are_named_by_pseudonym_and_no_event_holds_personal_data(app, api):
    setup(api)
    api.post(f"/conversations/{EMAIL}/messages", json={"channel": "sms", "text": "how much?"})
    relay = last(app)
    assert relay["object_type"] == "contact" and relay["object_id"] == pseudonym(EMAIL)
    dump = json.dumps(events(app))
    for personal in (EMAIL, PHONE, "Dana Lee", "how much?"):
        assert personal not in dump


# --- every command ------------------------------------------------------------------------------

def _leaves(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def _callback(command: click.Command):
    fn = command.callback
    while fn is not None and not hasattr(fn, "audited") and hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def test_every_command_is_audited_or_says_why_not_and_each_run_leaves_an_event(app, api,
                                                                               tmp_path):
    setup(api)
    csv_file = tmp_path / "usage.csv"
    csv_file.write_text("id,account,metric,quantity,at\n"
                        f"u1,{ACME},messages,10,{ago(hours=2)}\n")
    arguments = {("usage", "import"): [str(csv_file)],
                 ("audit", "export"): ["--from", "2000-01-01"],
                 ("contacts", "erase"): [EMAIL],
                 ("thresholds", "dry-run"): ["--catalog", str(ROOT / "core" / "catalog.toml")],
                 ("demo", "reset"): ["--yes"],
                 ("operators", "create"): ["--email", "ops@walk-co.example", "--name", "Ops",
                                           "--generate"],
                 ("operators", "reset-password"): ["--email", "ops@walk-co.example",
                                                   "--generate"],
                 ("operators", "disable"): ["--email", "ops@walk-co.example"],
                 ("simulate",): ["--accounts", "10", "--days", "3"]}
    runner = app.test_cli_runner()
    walked = set()
    for path, command in _leaves(app.cli):
        fn = _callback(command)
        if path[0] in FLASK_BUILTINS and len(path) == 1:
            continue
        audited = getattr(fn, "audited", None)
        reason = getattr(fn, "not_audited", None)
        assert audited or reason, f"`flask {' '.join(path)}` is neither audited nor exempt"
        if reason or path == ("scheduler",):  # the scheduler runs until stopped: below
            continue
        before = len(events(app))
        result = runner.invoke(args=[*path, *arguments.get(path, [])])
        assert result.exit_code == 0, (path, result.output)
        after = events(app)
        assert len(after) == before + 1, path
        e = after[-1]
        assert (e["source"], e["action"], e["outcome"], e["actor"]) == \
            ("cli", audited, "ok", cli_actor()), e
        walked.add(path)
    assert {("db", "upgrade"), ("usage", "import"), ("jobs", "run"), ("init",),
            ("audit", "export"), ("audit", "verify"), ("contacts", "erase"),
            ("thresholds", "dry-run"), ("demo", "reset"),
            ("operators", "create"), ("operators", "list"), ("operators", "reset-password"),
            ("operators", "disable")} <= walked
    erased = [e for e in events(app) if e["action"] == "contacts.erase"][-1]
    assert erased["object_id"] == pseudonym(EMAIL) and erased["detail"]["addresses_removed"] == 1


def test_a_command_event_says_which_configuration_ran_and_holds_no_secret(make_app, tmp_path):
    catalog = (ROOT / "core" / "catalog.toml").read_text()
    one = make_app(TWILIO_AUTH_TOKEN="tok-secret-1")
    two = make_app(TWILIO_AUTH_TOKEN="tok-secret-2")  # a secret alone: the same fingerprint
    changed_path = tmp_path / "catalog.toml"
    changed_path.write_text(catalog.replace("149", "159", 1))
    three = make_app(CATALOG_PATH=str(changed_path))
    prints = [a.extensions["upgrade_chat"].config_fingerprint for a in (one, two, three)]
    assert prints[0] == prints[1] != prints[2]
    one.test_cli_runner().invoke(args=["jobs", "run"])
    e = last(one)
    assert e["detail"]["config"] == prints[0] and "tok-secret" not in json.dumps(events(one))


def test_a_failed_command_is_recorded_as_failed(app, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,account\nx,y\n")
    result = app.test_cli_runner().invoke(args=["usage", "import", str(bad)])
    assert result.exit_code != 0
    e = last(app)
    assert (e["action"], e["object_id"], e["outcome"]) == ("usage.import", "bad.csv", "failed")


def test_the_scheduler_records_its_start_and_its_stop(db_url, tmp_path):
    env = {**os.environ, "UPGRADE_CHAT_DATABASE_URL": db_url, "UPGRADE_CHAT_API_KEY": API_KEY,
           "UPGRADE_CHAT_INSTANCE_PATH": str(tmp_path / "instance")}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "scheduler",
                             "--every", "3600"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    trail = SqlAuditTrail(make_engine(db_url))
    try:
        deadline = time.monotonic() + 30
        while not any(e.event.action == "scheduler.run" for e in trail.events()):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    runs = [e.event for e in trail.events() if e.event.action == "scheduler.run"]
    assert [(e.outcome, e.detail.get("phase"), e.detail.get("reason")) for e in runs] == \
        [("ok", "start", None), ("ok", None, "KeyboardInterrupt")]


# --- the chain ----------------------------------------------------------------------------------

def _event(n: int) -> AuditEvent:
    from tests.conftest import NOW

    return AuditEvent(at=NOW + timedelta(seconds=n), actor="cli:test", source="cli",
                      action="test.write", object_type="account", object_id=f"a{n}",
                      outcome=Outcome.OK, detail={"n": n})


def test_the_trail_refuses_updates_and_deletes(engine):
    trail = SqlAuditTrail(engine)
    trail.append(_event(1))
    for statement in ("UPDATE audit_events SET outcome = 'denied'", "DELETE FROM audit_events"):
        with pytest.raises(Exception) as raised, engine.begin() as conn:
            conn.execute(text(statement))
        assert "append-only" in str(raised.value)
    assert verify(trail.events()).intact


def _without_guard(engine, statement: str) -> None:
    """What someone with the database owner's rights could do: drop the triggers, then write."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
            conn.execute(text(statement))
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
            conn.execute(text(statement))


def test_an_edited_event_is_found_by_verify(engine, make_app):
    app = make_app()
    trail = SqlAuditTrail(engine)
    for n in range(1, 6):
        trail.append(_event(n))
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and "5 events, chain intact" in ok.output, ok.output
    anchor = verify(trail.events()).last_hash
    _without_guard(engine, "UPDATE audit_events SET outcome = 'ok', actor = 'cli:someone-else' "
                           "WHERE seq = 3")
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    assert "broken at event 3: was changed after it was written" in broken.output
    assert anchor  # (kept elsewhere, it would prove a rewritten chain too: next test)


def test_a_deleted_event_and_a_rewritten_chain_are_found(engine, make_app):
    app = make_app()
    trail = SqlAuditTrail(engine)
    for n in range(1, 6):
        trail.append(_event(n))
    anchor = f"5:{verify(trail.events()).last_hash}"
    _without_guard(engine, "DELETE FROM audit_events WHERE seq = 2")
    result = verify(trail.events())
    assert (result.broken_at, result.reason) == (2, "events 2..2 are missing")
    # Rewriting the whole chain after the deletion passes the chain check, not the anchor.
    if engine.dialect.name == "postgresql":
        _without_guard(engine, "DELETE FROM audit_events")
    else:  # the triggers are gone already
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
    for n in (1, 3, 4, 5, 6):
        trail.append(_event(n))
    rewritten = app.test_cli_runner().invoke(args=["audit", "verify", "--anchor", anchor])
    assert rewritten.exit_code == 1 and "is not in the trail" in rewritten.output


def test_concurrent_writers_never_fork_the_chain(engine):
    trail = SqlAuditTrail(engine)
    errors = []

    def write(k: int) -> None:
        try:
            for n in range(10):
                trail.append(_event(k * 100 + n))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored = list(trail.events())
    assert [e.seq for e in stored] == list(range(1, 81))
    assert stored[0].prev_hash == GENESIS and verify(stored).intact


# --- export -------------------------------------------------------------------------------------

def test_export_writes_json_lines_in_a_window_and_for_one_contact(app, api, clock):
    setup(api)
    clock.now += timedelta(days=2)
    api.post(f"/conversations/{EMAIL}/messages", json={"channel": "sms", "text": "how much?"})
    api.get(f"/accounts/{ACME}/thread")
    runner = app.test_cli_runner()
    everything = runner.invoke(args=["audit", "export"])
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1)) and len(lines) == 4
    assert all({"at", "actor", "source", "action", "object_type", "object_id", "outcome",
                "hash", "prev_hash"} <= e.keys() for e in lines)
    day = (clock.now).date().isoformat()
    recent = runner.invoke(args=["audit", "export", "--from", day, "--to", day])
    assert [json.loads(x)["action"] for x in recent.stdout.splitlines()] == \
        ["conversation.relay", "thread.read", "audit.export"]
    mine = runner.invoke(args=["audit", "export", "--contact", EMAIL])
    assert [json.loads(x)["action"] for x in mine.stdout.splitlines()] == ["conversation.relay"]
    bad = runner.invoke(args=["audit", "export", "--from", "last week"])
    assert bad.exit_code == 2 and "expected YYYY-MM-DD" in bad.output


def test_a_read_the_trail_cannot_record_is_not_served_and_a_change_stands(app, api, engine):
    setup(api)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        r = api.get(f"/accounts/{ACME}")
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "audit_unavailable"
        body = account(name="Acme Clinic 2", contacts=[contact(EMAIL, phone=PHONE)])
        assert api.put(f"/accounts/{ACME}", json=body).status_code == 200
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
    assert api.get(f"/accounts/{ACME}").get_json()["name"] == "Acme Clinic 2"
