"""The channel registry as the app uses it: every channel installs its routes and senders, a job
kind or a medium has one sender, and what a CSM or the outbox sends goes to a channel that can
deliver it — the API's relayed voice label never gets a message of ours."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import channels
from app import ConfigError
from channels import Channel, Installed
from core import csm
from storage.models import EscalationRow, MessageRow
from tests.e2e.helpers import account, ago, batch, contact, event

ACME, DANA, PHONE = "acme-dental", "acme-dana", "+13125550142"


@pytest.fixture
def app(make_app):
    return make_app(CONTROL_SHARE="0")


def test_the_csms_follow_up_to_a_relayed_voice_call_goes_by_a_channel_we_deliver_on(app, api):
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[
        contact(DANA, name="Dana", role="billing", phone=PHONE)]))
    assert r.status_code == 201, r.get_json()
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    said = api.post(f"/conversations/{DANA}/messages",
                    json={"channel": "voice", "text": "can I talk to a person", "id": "call-1"})
    assert said.status_code == 200 and said.get_json()["state"] == "escalated", said.get_json()
    rt = app.extensions["upgrade_chat"]
    with rt.engine.connect() as conn:
        escalation_id = conn.scalar(select(EscalationRow.id))
    result = csm.act(rt.uow, rt.settings.channels, escalation_id, csm.Action.CLAIM, "U1", "Sam",
                     "Acme", rt.now())
    assert result.changed
    with rt.engine.connect() as conn:
        follow_up = conn.execute(select(MessageRow.channel, MessageRow.status)
                                 .where(MessageRow.body.like("Sam from Acme%"))).all()
    assert follow_up == [("sms", "queued")]  # not "voice", where it would wait forever


def test_two_channels_cannot_send_the_same_job_kind_or_medium(make_app, monkeypatch):
    registered = channels.modules()

    def again(app, runtime):
        return Installed(messages={"sms": object()})

    monkeypatch.setattr(channels, "modules",
                        lambda: (*registered, Channel("copycat", (), again)))
    with pytest.raises(ConfigError, match="copycat.*sms.*another channel"):
        make_app()
