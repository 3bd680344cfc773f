"""create_app configuration, start-up errors, demo data and the operator CLI."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from app import DEFAULT_CATALOG, ConfigError, create_app
from storage import migrate
from core.errors import CatalogError
from tests.conftest import API_KEY, NOW
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
    assert (rt.api_key, rt.phone_region) == ("from-env", "AU")
    rt.engine.dispose()


def test_a_new_sqlite_database_is_migrated_at_start_and_gets_demo_data_only_when_asked(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "CLOCK": clock})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert client.get("/api/v1/accounts/acme-clinic", headers=headers).status_code == 404
    app.extensions["upgrade_chat"].engine.dispose()
    app = create_app({"DATABASE_URL": url, "API_KEY": API_KEY, "CLOCK": clock, "DEMO": True})
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


def test_a_database_behind_the_code_gets_a_warning_at_start(pg_admin_url, caplog):
    from tests.support.postgres import create_database

    url = create_database(pg_admin_url, "behind")
    with caplog.at_level("WARNING", logger="upgrade_chat"):
        app = create_app({"DATABASE_URL": url, "API_KEY": "k"})
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
    keys = {a.extensions["upgrade_chat"].api_key for a in apps}
    assert len(keys) == 1 and len(keys.pop()) >= 24
    assert (tmp_path / "inst" / "api_key").stat().st_mode & 0o777 == 0o600
    for a in apps:
        a.extensions["upgrade_chat"].engine.dispose()


def test_workers_starting_at_once_share_one_whole_key(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "first"), "CLOCK": clock}
               ).extensions["upgrade_chat"].engine.dispose()  # the database, migrated once
    def worker(_) -> str:
        app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "inst"),
                          "CLOCK": clock})
        app.extensions["upgrade_chat"].engine.dispose()
        return app.extensions["upgrade_chat"].api_key

    keys = at_once(8, lambda: None, worker)
    assert len(set(keys)) == 1 and len(keys[0]) >= 24
    assert [p.name for p in (tmp_path / "inst").iterdir()] == ["api_key"]  # no temp file left


def test_an_empty_key_file_refuses_to_start_and_a_blank_setting_is_not_set(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "api_key").write_text("\n")
    with pytest.raises(ConfigError, match="api_key is empty"):
        create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "inst"), "CLOCK": clock})
    (tmp_path / "inst" / "api_key").unlink()
    blank = create_app({"DATABASE_URL": url, "API_KEY": "  ", "CLOCK": clock,
                        "INSTANCE_PATH": str(tmp_path / "inst")})  # blank is not set: generated
    assert len(blank.extensions["upgrade_chat"].api_key) >= 24
    blank.extensions["upgrade_chat"].engine.dispose()


def test_a_blank_bearer_token_is_refused(app):
    for header in ("Bearer ", "Bearer \u00a0", "Bearer  \t"):
        r = app.test_client().get("/api/v1/accounts/acme", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_a_postgresql_deployment_creates_no_instance_folder(pg_test_url, tmp_path):
    app = create_app({"DATABASE_URL": pg_test_url, "API_KEY": "k",
                      "INSTANCE_PATH": str(tmp_path / "never")})
    assert not (tmp_path / "never").exists()
    app.extensions["upgrade_chat"].engine.dispose()
