"""Logs never carry what an exception's text quotes. A database error's message can hold the
values it choked on (PostgreSQL's DETAIL and CONTEXT quote key values and the JSON that failed to
parse, which may be a request's phone numbers and message bodies), and any library may log a
traceback. Once the service is set up, every log record's exception (and the chain behind it)
is shown by type and code only; the frames stay, for the operator to find the place."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from storage.db import make_engine
from tests.conftest import Api

PHONE = "+15551230987"
BODY = "my card ends 4242"


@pytest.fixture
def db_url(tmp_path, sqlite_template) -> str:
    """The service's own database does not matter here: SQLite (PostgreSQL is used directly)."""
    import shutil

    shutil.copy(sqlite_template, tmp_path / "t.sqlite3")
    return f"sqlite:///{tmp_path / 't.sqlite3'}"


@pytest.fixture
def app(make_app):
    return make_app(CONTROL_SHARE="0")


def _logged(caplog, exc: BaseException) -> str:
    try:
        raise exc
    except BaseException:
        logging.getLogger("some.library").exception("something failed")
    return caplog.text


@pytest.mark.postgres
def test_a_postgresql_error_quoting_request_json_is_logged_by_type_and_sqlstate(
        app, caplog, pg_test_url):
    engine = make_engine(pg_test_url)
    try:
        with engine.connect() as conn, pytest.raises(Exception) as raised:
            conn.execute(text("SELECT CAST(:doc AS json)"),
                         {"doc": f'{{"phone": "{PHONE}", "text": "{BODY}"'})
    finally:
        engine.dispose()
    assert PHONE in str(raised.value.orig)  # what PostgreSQL's CONTEXT says, unredacted
    out = _logged(caplog, raised.value)
    assert PHONE not in out and BODY not in out
    assert "DataError" in out and "22P02" in out  # the kind and the SQLSTATE stay
    assert "test_log_redaction.py" in out  # and the frames


def test_an_exception_chain_is_redacted_link_by_link(app, caplog):
    try:
        try:
            raise KeyError(PHONE)
        except KeyError as inner:
            raise ValueError(f"could not read {BODY}") from inner
    except ValueError as outer:
        out = _logged(caplog, outer)
    assert PHONE not in out and BODY not in out
    assert "KeyError" in out and "ValueError" in out
    assert "direct cause" in out


def test_an_unhandled_api_error_logs_no_request_data(app, caplog, monkeypatch):
    api = Api(app.test_client())
    runtime = app.extensions["upgrade_chat"]

    def broken(*args, **kwargs):
        raise RuntimeError(f"failed on {PHONE}: {BODY}")

    monkeypatch.setattr(runtime, "uow", broken)
    r = api.get("/accounts/acme-clinic")
    assert r.status_code == 500 and r.get_json()["error"]["code"] == "internal_error"
    assert "RuntimeError" in caplog.text
    assert PHONE not in caplog.text and BODY not in caplog.text


def test_a_contact_whose_id_is_an_email_is_logged_by_row_id(make_app, caplog):
    """STOP from a number two accounts' contacts share revokes consent for both and says so in
    the log: by the contacts' row ids, not their ids (an operator's contact id may be an
    email)."""
    from tests.e2e.helpers import account, contact
    from tests.e2e.test_twilio_inbound import BASE, TOKEN, Twilio

    app = make_app(CONTROL_SHARE="0", TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE)
    api, phone = Api(app.test_client()), "+13125550188"
    for n in (1, 2):
        api.put(f"/accounts/clinic-{n}", json=account(name=f"Clinic {n}", contacts=[
            contact(f"dana{n}@clinic.example", phone=phone)]))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        r = Twilio(app.test_client()).text("STOP", number=phone)
    assert r.status_code == 200
    assert "opt-out (buyer) recorded for contact #1" in caplog.text
    assert "opt-out (buyer) recorded for contact #2" in caplog.text
    assert "@clinic.example" not in caplog.text and phone not in caplog.text
