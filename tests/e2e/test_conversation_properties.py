"""Property test of the conversation engine through the HTTP API, on SQLite and PostgreSQL: any
sequence of buyer messages on SMS and web chat, with provider retries mixed in, upgrades at most
once, only after the confirmation step was shown, and a repeated message id changes nothing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.models import AccountRow, ContactRow, MessageRow, PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import NOW, account, ago, batch, contact, event

STATES = {"open", "offered", "awaiting_confirmation", "upgraded", "declined", "escalated",
          "expired", "opted_out"}
LIVE = {"open", "offered", "awaiting_confirmation"}
# Half the draws are a yes or a confirm, so that many sequences reach the upgrade.
YESES = ["yes", "confirm", "CONFIRM"]
OTHERS = ["no thanks", "too expensive", "how much would I be charged today?", "what do I get",
          "STOP", "START", "talk to a person", "yes at $399", "confirm the scale plan", "hmm"]
CHANNELS = ["sms", "web"]
REPEAT_FROM = 16  # a `retry` draw in 16..19 (about 20%) repeats an earlier id of the channel

# Hypothesis reuses the function-scoped app across examples; each example gets its own account.
_serial = itertools.count()

step = st.tuples(st.sampled_from(YESES) | st.sampled_from(OTHERS), st.sampled_from(CHANNELS), st.integers(0, 19))
steps = st.lists(step, min_size=1, max_size=15)


@pytest.fixture
def app(make_app):
    # Nobody in the control cohort, so every crossing prompts.
    return make_app(CONTROL_SHARE="0")


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def open_thread(api: Api, n: int) -> tuple[str, str]:
    """A fresh Starter account whose buyer is reachable by SMS and web chat, taken over the
    4,500-message threshold, its opening sent: (account id, contact id)."""
    acct, who = f"prop-{n}", f"prop-{n}-dana"
    body = account(contacts=[contact(who, name="Dana", role="billing",
                                     phone=f"+1312555{n % 10000:04d}", web_user_id=f"web-{n}")])
    r = api.put(f"/accounts/{acct}", json=body)
    assert r.status_code == 201, r.get_json()
    events = [event(f"{acct}-m{i}", acct, "messages", 600, ago(NOW, days=7 - i)) for i in range(8)]
    events.append(event(f"{acct}-seats", acct, "seats", 3, ago(NOW, days=1)))
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()
    result = api.client.application.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0, result.output
    t = api.get(f"/accounts/{acct}/thread").get_json()
    assert (t["state"], t["current_plan"], t["target_plan"]) == ("offered", "starter", "growth"), t
    return acct, who


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_any_message_sequence_upgrades_at_most_once_and_retries_change_nothing(app, api, sequence):
    acct, who = open_thread(api, next(_serial))
    sent: list[tuple[str, str, str]] = []  # (channel, id, text) of every first delivery
    first_answer: dict[tuple[str, str], dict] = {}
    states: list[str | None] = []
    plans: list[str] = []  # the account's plan after each message
    delivered: list[tuple[str, str, bool]] = []  # (channel, id, is a retry) of each message
    for i, (text, channel, retry) in enumerate(sequence):
        earlier = [s for s in sent if s[0] == channel]
        if retry >= REPEAT_FROM and earlier:  # a provider retry: same channel, id and text
            _, msg_id, text = earlier[(retry - REPEAT_FROM) % len(earlier)]
        else:
            msg_id = f"m{i}"
            sent.append((channel, msg_id, text))
        r = api.post(f"/conversations/{who}/messages",
                     json={"channel": channel, "text": text, "id": msg_id})
        assert r.status_code == 200, (i, r.get_json())
        answer = r.get_json()
        key = (channel, msg_id)
        delivered.append((channel, msg_id, key in first_answer))
        if key in first_answer:  # the first answer again, and nothing changed
            assert answer["duplicate"] is True, (i, answer)
            assert answer["replies"] == first_answer[key]["replies"], (i, answer)
        else:
            assert answer["duplicate"] is False, (i, answer)
            first_answer[key] = answer
        states.append(answer["state"])
        plans.append(api.get(f"/accounts/{acct}").get_json()["plan"])

    note(f"final state {states[-1]}" if states[-1] else "ended on a retry")
    note("upgraded" if "upgraded" in states else "not upgraded")
    note("with a retry" if len(sent) < len(sequence) else "no retry")

    # 4. Every state is one of the eight (or null, for a duplicate); nothing live after upgraded.
    assert set(states) <= STATES | {None}, states
    if "upgraded" in states:
        after = states[states.index("upgraded") + 1:]
        assert not LIVE & set(after), states

    engine = app.extensions["upgrade_chat"].engine
    with engine.connect() as conn:
        account_id = conn.scalar(select(AccountRow.id).where(AccountRow.external_id == acct))
        contact_id = conn.scalar(select(ContactRow.id).where(ContactRow.external_id == who))
        changes = conn.execute(select(PlanChangeRow.to_plan)
                               .where(PlanChangeRow.account_id == account_id)).all()
        stored_in = conn.scalar(select(func.count()).select_from(MessageRow).where(
            MessageRow.contact_id == contact_id, MessageRow.direction == "in"))
    t = api.get(f"/accounts/{acct}/thread").get_json()
    plan = api.get(f"/accounts/{acct}").get_json()["plan"]

    # 1. At most one plan change; the account is on Growth iff there is one (and the thread says so).
    assert len(changes) <= 1, changes
    assert (plan == "growth") == bool(changes), (plan, changes)
    if changes:
        assert changes[0].to_plan == "growth"
        assert t["state"] == "upgraded" and t["upgrade"]["to_plan"] == "growth", t["state"]

    # 3. A repeated id adds nothing: one inbound message per distinct (channel, id) sent.
    assert stored_in == len(sent) == len(first_answer), (stored_in, sent)
    log = t["messages"]
    inbound = [j for j, m in enumerate(log) if m["direction"] == "in"]
    assert len(inbound) == len(sent)  # every inbound message went to the account's one thread
    assert [log[j]["body"] for j in inbound] == [s[2] for s in sent]

    # 2. The plan changed only after the confirmation step was shown: an outbound "To confirm:"
    # comes before the inbound message after which the account was on Growth.
    if changes:
        changed_at = plans.index("growth")  # the message (in `sequence`) that changed the plan
        channel, msg_id, retry = delivered[changed_at]
        assert not retry, f"a retried delivery (message {changed_at}) changed the plan"
        confirming = inbound[[(c, m) for c, m, _ in sent].index((channel, msg_id))]
        shown = [j for j, m in enumerate(log[:confirming])
                 if m["direction"] == "out" and "To confirm:" in m["body"]]
        assert shown, [(m["direction"], m["body"][:40]) for m in log]
        assert set(plans[changed_at:]) == {"growth"}, plans  # and it stayed changed
