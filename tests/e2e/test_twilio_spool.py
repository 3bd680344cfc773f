"""The inbound spool: a buyer's message that arrives while the database is unreachable is kept on
disk, answered with empty TwiML, and replayed in order through the live path (so deduped) once
the database is back; its replies go out from the outbox.

The end-to-end test stops and starts the session's real PostgreSQL cluster; the Spool tests
need no database at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg import OperationalError as PsycopgOperationalError
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from storage.db import database_unreachable
from web.spool import ReplayStats, Spool
from core.ports import Conflict
from storage.models import MessageRow
from tests.conftest import _truncate_all
from tests.e2e.test_twilio_inbound import (BASE, DANA_PHONE, TOKEN, Twilio, cross_messages, db,
                                           new_sid, payload, replies, setup_account, thread)


# --- end to end, on PostgreSQL ------------------------------------------------------------------

@pytest.fixture
def db_url(pg_test_url) -> str:
    """PostgreSQL only: the test stops and starts the server under the app."""
    _truncate_all(pg_test_url)
    return pg_test_url


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=BASE, CONTROL_SHARE="0",
                    BUSINESS_NAME="Acme Billing", SUPPORT_CONTACT="help@acme.example",
                    SPOOL_DIR=str(tmp_path / "spool"))


@pytest.fixture
def api(app):
    from tests.conftest import Api

    return Api(app.test_client())


@pytest.fixture
def twilio(app) -> Twilio:
    return Twilio(app.test_client())


@contextmanager
def database_down(cluster):
    """The session's shared cluster, stopped for the block and always started again (same data
    folder and port, so every URL stays valid)."""
    cluster.stop()
    try:
        yield
    finally:
        cluster.start()


def jobs(app):
    return app.test_cli_runner().invoke(args=["jobs", "run"])


def replies_sent(app) -> list[tuple[str, str, str | None]]:
    """(body, status, provider id) of every reply, oldest first."""
    with db(app).connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(MessageRow.body, MessageRow.status, MessageRow.provider_id)
            .where(MessageRow.kind == "reply").order_by(MessageRow.id))]


def inbound_bodies(app, sid: str) -> list[str]:
    with db(app).connect() as conn:
        return list(conn.scalars(select(MessageRow.body).where(
            MessageRow.direction == "in", MessageRow.provider_id == sid)))


@pytest.mark.postgres
def test_messages_sent_while_postgresql_is_down_are_spooled_and_replayed_in_order_once_it_is_back(
        app, api, twilio, pg_cluster, caplog):
    if pg_cluster is None:
        pytest.skip("stops the server: needs the throwaway cluster, not UPGRADE_CHAT_TEST_PG_URL")
    setup_account(api)
    cross_messages(api)
    assert thread(api)["state"] == "offered"
    spool = Spool(app.config["SPOOL_DIR"])
    how_much, yes = new_sid(), new_sid()

    with database_down(pg_cluster):
        answers = [twilio.text("how much?", how_much), twilio.text("yes", yes),
                   twilio.text("how much?", how_much)]  # Twilio delivering the first one twice
        assert [replies(r) for r in answers] == [[], [], []]  # 200, empty <Response/>
        forged = twilio.post("/twilio/messaging", payload("sms_inbound"), token="not-the-token")
        assert forged.status_code == 403  # the signature is checked before anything is kept
        # Every delivery is kept as it came (deduping is the handler's job, on replay).
        entries = [json.loads(p.read_text()) for p in spool.pending()]
        assert [(e["body"], e["provider_id"]) for e in entries] == [
            ("how much?", how_much), ("yes", yes), ("how much?", how_much)]
        assert all(e["from"] == DANA_PHONE and e["medium"] == "sms" for e in entries)
        still_down = jobs(app)  # the scheduler's pass while the database is still down
        assert still_down.exit_code != 0
        assert len(spool.pending()) == 3  # nothing replayed, nothing lost

    first = jobs(app)
    assert first.exit_code == 0, first.output
    assert "spool: 3 replayed" in first.output and "outbox: 2 sent" in first.output
    assert spool.pending() == []
    assert thread(api)["state"] == "awaiting_confirmation"
    assert inbound_bodies(app, how_much) == ["how much?"]
    assert inbound_bodies(app, yes) == ["yes"]
    [(price, *price_sent), (step, *step_sent)] = replies_sent(app)  # in the order written
    assert price.startswith("Growth is $499.00 a month")  # the answer to "how much?"
    assert "Growth at $499.00 a month" in step and "$105.00" in step  # to "yes": the step
    assert price_sent[0] == step_sent[0] == "sent"
    assert price_sent[1].startswith("SB") and step_sent[1].startswith("SB")  # really dispatched

    again = jobs(app)
    assert again.exit_code == 0, again.output
    assert "spool: 0 replayed" in again.output and "outbox: 0 sent" in again.output
    assert len(replies_sent(app)) == 2
    assert DANA_PHONE not in caplog.text and "how much?" not in caplog.text


@pytest.mark.postgres
def test_a_yes_kept_during_the_outage_never_confirms_the_step_the_buyer_asked_for_after_it(
        app, api, twilio, pg_cluster, clock):
    """The finding as it was reproduced: "yes" during the outage; after it, "yes" again (the
    confirmation step); the scheduler's replay of the first "yes" must not confirm the charge."""
    if pg_cluster is None:
        pytest.skip("stops the server: needs the throwaway cluster, not UPGRADE_CHAT_TEST_PG_URL")
    setup_account(api)
    cross_messages(api)
    clock.now += timedelta(minutes=20)
    with database_down(pg_cluster):
        assert replies(twilio.text("yes")) == []  # spooled
    clock.now += timedelta(minutes=10)
    step = replies(twilio.text("yes"))
    assert len(step) == 1 and "CONFIRM" in step[0]
    clock.now += timedelta(minutes=1)
    assert jobs(app).exit_code == 0
    assert thread(api)["state"] == "awaiting_confirmation"
    with db(app).connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM plan_changes")) == 0
        ats = list(conn.scalars(select(MessageRow.at).where(MessageRow.direction == "in",
                                                            MessageRow.body == "yes")
                                .order_by(MessageRow.at)))
    assert [a.replace(tzinfo=None) for a in ats] == [
        (clock.now - timedelta(minutes=11)).replace(tzinfo=None),
        (clock.now - timedelta(minutes=1)).replace(tzinfo=None)]


@pytest.mark.postgres
def test_a_web_process_replays_its_own_hosts_spool_without_the_scheduler(app, api, twilio):
    """What each web host does (deploy/gunicorn.conf.py starts it in every worker): its spool
    is a folder no other host's scheduler sees, so the web process replays it itself."""
    import time

    from channels.twilio_messaging import InboundMessage, spool_entry, start_spool_replayer

    setup_account(api)
    cross_messages(api)
    spool = Spool(app.config["SPOOL_DIR"])
    rt = app.extensions["upgrade_chat"]
    sids = [new_sid(), new_sid()]
    for sid in sids:  # as the webhook kept them while the database was unreachable
        spool.write(spool_entry(InboundMessage("sms", DANA_PHONE, "how much?", sid, False),
                                rt.now()))
    spool.write(spool_entry(InboundMessage("sms", DANA_PHONE, "how much?", sids[0], False),
                            rt.now()))  # Twilio's second delivery of the first
    stop = start_spool_replayer(app, every=0.05)
    try:
        deadline = time.monotonic() + 10
        while spool.pending():
            assert time.monotonic() < deadline, "the web process did not replay its spool"
            time.sleep(0.05)
    finally:
        stop.set()
    assert [inbound_bodies(app, sid) for sid in sids] == [["how much?"], ["how much?"]]
    queued = replies_sent(app)
    assert [status for _, status, _ in queued] == ["queued", "queued"]  # for the outbox


# --- the Spool itself, without a database -------------------------------------------------------

def test_entries_come_back_in_the_order_they_were_written_as_complete_private_files(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert spool.pending() == [] and not spool.directory.exists()  # created on the first write
    written = [spool.write({"n": n, "body": f"message {n}"}) for n in range(20)]
    assert spool.pending() == written
    assert [json.loads(p.read_text())["n"] for p in spool.pending()] == list(range(20))
    assert sorted(os.listdir(spool.directory)) == [p.name for p in written]  # no temp files
    assert {p.stat().st_mode & 0o777 for p in written} == {0o600}
    assert spool.directory.stat().st_mode & 0o777 == 0o700


def test_a_write_is_fsynced_before_it_is_renamed_into_place_and_the_folder_after(
        tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool")
    spool.write({"n": 0})  # the folder exists now
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("web.spool.os.fsync", fsync)
    monkeypatch.setattr("web.spool.os.replace", replace)
    path = spool.write({"n": 1})
    kinds = [(kind, Path(target).name) for kind, target in events]
    assert kinds[0][0] == "fsync" and kinds[0][1].startswith(".tmp-")  # the data, temp name
    assert kinds[1] == ("replace", path.name)
    assert kinds[2] == ("fsync", "spool")  # the rename itself


def test_a_replay_stops_at_the_first_failure_and_keeps_that_entry_and_the_rest_in_order(
        tmp_path):
    spool = Spool(tmp_path)
    for n in range(5):
        spool.write({"n": n})
    handled: list[int] = []

    def database_down_at_2(entry: dict) -> None:
        if entry["n"] == 2:
            raise ConnectionError("database down")
        handled.append(entry["n"])

    assert spool.replay(database_down_at_2) == ReplayStats(replayed=2, failed_left=3)
    assert handled == [0, 1]
    assert [json.loads(p.read_text())["n"] for p in spool.pending()] == [2, 3, 4]
    assert spool.replay(lambda entry: handled.append(entry["n"])) == ReplayStats(replayed=3)
    assert handled == [0, 1, 2, 3, 4] and spool.pending() == []


def test_an_entry_that_can_never_succeed_is_set_aside_and_the_replay_goes_on(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        spool.write({"n": n})
    (tmp_path / "00000000000000000000-torn.json").write_text("{not json")
    handled: list[int] = []

    def bug_at_1(entry: dict) -> None:
        if entry["n"] == 1:
            raise KeyError("a bug, not an outage")
        handled.append(entry["n"])

    stats = spool.replay(bug_at_1, retry_later=lambda exc: not isinstance(exc, KeyError))
    assert stats == ReplayStats(replayed=2, rejected=2)
    assert handled == [0, 2] and spool.pending() == []
    assert len(list((tmp_path / "rejected").iterdir())) == 2  # kept for the operator


def test_only_one_replay_runs_at_a_time_and_unfinished_writes_are_never_replayed(tmp_path):
    spool = Spool(tmp_path)
    spool.write({"n": 0})
    (tmp_path / ".tmp-0000-dead.json.part").write_text('{"n": "half')  # a write that died
    inner: list[ReplayStats] = []
    spool.replay(lambda entry: inner.append(spool.replay(lambda e: None)))
    assert inner == [ReplayStats(busy=True)]
    assert spool.pending() == []


def test_database_unreachable_tells_an_outage_from_a_bug():
    def wrapped(orig: BaseException, cls=sa_exc.OperationalError, **kw) -> BaseException:
        return cls("SELECT 1", {}, orig, **kw)

    refused = wrapped(PsycopgOperationalError("connection refused"))
    assert database_unreachable(refused)
    assert database_unreachable(wrapped(Exception("gone"), sa_exc.DBAPIError,
                                        connection_invalidated=True))
    assert database_unreachable(wrapped(Exception("closed"), sa_exc.InterfaceError))
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"
    assert database_unreachable(wrapped(locked))
    try:  # raised from a wrapper (the unit of work turns some errors into its own)
        raise Conflict("lost a race") from refused
    except Conflict as exc:
        assert database_unreachable(exc)
    try:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")
    except sqlite3.OperationalError as exc:
        assert not database_unreachable(wrapped(exc))
    assert not database_unreachable(wrapped(Exception("duplicate key"), sa_exc.IntegrityError))
    assert not database_unreachable(ValueError("a bug"))

