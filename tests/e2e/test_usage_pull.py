"""Pull mode (issue 14): usage read from the operator's own database (a SQLite file here, a
PostgreSQL table in the throwaway cluster) through the same ingestion as the API: thresholds
crossed, nothing twice, a bad row stops its source before it, the other sources go on."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app import ConfigError, create_app
from cli import run_jobs
from storage.audit import SqlAuditTrail
from storage.usage_sources import SqlSourceCursors
from tests.conftest import API_KEY, Api
from tests.e2e.helpers import account, ago
from tests.support import postgres

QUERY = "SELECT id, account, metric, quantity, at FROM usage_log WHERE id > :cursor ORDER BY id"


def source_db(path: Path, rows: list[tuple]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS usage_log (id INTEGER PRIMARY KEY, "
                     "account TEXT, metric TEXT, quantity INTEGER, at TEXT)")
        conn.executemany("INSERT INTO usage_log VALUES (?, ?, ?, ?, ?)", rows)
    return path


def sources_file(tmp_path: Path, **urls: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text("".join(f'[sources.{name}]\nurl = "{url}"\nquery = "{QUERY}"\n'
                            f'cursor = "id"\nevery = "5m"\n\n' for name, url in urls.items()))
    return path


@pytest.fixture
def acme(tmp_path):
    return source_db(tmp_path / "acme_source.sqlite3", [
        (1, "acme", "messages", 2000, ago(days=3)),
        (2, "acme", "messages", 2000, ago(days=2)),
        (3, "acme", "messages", 2000, ago(days=1))])


def pulling(make_app, tmp_path, **urls):
    app = make_app(USAGE_SOURCES=str(sources_file(tmp_path, **urls)), CONTROL_SHARE="0",
                   SECRET_KEY="console-test-key")
    api = Api(app.test_client())
    for name in ("acme", "bolt"):
        assert api.put(f"/accounts/{name}", json=account(name=name.title())).status_code == 201
    return app


def pull(app, *args):
    return app.test_cli_runner().invoke(args=["usage", "pull", *args])


def cursor(app, name):
    state = SqlSourceCursors(app.extensions["upgrade_chat"].engine).get(name)
    return state and state.cursor


def test_first_pull_crosses_a_threshold_then_reads_nothing_new_then_picks_up_new_rows(
        make_app, tmp_path, acme):
    app = pulling(make_app, tmp_path, product=f"sqlite:///{acme}")
    first = pull(app)
    assert first.exit_code == 0, first.output
    assert "product: 3 rows read, 3 ingested, 0 duplicates, 1 thresholds crossed; cursor 3" \
        in first.output
    signals = Api(app.test_client()).get("/accounts/acme/signals").get_json()["signals"]
    assert len(signals) == 1
    assert cursor(app, "product") == "3"

    again = pull(app)
    assert "product: 0 rows read, 0 ingested" in again.output and again.exit_code == 0

    source_db(acme, [(4, "acme", "messages", 5, ago(hours=2)), (5, "bolt", "seats", 3, ago(hours=1))])
    new = pull(app, "--source", "product")
    assert "product: 2 rows read, 2 ingested, 0 duplicates" in new.output
    assert cursor(app, "product") == "5"


def test_a_row_read_again_after_it_changed_is_not_ingested_twice(make_app, tmp_path, acme):
    app = pulling(make_app, tmp_path, product=f"sqlite:///{acme}")
    assert pull(app).exit_code == 0
    with sqlite3.connect(acme) as conn:  # the product rewrites a row it already reported
        conn.execute("UPDATE usage_log SET quantity = 9000 WHERE id = 2")
    engine = app.extensions["upgrade_chat"].engine
    with engine.begin() as conn:  # as if the pull had died before its cursor was saved
        conn.execute(text("DELETE FROM usage_source_cursors"))
    result = pull(app)
    assert "product: 3 rows read, 0 ingested, 3 duplicates, 0 thresholds crossed" in result.output
    with engine.connect() as conn:
        total = conn.execute(text("SELECT sum(quantity) FROM usage_events")).scalar_one()
    assert total == 6000


def test_pages_move_the_cursor_page_by_page(make_app, tmp_path, acme):
    from cli.pull import pull_source

    app = pulling(make_app, tmp_path, product=f"sqlite:///{acme}")
    with app.app_context():
        rt = app.extensions["upgrade_chat"]
        report = pull_source(rt, rt.usage_sources["product"], page_size=2)
    assert (report.read, report.ingested, report.cursor) == (3, 3, "3")


def test_a_bad_row_stops_its_source_before_it_and_the_other_sources_go_on(make_app, tmp_path,
                                                                         acme):
    broken = source_db(tmp_path / "broken.sqlite3", [
        (1, "bolt", "seats", 2, ago(days=1)),
        (2, "nobody", "messages", 1, ago(hours=5)),  # no such account
        (3, "bolt", "seats", 4, ago(hours=1))])
    app = pulling(make_app, tmp_path, broken=f"sqlite:///{broken}", product=f"sqlite:///{acme}")
    result = pull(app)
    assert result.exit_code != 0
    assert "broken: 3 rows read, 1 ingested" in result.output
    assert "FAILED: row id 2: no account 'nobody'" in result.output
    assert "product: 3 rows read, 3 ingested" in result.output
    assert "usage pull failed for broken" in result.output
    assert cursor(app, "broken") == "1" and cursor(app, "product") == "3"
    state = SqlSourceCursors(app.extensions["upgrade_chat"].engine).get("broken")
    assert state is not None and "nobody" in (state.last_error or "")

    with sqlite3.connect(broken) as conn:  # the operator fixes the row: the pull goes on from it
        conn.execute("UPDATE usage_log SET account = 'acme' WHERE id = 2")
    fixed = pull(app, "--source", "broken")
    assert fixed.exit_code == 0 and "broken: 2 rows read, 2 ingested" in fixed.output
    assert cursor(app, "broken") == "3"


@pytest.mark.parametrize("row, reason", [
    ((1, "acme", "messages", "many", "2026-11-25T10:00:00Z"), "quantity: expected a whole number"),
    ((1, "acme", "messages", 5, "yesterday"), "at"),
    ((1, "acme", "nonsense", 5, "2026-11-25T10:00:00Z"), "metric"),
])
def test_a_bad_first_row_ingests_nothing_and_leaves_the_cursor(make_app, tmp_path, row, reason):
    bad = source_db(tmp_path / "bad.sqlite3", [row])
    app = pulling(make_app, tmp_path, bad=f"sqlite:///{bad}")
    result = pull(app)
    assert result.exit_code != 0 and "FAILED: row id 1:" in result.output
    assert reason in result.output.split("FAILED:")[1]
    assert cursor(app, "bad") is None


def test_a_missing_column_and_bad_sql_are_reported_by_source(make_app, tmp_path, acme):
    path = tmp_path / "sources.toml"
    path.write_text(f'[sources.nocol]\nurl = "sqlite:///{acme}"\n'
                    f'query = "SELECT id, account, metric, at FROM usage_log WHERE id > :cursor"\n'
                    f'cursor = "id"\nevery = "1m"\n'
                    f'[sources.badsql]\nurl = "sqlite:///{acme}"\n'
                    f'query = "SELECT * FROM no_such_table WHERE id > :cursor"\n'
                    f'cursor = "id"\nevery = "1m"\n')
    app = make_app(USAGE_SOURCES=str(path))
    result = pull(app)
    assert result.exit_code != 0
    assert "nocol: 0 rows read" in result.output and "no column quantity" in result.output
    assert "badsql:" in result.output and "no such table: no_such_table" in result.output


def test_an_unreachable_source_is_reported_and_the_others_go_on(make_app, tmp_path, acme):
    app = pulling(make_app, tmp_path, gone=f"sqlite:///{tmp_path / 'nowhere.sqlite3'}",
                  down="postgresql+psycopg://reader@127.0.0.1:1/product",
                  product=f"sqlite:///{acme}")
    result = pull(app)
    assert result.exit_code != 0
    assert "gone: 0 rows read" in result.output and "no SQLite file at" in result.output
    assert "down: 0 rows read" in result.output and "cannot read the source" in result.output
    assert "product: 3 rows read, 3 ingested" in result.output
    assert not (tmp_path / "nowhere.sqlite3").exists()  # reading never creates a file


@pytest.mark.postgres
def test_a_postgresql_source_table(make_app, tmp_path, pg_admin_url):
    url = postgres.create_database(pg_admin_url, "usage_source_test")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE usage_log (id bigint PRIMARY KEY, account text, "
                          "metric text, quantity numeric, at timestamptz)"))
        conn.execute(text("INSERT INTO usage_log VALUES (1, 'acme', 'messages', 3000, "
                          "now() - interval '2 days'), (2, 'acme', 'messages', 3000, "
                          "now() - interval '1 day')"))
    app = pulling(make_app, tmp_path, product=url)
    app.extensions["upgrade_chat"].clock = lambda: __import__("datetime").datetime.now(
        __import__("datetime").timezone.utc)
    first = pull(app)
    assert first.exit_code == 0, first.output
    assert "product: 2 rows read, 2 ingested, 0 duplicates, 1 thresholds crossed; cursor 2" \
        in first.output
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO usage_log VALUES (3, 'bolt', 'seats', 3, now())"))
    second = pull(app)
    assert "product: 1 rows read, 1 ingested" in second.output and cursor(app, "product") == "3"
    engine.dispose()


@pytest.mark.postgres
def test_a_source_that_goes_away_mid_pull_keeps_the_pages_recorded_and_resumes_after_them(
        make_app, tmp_path, pg_admin_url):
    from cli.pull import pull_source

    def product(rows):
        url = postgres.create_database(pg_admin_url, "usage_source_gone")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE usage_log (id bigint PRIMARY KEY, account text, "
                              "metric text, quantity numeric, at timestamptz)"))
            for i in rows:
                conn.execute(text("INSERT INTO usage_log VALUES (:i, 'acme', 'messages', 100, "
                                  "now() - make_interval(hours => 10 - :i))"), {"i": i})
        engine.dispose()
        return url

    url = product(range(1, 6))
    app = pulling(make_app, tmp_path, product=url)
    app.extensions["upgrade_chat"].clock = lambda: datetime.now(timezone.utc)
    pages = []

    def drop_after_first_page(n):  # the product's database goes away between two pages
        pages.append(n)
        if len(pages) == 1:
            admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text('DROP DATABASE "usage_source_gone" WITH (FORCE)'))
            admin.dispose()

    with app.app_context():
        rt = app.extensions["upgrade_chat"]
        report = pull_source(rt, rt.usage_sources["product"], page_size=2,
                             progress=drop_after_first_page)
    assert (report.read, report.ingested, report.cursor) == (2, 2, "2")
    assert report.error and report.error.startswith("cannot read the source")
    assert cursor(app, "product") == "2"  # not past what was not ingested
    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT last_error FROM usage_source_cursors")).scalar_one()

    product(range(1, 6))  # back, with the same rows: the pull goes on after row 2
    result = pull(app)
    assert result.exit_code == 0, result.output
    assert "product: 3 rows read, 3 ingested, 0 duplicates" in result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*), sum(quantity) FROM usage_events")).one() \
            == (5, 500)
        assert conn.execute(text("SELECT last_error FROM usage_source_cursors")).scalar_one() \
            is None
    postgres.create_database(pg_admin_url, "usage_source_gone")


@pytest.mark.postgres
def test_a_timestamp_cursor_on_a_postgresql_source(make_app, tmp_path, pg_admin_url):
    url = postgres.create_database(pg_admin_url, "usage_source_stamps")
    engine = create_engine(url)
    with engine.begin() as conn:  # no integer id: the event time is the cursor
        conn.execute(text("CREATE TABLE usage_log (uuid text PRIMARY KEY, account text, "
                          "metric text, quantity numeric, at timestamptz)"))
        conn.execute(text("INSERT INTO usage_log VALUES ('a', 'acme', 'messages', 100, "
                          "now() - interval '3 hours'), ('b', 'acme', 'messages', 100, "
                          "now() - interval '2 hours')"))
    path = tmp_path / "stamps.toml"
    path.write_text(f'[sources.product]\nurl = "{url}"\n'
                    'query = "SELECT uuid AS id, account, metric, quantity, at FROM usage_log '
                    'WHERE at > CAST(:cursor AS timestamptz)"\n'
                    'cursor = "at"\nevery = "5m"\nstart = "1970-01-01T00:00:00+00:00"\n')
    app = make_app(USAGE_SOURCES=str(path), CONTROL_SHARE="0")
    assert Api(app.test_client()).put("/accounts/acme", json=account(name="Acme")) \
        .status_code == 201
    app.extensions["upgrade_chat"].clock = lambda: datetime.now(timezone.utc)
    assert "product: 2 rows read, 2 ingested" in pull(app).output
    saved = cursor(app, "product")
    assert datetime.fromisoformat(saved) > datetime.now(timezone.utc) - timedelta(hours=3)
    assert "product: 0 rows read" in pull(app).output  # the saved time reads back as a time
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO usage_log VALUES ('c', 'acme', 'messages', 100, now())"))
    assert "product: 1 rows read, 1 ingested" in pull(app).output
    engine.dispose()


def test_the_scheduler_pass_pulls_each_source_when_it_is_due(make_app, tmp_path, acme, clock):
    app = pulling(make_app, tmp_path, product=f"sqlite:///{acme}")
    rt = app.extensions["upgrade_chat"]
    with app.test_request_context():
        assert run_jobs(rt).startswith("usage pulled: 3 events;")
        source_db(acme, [(4, "acme", "messages", 5, ago(hours=2))])
        assert run_jobs(rt).startswith("usage pulled: 0 events;")  # not due: every 5m
        clock.now += timedelta(minutes=5)
        assert run_jobs(rt).startswith("usage pulled: 1 events;")


def test_the_pull_is_audited_ok_and_failed(make_app, tmp_path, acme):
    app = pulling(make_app, tmp_path, product=f"sqlite:///{acme}")
    assert pull(app).exit_code == 0
    assert pull(app, "--source", "other").exit_code != 0
    trail = [e.json() for e in SqlAuditTrail(app.extensions["upgrade_chat"].engine).events()]
    pulls = [(e["action"], e["object_id"], e["outcome"]) for e in trail
             if e["action"] == "usage.pull"]
    assert pulls == [("usage.pull", "all", "ok"), ("usage.pull", "other", "failed")]


def test_no_sources_configured_says_how(make_app):
    result = make_app().test_cli_runner().invoke(args=["usage", "pull"])
    assert result.exit_code == 0 and "set USAGE_SOURCES" in result.output


GOOD = '[sources.p]\nurl = "sqlite:///x.db"\nquery = "SELECT * FROM t WHERE id > :cursor"\n' \
       'cursor = "id"\nevery = "5m"\n'


@pytest.mark.parametrize("text_, key, expected", [
    ("[sources.p\n", "(file)", "valid TOML"),
    (GOOD.replace('url = "sqlite:///x.db"', "url = 5"), "sources.p.url", "a database URL"),
    (GOOD.replace("WHERE id > :cursor", ""), "sources.p.query", "containing :cursor"),
    (GOOD.replace('cursor = "id"', 'cursor = "id; drop"'), "sources.p.cursor", "a column name"),
    (GOOD.replace('every = "5m"', 'every = "often"'), "sources.p.every", "like 30s, 5m or 1h"),
    (GOOD.replace('every = "5m"', 'every = "0s"'), "sources.p.every", "like 30s, 5m or 1h"),
    (GOOD.replace('every = "5m"\n', ''), "sources.p.every", "required"),
    (GOOD + 'extra = 1\n', "sources.p.extra", "one of url, query"),
    ("[other]\n", "other", "only [sources.<name>] tables"),
])
def test_a_bad_sources_file_is_refused_at_start_naming_file_key_and_expectation(
        tmp_path, text_, key, expected):
    path = tmp_path / "sources.toml"
    path.write_text(text_)
    with pytest.raises(ConfigError) as err:
        create_app({"USAGE_SOURCES": str(path), "API_KEY": API_KEY})
    message = str(err.value)
    assert message.startswith(f"UPGRADE_CHAT_USAGE_SOURCES: {path}: key '{key}'"), message
    assert expected in message


def test_a_missing_sources_file_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="a readable TOML file"):
        create_app({"USAGE_SOURCES": str(tmp_path / "none.toml"), "API_KEY": API_KEY})


def test_the_readme_demo_pull_on_the_embedded_default(make_app, tmp_path, monkeypatch):
    """README, "Pulling usage from your database": the script, then `usage pull` with the
    example file, from the checkout (its instance/ here is the test's folder)."""
    import importlib.util
    from datetime import datetime, timezone

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("demo_usage_source",
                                                  root / "scripts" / "demo_usage_source.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.chdir(tmp_path)  # the example's URL is relative: instance/demo_usage_source...
    app = make_app(DEMO=True, CLOCK=lambda: datetime.now(timezone.utc),
                   USAGE_SOURCES=str(root / "usage_sources.example.toml"))
    script.main(script.DEFAULT)
    first = pull(app)
    assert first.exit_code == 0, first.output
    assert "demo: 3 rows read, 3 ingested, 0 duplicates, 1 thresholds crossed; cursor 3" \
        in first.output
    assert "demo: 0 rows read" in pull(app).output
    script.main(script.DEFAULT)
    assert "demo: 3 rows read, 3 ingested" in pull(app).output


def test_the_console_home_shows_each_source_its_cursor_and_why_it_stopped(make_app, tmp_path,
                                                                          acme):
    from tests.e2e.test_console import make_operator, sign_in

    app = pulling(make_app, tmp_path, product=f"sqlite:///{acme}",
                  gone=f"sqlite:///{tmp_path / 'nowhere.sqlite3'}",
                  later=f"sqlite:///{acme}")
    with app.app_context():
        rt = app.extensions["upgrade_chat"]
        from cli.pull import pull_source
        for name in ("product", "gone"):
            pull_source(rt, rt.usage_sources[name])
    make_operator(app)
    client = app.test_client()
    sign_in(client)
    page = client.get("/console").get_data(as_text=True)
    assert "Usage sources" in page
    rows = {name: page.split(f"<tr><th>{name}</th>")[1].split("</tr>")[0]
            for name in ("product", "gone", "later")}
    assert "<td>3</td>" in rows["product"] and ">ok<" in rows["product"]
    assert "<td>5m</td>" in rows["product"]  # as the sources file writes it
    assert "stopped: cannot open the source" in rows["gone"] and "(start)" in rows["gone"]
    assert "waiting for its first pull" in rows["later"]


def test_the_console_home_has_no_sources_card_without_usage_sources(make_app):
    from tests.e2e.test_console import make_operator, sign_in

    app = make_app(SECRET_KEY="console-test-key")
    make_operator(app)
    client = app.test_client()
    sign_in(client)
    assert "Usage sources" not in client.get("/console").get_data(as_text=True)
