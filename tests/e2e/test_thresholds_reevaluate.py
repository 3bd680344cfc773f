"""`flask --app app thresholds reevaluate`: every account's thresholds evaluated again after a
catalog change, on SQLite and PostgreSQL.

Accounts are put and their usage posted under the shipped catalog (Starter -> Growth at 4,500
messages); then the app is built on a catalog that lowers it to 4,000, and the command run:

- lowered (Chicago, 09:00 there): 4,200 messages: crosses; prompted, its opening queued in the
  outbox (not sent: the command only queues), the thread open;
- above: 5,000 messages, crossed at ingestion: no second signal (above the old level counts as
  above the new one);
- the control account: 4,200: a signal, suppressed "control", no thread, nothing queued;
- night (Sydney, 02:00 there): 4,200: deferred to 09:00 Sydney (quiet hours), its opening
  queued not before then;
- capped: 4 seats crossed at ingestion (one opening this quarter), that thread expired since;
  4,200 messages: suppressed "cap".

Run again, it changes nothing. A catalog that raises the level to 5,500 re-arms every account
below it (no signal), and the next usage that takes one above it fires again.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import func, select, text

from core.guardrails import in_control
from storage.models import OutboxRow, SignalRow, ThreadRow, ThresholdStateRow
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, event
from web.catalog_file import DEFAULT_CATALOG

SHARE = "0.10"
OTHERS = ("lowered", "above", "night", "capped")
SALT = next(salt for salt in (f"reeval-{i}" for i in range(1000))
            if not any(in_control(a, Decimal(SHARE), salt) for a in OTHERS))
CONTROL = next(f"ctl-{i}" for i in range(1000) if in_control(f"ctl-{i}", Decimal(SHARE), SALT))


def catalog_at(tmp_path, level: int):
    text_ = DEFAULT_CATALOG.read_text()
    assert text_.count("at = 4500") == 1
    path = tmp_path / f"catalog-{level}.toml"
    path.write_text(text_.replace("at = 4500", f"at = {level}"))
    return path


def scenario(api: Api, engine) -> None:
    phones = {"night": "+61293744000"}
    zones = {"night": "Australia/Sydney"}
    for external_id in (*OTHERS, CONTROL):
        body = account(timezone=zones.get(external_id, "America/Chicago"))
        body["contacts"] = [contact(f"{external_id}-c", role="billing",
                                    phone=phones.get(external_id, "+13125550100"))]
        r = api.put(f"/accounts/{external_id}", json=body)
        assert r.status_code == 201, r.get_json()
    r = api.post("/usage", json=batch(
        event("low-m", "lowered", "messages", 4200, ago(days=5)),
        event("above-m", "above", "messages", 5000, ago(days=5)),
        event("ctl-m", CONTROL, "messages", 4200, ago(days=5)),
        event("night-m", "night", "messages", 4200, ago(days=5)),
        event("cap-s", "capped", "seats", 4, ago(days=4)),
        event("cap-m", "capped", "messages", 4200, ago(days=3)),
    ))
    assert r.status_code == 200, r.get_json()
    crossed = {(s["metric"]) for s in r.get_json()["signals"]}
    assert crossed == {"messages", "seats"}, r.get_json()  # above's messages, capped's seats
    with engine.begin() as conn:  # capped's thread ended; its opening still counts this quarter
        conn.execute(text("UPDATE threads SET state = 'expired', closed_at = updated_at WHERE "
                          "account_id = (SELECT id FROM accounts WHERE external_id = 'capped')"))


def decisions(engine) -> dict[str, tuple[str, str | None]]:
    """Each account's signals of the messages threshold: (outcome, reason), newest last."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT a.external_id, s.outcome, s.reason FROM signals s JOIN accounts a "
            "ON a.id = s.account_id WHERE s.metric = 'messages' ORDER BY s.id")).all()
    return {x: (o, r) for x, o, r in rows}


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (SignalRow, ThreadRow, OutboxRow, ThresholdStateRow)}


def reevaluate(make_app, path, **config):
    app = make_app(CATALOG_PATH=str(path), CONTROL_SHARE=SHARE, CONTROL_SALT=SALT, **config)
    result = app.test_cli_runner().invoke(args=["thresholds", "reevaluate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "re-evaluating accounts" in result.stderr  # the progress bar
    return app, result.stdout


def test_a_lowered_threshold_opens_through_the_guardrails_once(make_app, engine, tmp_path):
    app = make_app(CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)
    scenario(Api(app.test_client()), engine)
    before = counts(engine)
    assert decisions(engine) == {"above": ("prompted", None)}

    _, out = reevaluate(make_app, catalog_at(tmp_path, 4000))
    # above's key moves to the new level (a write, no crossing); four cross.
    assert ("5 accounts re-evaluated; 5 changed: 4 thresholds now met, 0 re-armed or dropped, "
            "1 kept at a new level; 4 crossings.") in out, out
    got = decisions(engine)
    assert got == {"above": ("prompted", None), "lowered": ("prompted", None),
                   CONTROL: ("suppressed", "control"), "night": ("deferred", "quiet_hours"),
                   "capped": ("suppressed", "cap")}, got
    after = counts(engine)
    assert after["signals"] == before["signals"] + 4
    assert after["threads"] == before["threads"] + 2  # lowered and night; not control, capped
    assert after["outbox"] == before["outbox"] + 2  # their openings, queued
    with engine.connect() as conn:
        openings = {x: (status, not_before) for x, status, not_before in conn.execute(text(
            "SELECT a.external_id, m.status, m.not_before FROM messages m JOIN threads t ON "
            "t.id = m.thread_id JOIN accounts a ON a.id = t.account_id WHERE m.kind = 'opening' "
            "AND a.external_id IN ('lowered', 'night')"))}
        pending = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'")).scalar()
    assert openings["lowered"] == ("queued", None)  # nothing was sent by the command
    status, not_before = openings["night"]
    assert status == "queued"
    not_before = not_before if not isinstance(not_before, str) else datetime.fromisoformat(not_before)
    if not_before.tzinfo is None:
        not_before = not_before.replace(tzinfo=timezone.utc)
    assert not_before == datetime(2026, 11, 26, 22, 0, tzinfo=timezone.utc)  # 09:00 Sydney
    assert pending == after["outbox"]  # queued for the outbox to send; nothing was sent

    # Twice: nothing more.
    _, out = reevaluate(make_app, catalog_at(tmp_path, 4000))
    assert "5 accounts re-evaluated; 0 changed" in out, out
    assert counts(engine) == after
    assert decisions(engine) == got


def test_a_raised_threshold_re_arms_and_the_next_usage_fires_again(make_app, engine, tmp_path):
    app = make_app(CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)
    scenario(Api(app.test_client()), engine)
    before = counts(engine)

    app, out = reevaluate(make_app, catalog_at(tmp_path, 5500))
    # above (5,000) is below 5,500 now: its key is re-armed; the others were never above.
    assert ("5 accounts re-evaluated; 1 changed: 0 thresholds now met, 1 re-armed or dropped, "
            "0 kept at a new level; 0 crossings.") in out, out
    assert counts(engine)["signals"] == before["signals"]
    with engine.connect() as conn:
        keys = set(conn.scalars(text(
            "SELECT key FROM threshold_states s JOIN accounts a ON a.id = s.account_id "
            "WHERE a.external_id = 'above'")))
    assert keys == set()

    _, again = reevaluate(make_app, catalog_at(tmp_path, 5500))
    assert "0 changed" in again

    r = Api(app.test_client()).post("/usage", json=batch(
        event("above-m2", "above", "messages", 600, ago(hours=1))))
    assert r.status_code == 200, r.get_json()
    assert [(s["metric"], s["threshold"]) for s in r.get_json()["signals"]] == [("messages", "5500")]


def test_state_kept_under_an_old_level_carries_over_at_ingestion(make_app, engine, tmp_path):
    """Without a re-evaluation, the next event of an account above both levels does not fire
    again under the new catalog: its old key counts for the new level."""
    app = make_app(CONTROL_SHARE=SHARE, CONTROL_SALT=SALT)
    scenario(Api(app.test_client()), engine)
    lowered = make_app(CATALOG_PATH=str(catalog_at(tmp_path, 4000)), CONTROL_SHARE=SHARE,
                       CONTROL_SALT=SALT)
    r = Api(lowered.test_client()).post("/usage", json=batch(
        event("above-m2", "above", "messages", 10, ago(hours=1))))
    assert r.status_code == 200 and r.get_json()["signals"] == [], r.get_json()
    with engine.connect() as conn:
        keys = set(conn.scalars(text(
            "SELECT key FROM threshold_states s JOIN accounts a ON a.id = s.account_id "
            "WHERE a.external_id = 'above'")))
    assert keys == {"starter->growth:messages>=4000"}
    assert re.match(r"starter->growth", next(iter(keys)))
