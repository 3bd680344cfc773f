"""create_app configuration, start-up errors, the explicit start step, demo data and the CLI."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from app import DEFAULT_CATALOG, ConfigError, create_app, start
from web.api_key import ApiKeyUnavailable
from storage import migrate
from core.errors import CatalogError
from tests.conftest import API_KEY, NOW
from tests.e2e.helpers import error_of
from tests.support.concurrency import at_once

ROOT = Path(__file__).resolve().parents[2]


def test_a_bad_catalog_file_stops_start_up_naming_file_key_and_expectation(tmp_path, db_url):
    bad = tmp_path / "catalog.toml"
    bad.write_text(DEFAULT_CATALOG.read_text().replace("included_seats = 3", 'included_seats = "three"'))
    with pytest.raises(CatalogError) as err:
        create_app({"DATABASE_URL": db_url, "API_KEY": "k", "CATALOG_PATH": str(bad)})
    assert str(err.value) == (f"{bad}: key 'plans.starter.included_seats': expected a whole number "
                              f">= 0, got 'three'")


def test_a_missing_catalog_file_is_named(tmp_path, db_url):
    with pytest.raises(CatalogError) as err:
        create_app({"DATABASE_URL": db_url, "API_KEY": "k", "CATALOG_PATH": str(tmp_path / "nope.toml")})
    assert "nope.toml" in str(err.value) and "readable TOML file" in str(err.value)


def test_the_embedded_service_refuses_a_bad_catalog_with_a_readable_message(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text("[plans]\n")
    env = {"PATH": "/usr/bin:/bin", "UPGRADE_CHAT_CATALOG_PATH": str(bad),
           "UPGRADE_CHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot start" in done.stderr and str(bad) in done.stderr and "Traceback" not in done.stderr


def test_postgresql_without_an_api_key_refuses_to_start(pg_test_url, monkeypatch):
    monkeypatch.delenv("UPGRADE_CHAT_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="API_KEY"):
        create_app({"DATABASE_URL": pg_test_url})


def test_environment_overrides_defaults_and_the_mapping_overrides_the_environment(db_url, monkeypatch):
    monkeypatch.setenv("UPGRADE_CHAT_API_KEY", "from-env")
    monkeypatch.setenv("UPGRADE_CHAT_DEFAULT_PHONE_REGION", "GB")
    app = create_app({"DATABASE_URL": db_url, "DEFAULT_PHONE_REGION": "AU"})
    rt = app.extensions["upgrade_chat"]
    assert (rt.api_key.read(), rt.phone_region) == ("from-env", "AU")
    rt.engine.dispose()


def test_a_new_sqlite_database_is_migrated_by_the_start_step_and_gets_demo_data_only_when_asked(
        tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "CLOCK": clock})
    assert not (tmp_path / "fresh.sqlite3").exists()  # create_app leaves the database alone
    start(app, demo=False)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert client.get("/api/v1/accounts/acme-clinic", headers=headers).status_code == 404
    app.extensions["upgrade_chat"].engine.dispose()
    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "CLOCK": clock, "DEMO": True})
    assert client.get("/api/v1/accounts/acme-clinic", headers=headers).status_code == 404
    start(app, demo=True)
    case = app.test_client().get("/api/v1/accounts/acme-clinic/case", headers=headers).get_json()
    assert (case["cost_current"], case["cost_target"], case["monthly_difference"]) == \
        ("529.00", "499.00", "30.00")
    app.extensions["upgrade_chat"].engine.dispose()


def test_demo_accounts_show_each_kind_of_case(make_app):
    app = make_app(DEMO=True)
    c = app.test_client()
    h = {"Authorization": f"Bearer {API_KEY}"}

    def case(acct):
        r = c.get(f"/api/v1/accounts/{acct}/case", headers=h)
        return r.status_code, r.get_json()

    assert case("acme-clinic")[1]["claims_saving"] is True
    assert case("bright-salon")[1]["claims_saving"] is False
    assert case("harbor-realty")[1]["direction"] == "down"
    assert case("pipeline-sales")[1]["target_plan"] == "scale"
    assert case("northwind-msp")[1]["thresholds_crossed"][0]["metric"] == "feature:workflows"
    assert case("quiet-studio")[0] == 404


def test_loading_the_demo_twice_stores_nothing_twice(make_app):
    app = make_app(DEMO=True)
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    h = {"Authorization": f"Bearer {API_KEY}"}
    usage = app.test_client().get("/api/v1/accounts/acme-clinic", headers=h).get_json()["usage"]
    assert usage["messages"] == 4800


def _csv(path, rows):
    path.write_text("id,account,metric,quantity,at\n" + "".join(f"{','.join(map(str, r))}\n" for r in rows))
    return path


def test_csv_import_stores_events_with_a_progress_bar_and_reports_counts(make_app, tmp_path):
    app = make_app()
    h = {"Authorization": f"Bearer {API_KEY}"}
    app.test_client().put("/api/v1/accounts/acct", headers=h, json={
        "name": "A", "plan": "starter", "timezone": "UTC", "billing_day": 1, "contacts": []})
    at = (NOW - timedelta(days=1)).isoformat()
    path = _csv(tmp_path / "usage.csv", [(f"e{i}", "acct", "messages", 100, at) for i in range(50)])
    runner = app.test_cli_runner()
    result = runner.invoke(args=["usage", "import", str(path), "--batch-size", "7"])
    assert result.exit_code == 0, result.output
    assert "importing usage.csv" in result.output
    assert "50 events imported, 0 duplicates skipped, 1 thresholds crossed" in result.output
    again = runner.invoke(args=["usage", "import", str(path)])
    assert "0 events imported, 50 duplicates skipped" in again.output


def test_csv_import_stops_at_a_bad_row_naming_its_line_and_keeps_earlier_batches(make_app, tmp_path):
    app = make_app()
    h = {"Authorization": f"Bearer {API_KEY}"}
    app.test_client().put("/api/v1/accounts/acct", headers=h, json={
        "name": "A", "plan": "starter", "timezone": "UTC", "billing_day": 1})
    at = (NOW - timedelta(days=1)).isoformat()
    rows = [(f"e{i}", "acct", "messages", 10, at) for i in range(6)]
    rows[4] = ("e4", "acct", "messages", -5, at)
    path = _csv(tmp_path / "usage.csv", rows)
    result = app.test_cli_runner().invoke(args=["usage", "import", str(path), "--batch-size", "3"])
    assert result.exit_code != 0
    assert "line 6" in result.output and "quantity must be >= 0" in result.output
    usage = app.test_client().get("/api/v1/accounts/acct", headers=h).get_json()["usage"]
    assert usage["messages"] == 30  # the first batch of three, not the rejected second one


def test_csv_without_the_expected_header_is_refused(make_app, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text("when,what\n1,2\n")
    result = make_app().test_cli_runner().invoke(args=["usage", "import", str(path)])
    assert result.exit_code != 0 and "id,account,metric,quantity,at" in result.output


def test_db_commands_report_and_apply_the_schema_revision(make_app):
    runner = make_app().test_cli_runner()
    current = runner.invoke(args=["db", "current"])
    assert "up to date" in current.output
    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0 and f"-> {migrate.head_revision()}" in upgrade.output


def test_a_database_behind_the_code_gets_a_warning_on_the_first_request_and_at_init(
        pg_admin_url, caplog):
    from tests.support.postgres import create_database

    url = create_database(pg_admin_url, "behind")
    with caplog.at_level("WARNING", logger="upgrade_chat"):
        app = create_app({"DATABASE_URL": url, "API_KEY": "k"})
        assert caplog.text == ""  # create_app opens no connection
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert caplog.text.count("flask --app app db upgrade") == 1
        assert client.get("/healthz").status_code == 200
        assert caplog.text.count("flask --app app db upgrade") == 1  # once per process
        caplog.clear()
        result = app.test_cli_runner().invoke(args=["init"])  # PostgreSQL: never migrated here
    assert result.exit_code == 0, result.output
    assert "schema empty (behind: run `flask --app app db upgrade`)" in result.output
    assert "flask --app app db upgrade" in caplog.text
    app.extensions["upgrade_chat"].engine.dispose()


def test_health_check_answers_without_a_key(app):
    r = app.test_client().get("/healthz")
    assert (r.status_code, r.get_json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("raw, value", [("False", False), ("off", False), ("0", False),
                                        ("true", True), ("YES", True), ("1", True)])
def test_boolean_settings_from_the_environment_mean_what_they_say(raw, value):
    from app import settings

    assert settings({"UPGRADE_CHAT_DEMO": raw, "UPGRADE_CHAT_AUTO_MIGRATE": raw}, None)["DEMO"] is value


@pytest.mark.parametrize("env, message", [
    ({"UPGRADE_CHAT_DEMO": "maybe"}, "UPGRADE_CHAT_DEMO: expected true or false"),
    ({"UPGRADE_CHAT_PORT": "http"}, "UPGRADE_CHAT_PORT: expected a whole number"),
    ({"UPGRADE_CHAT_DEFAULT_PHONE_REGION": "USA"}, "expected a two-letter region"),
])
def test_a_bad_setting_stops_start_up_naming_the_variable(env, message):
    from app import settings

    with pytest.raises(ConfigError, match=message):
        settings(env, None)


def test_text_settings_are_kept_exactly_as_written():
    from app import settings

    values = settings({"UPGRADE_CHAT_API_KEY": "1e3", "UPGRADE_CHAT_DATABASE_URL": "sqlite:///x"}, None)
    assert (values["API_KEY"], values["DATABASE_URL"]) == ("1e3", "sqlite:///x")


def test_the_generated_api_key_is_private_and_shared_by_every_worker(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    apps = [create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "inst"), "CLOCK": clock})
            for _ in range(2)]
    key, _ = start(apps[0], demo=False)  # the start step writes it; every worker reads it
    assert len(key) >= 24
    assert {a.extensions["upgrade_chat"].api_key.read() for a in apps} == {key}
    assert (tmp_path / "inst" / "api_key").stat().st_mode & 0o777 == 0o600
    h = {"Authorization": f"Bearer {key}"}
    assert apps[1].test_client().get("/api/v1/accounts/nobody", headers=h).status_code == 404
    for a in apps:
        a.extensions["upgrade_chat"].engine.dispose()


def test_start_steps_running_at_once_share_one_whole_key(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    first = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "first"),
                        "CLOCK": clock})
    start(first, demo=False)  # the database, migrated once
    first.extensions["upgrade_chat"].engine.dispose()

    # The apps are built one at a time (CPython 3.11 can fail compiling werkzeug's routes in
    # several threads at once: "AST constructor recursion depth mismatch"); their start steps
    # run together.
    apps = [create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "inst"),
                        "CLOCK": clock}) for _ in range(8)]

    def worker(app) -> tuple[str, str]:
        try:
            key = start(app, demo=False)[0]
            return key, json.dumps(sandbox_secrets_of(app), sort_keys=True)
        finally:
            app.extensions["upgrade_chat"].engine.dispose()

    keys = [key for key, _ in at_once(8, apps.pop, worker)]
    assert len(set(keys)) == 1 and len(keys[0]) >= 24
    # no temp file left; the sandbox's secrets (tested below) made once beside the key
    assert sorted(p.name for p in (tmp_path / "inst").iterdir()) == \
        ["api_key", "sandbox_secrets", "secret_key"]


# --- the sandbox's generated secrets: one set per instance folder (web/sandbox_secrets.py) -------

def sandbox_secrets_of(app) -> dict[str, str]:
    """The secrets the app's requests use (web.http.secret), as a request sees them."""
    from web.http import secret

    with app.app_context():
        return {name: secret(name) for name in ("TWILIO_AUTH_TOKEN", "WEB_CHAT_SECRET",
                                                "LOCAL_TOKEN")}


def sandbox_app(instance: Path, **config):
    return create_app({"DATABASE_URL": f"sqlite:///{instance.parent / 'db.sqlite3'}",
                       "INSTANCE_PATH": str(instance), "API_KEY": "k", **config})


def test_the_sandboxs_generated_secrets_are_one_set_per_instance_folder(tmp_path):
    """Two workers of one instance sign and check with the same secrets (each process drew its
    own before: a widget signed by one gunicorn worker got 403 from the other); another
    instance has others; the file is private to the service's user."""
    first, second = sandbox_app(tmp_path / "inst"), sandbox_app(tmp_path / "inst")
    assert not (tmp_path / "inst").exists()  # create_app makes nothing: made on first use
    mine = sandbox_secrets_of(first)
    assert all(len(value) >= 32 for value in mine.values())
    assert len(set(mine.values())) == 3
    assert sandbox_secrets_of(second) == mine
    assert sandbox_secrets_of(sandbox_app(tmp_path / "inst")) == mine  # a restart: the same
    assert (tmp_path / "inst" / "sandbox_secrets").stat().st_mode & 0o777 == 0o600
    other = sandbox_secrets_of(sandbox_app(tmp_path / "other"))
    assert not set(other.values()) & set(mine.values())
    # A configured secret is used as configured; the file still gives the others.
    configured = sandbox_secrets_of(sandbox_app(tmp_path / "inst", WEB_CHAT_SECRET="set"))
    assert configured == dict(mine, WEB_CHAT_SECRET="set")


def test_workers_drawing_the_sandbox_secrets_at_once_get_one_set(tmp_path):
    apps = [sandbox_app(tmp_path / "inst") for _ in range(8)]  # built one at a time (above)

    def worker(app) -> str:
        return json.dumps(sandbox_secrets_of(app), sort_keys=True)

    drawn = at_once(8, apps.pop, worker)
    assert len(set(drawn)) == 1
    assert json.loads((tmp_path / "inst" / "sandbox_secrets").read_text()) == json.loads(drawn[0])


def test_a_sandbox_secrets_file_that_is_not_ours_is_refused_saying_what_to_do(tmp_path, caplog):
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "sandbox_secrets").write_text("not json\n")
    app = sandbox_app(tmp_path / "inst")
    from web.sandbox_secrets import SandboxSecretsUnavailable

    with pytest.raises(SandboxSecretsUnavailable, match="delete the file"):
        start(app, demo=False)
    assert sandbox_secrets_of(app) == dict.fromkeys(("TWILIO_AUTH_TOKEN", "WEB_CHAT_SECRET",
                                                     "LOCAL_TOKEN"))  # fail closed
    assert "delete the file" in caplog.text
    assert (tmp_path / "inst" / "sandbox_secrets").read_text() == "not json\n"


def test_an_empty_key_file_refuses_to_start_and_a_blank_setting_is_not_set(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "api_key").write_text("\n")
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "inst"), "CLOCK": clock})
    with pytest.raises(ApiKeyUnavailable, match="api_key is empty"):
        start(app, demo=False)
    r = app.test_client().get("/api/v1/accounts/a", headers={"Authorization": "Bearer x"})
    assert (r.status_code, r.get_json()["error"]["code"]) == (503, "no_api_key")
    app.extensions["upgrade_chat"].engine.dispose()
    (tmp_path / "inst" / "api_key").unlink()
    blank = create_app({"DATABASE_URL": url, "API_KEY": "  ", "CLOCK": clock,
                        "INSTANCE_PATH": str(tmp_path / "inst")})  # blank is not set: generated
    assert len(start(blank, demo=False)[0]) >= 24
    assert (tmp_path / "inst" / "api_key").read_text().strip() == \
        blank.extensions["upgrade_chat"].api_key.read()
    blank.extensions["upgrade_chat"].engine.dispose()


def test_without_the_key_file_the_api_says_what_to_run_and_never_makes_a_key(tmp_path, clock,
                                                                               caplog):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "inst"), "CLOCK": clock})
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer guess"}):
        r = client.get("/api/v1/accounts/acme-clinic", headers=headers)
        error = error_of(r)
        assert (r.status_code, error["code"]) == (503, "no_api_key")
        assert "flask --app app init" in error["message"] and "UPGRADE_CHAT_API_KEY" in \
            error["message"]
    assert "api_key does not exist" in caplog.text
    assert not (tmp_path / "inst").exists()  # no key, no folder, no database
    assert client.get("/healthz").status_code == 200
    app.extensions["upgrade_chat"].engine.dispose()


def test_init_sets_up_an_embedded_service_once_and_prints_its_key(tmp_path, clock):
    config = {"INSTANCE_PATH": str(tmp_path / "inst"), "CLOCK": clock}
    app = create_app(config)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init", "--demo"])
    assert first.exit_code == 0, first.output
    key = (tmp_path / "inst" / "api_key").read_text().strip()
    assert f"API key : {key}" in first.output and "demo    : 6 accounts loaded" in first.output
    assert "up to date" in first.output
    assert sorted(p.name for p in (tmp_path / "inst").iterdir() if not p.name.endswith(
        ("-wal", "-shm"))) == ["api_key", "console_admin_password", "sandbox_secrets",
                               "secret_key", "upgrade_chat.sqlite3"]
    token = sandbox_secrets_of(app)["LOCAL_TOKEN"]
    assert f"Phone    : http://127.0.0.1:5000/sandbox/phone?token={token}" in first.output
    again = runner.invoke(args=["init", "--demo"])
    assert again.exit_code == 0 and f"API key : {key}" in again.output
    assert "the demo accounts are there already" in again.output
    h = {"Authorization": f"Bearer {key}"}
    case = app.test_client().get("/api/v1/accounts/acme-clinic/case", headers=h)
    assert case.status_code == 200 and case.get_json()["target_plan"] == "growth"
    app.extensions["upgrade_chat"].engine.dispose()


def test_init_prints_no_configured_key_and_loads_no_demo_unless_asked(db_url):
    app = create_app({"DATABASE_URL": db_url, "API_KEY": "secret-from-env"})
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    assert "API key : from UPGRADE_CHAT_API_KEY" in result.output
    assert "secret-from-env" not in result.output and "demo    :" not in result.output
    h = {"Authorization": "Bearer secret-from-env"}
    assert app.test_client().get("/api/v1/accounts/acme-clinic", headers=h).status_code == 404
    app.extensions["upgrade_chat"].engine.dispose()


def _flask(*args: str, cwd: Path, instance: Path) -> subprocess.CompletedProcess:
    """`flask --app app ARGS` in a fresh process: no UPGRADE_CHAT_* setting but the instance
    folder (so no database URL and no API key), run from `cwd`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPGRADE_CHAT_")}
    env.update(UPGRADE_CHAT_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("args", [["--help"], ["routes"]], ids=["help", "routes"])
def test_the_flask_cli_builds_the_app_and_leaves_no_trace(tmp_path, args):
    work = tmp_path / "work"
    work.mkdir()
    instance = tmp_path / "instance"
    done = _flask(*args, cwd=work, instance=instance)
    assert done.returncode == 0, done.stderr
    # The app was built (its own commands and routes are listed) ...
    assert ("init" in done.stdout and "scheduler" in done.stdout) if args == ["--help"] \
        else "/api/v1/accounts/<external_id>/thread" in done.stdout
    # ... and nothing was made: no instance folder, no SQLite file, no key, nothing in the cwd.
    assert not instance.exists()
    assert _tree(tmp_path) == ["work"]
    assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_embedded_service_starts_from_nothing_and_answers_with_the_key_it_printed(tmp_path):
    """What scripts/serve runs (app.py's main) in a fresh folder: the start step makes the
    instance folder, the key, the database and the demo, prints the key, and serves with it;
    the local pages' links it prints open them (and the bare URLs do not)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPGRADE_CHAT_")}
    env.update(UPGRADE_CHAT_INSTANCE_PATH=str(tmp_path / "instance"),
               UPGRADE_CHAT_PORT=str(port), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key, seen = None, []
        deadline = time.monotonic() + 90
        while not any(line.startswith("  Try") for line in seen) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = re.match(r"\s+API key\s+: (\S+)", line)
            key = match.group(1) if match else key
        assert key, "".join(seen)
        links = dict(re.findall(r"^  (Phone|CSM lane|Web chat) *: (\S+)$", "".join(seen), re.M))
        assert set(links) == {"Phone", "CSM lane", "Web chat"}, "".join(seen)
        assert (tmp_path / "instance" / "api_key").read_text().strip() == key
        base = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(f"{base}/api/v1/accounts/acme-clinic/case",
                                         headers={"Authorization": f"Bearer {key}"})
        for _ in range(100):  # the server starts listening just after the banner
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    case = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the embedded service did not answer")
        assert '"target_plan":"growth"' in case
        for label, link in links.items():  # what a click on a printed link does
            browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
            with browser.open(link, timeout=10) as r:
                assert r.status == 200 and "token" not in r.url, (label, r.url)
            bare = link.split("?", 1)[0]
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(bare, timeout=10)  # another browser, not signed in
            assert refused.value.code == 404, label
            refused.value.close()
            with browser.open(bare, timeout=10) as r:  # the signed-in one, later
                assert r.status == 200, label
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_a_blank_bearer_token_is_refused(app):
    for header in ("Bearer ", "Bearer \u00a0", "Bearer  \t"):
        r = app.test_client().get("/api/v1/accounts/acme", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_a_postgresql_deployment_creates_no_instance_folder(pg_test_url, tmp_path):
    app = create_app({"DATABASE_URL": pg_test_url, "API_KEY": "k",
                      "INSTANCE_PATH": str(tmp_path / "never")})
    assert not (tmp_path / "never").exists()
    app.extensions["upgrade_chat"].engine.dispose()
