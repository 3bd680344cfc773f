"""The sandbox phone's calls in a real browser: headless Chromium calls the business from a
buyer's phone, answers the call the service placed after the buyer texted "call me", presses
keys and "speaks" by typing; each step is a Twilio-signed form to the production voice webhooks
(devtools/call_panel.py), and the TwiML they answer is what the page shows.

SQLite only, the clock fixed at 2026-11-26T15:00Z (09:00 in Chicago, inside the hours calls may
be placed). With UPGRADE_CHAT_SCREENSHOTS=1 the call panel's screenshot for the docs is
refreshed (docs/img/sandbox-call-panel.png); a plain run never changes the checkout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from channels import webchat
from storage.models import PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import ago, batch, contact, event
from tests.support.browser import chromium, serving
from tests.support.local_pages import printed_link

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

ACME, DANA, PHONE, USER = "acme", "acme-dana", "+13125550142", "u-dana"
WEB_SECRET = "web-s3cret"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "sandbox-call-panel.png"
TIMEOUT_MS = 5_000


def setup_account(app) -> Api:
    """Acme on Starter; Dana (billing) with a phone and a web login; 4,800 messages in 8 days and
    3 seats, so she is offered Growth; the opening sent by SMS."""
    api = Api(app.test_client())
    r = api.put(f"/accounts/{ACME}", json={
        "name": "Acme", "plan": "starter", "timezone": "America/Chicago", "billing_day": 5,
        "contacts": [contact(DANA, name="Dana", role="billing", phone=PHONE,
                             web_user_id=USER)]})
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    events.append(event("seats", ACME, "seats", 3, ago(days=1)))
    assert api.post("/usage", json=batch(*events)).status_code == 200
    assert dispatch(app).sent == 1  # the opening, by SMS
    return api


def dispatch(app):
    """The scheduler's pass over the outbox: what is due is sent (or, for a call, placed)."""
    with app.app_context():
        return app.extensions["upgrade_chat"].dispatcher.dispatch_due()


def thread(api) -> dict:
    return api.get(f"/accounts/{ACME}/thread").get_json()


def plan_changes(app) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(PlanChangeRow))


@pytest.fixture
def served(make_app):
    """(browser page on /sandbox/phone, the app, its API, Dana's phone) with Dana offered
    Growth; the app served on a real port, the browser signed in by the printed link."""
    built = []

    def build(base_url: str):
        app = make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme Billing", PUBLIC_BASE_URL=base_url,
                       WEB_CHAT_SECRET=WEB_SECRET)
        built.append(app)
        return app

    with chromium() as browser, serving(build=build) as base_url:
        app = built[0]
        api = setup_account(app)
        page = browser.new_page(viewport={"width": 420, "height": 720})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(printed_link(app, "/sandbox/phone", base_url))
        assert page.url == f"{base_url}/sandbox/phone"
        yield page, app, api, page.locator(f"#{DANA}-sms")
        page.close()


def heard(panel) -> str:
    return " ".join(panel.locator(".said li.voice").all_inner_texts())


def press(panel, key: str) -> None:
    """Press a key on the call's keypad and wait for the voice's answer to it."""
    before = panel.locator(".said li").count()
    panel.locator(f".keypad button[data-key='{key}']").click()
    _answered(panel, before)


def speak(panel, words: str) -> None:
    before = panel.locator(".said li").count()
    panel.locator(".speak input").fill(words)
    panel.get_by_role("button", name="Say").click()
    _answered(panel, before)


def _answered(panel, before: int) -> None:
    from playwright.sync_api import expect

    # Our words, then at least one line of the voice (or the call's end).
    expect(panel.locator(".said li")).not_to_have_count(before)
    expect(panel.locator(".said li")).not_to_have_count(before + 1)
    expect(panel.locator(".keypad button").first).to_be_enabled()


def test_a_buyer_calls_the_business_hears_the_offer_and_upgrades_with_two_presses_of_1(served):
    from playwright.sync_api import expect

    page, app, api, phone = served
    panel = phone.locator(".call")
    expect(panel).to_be_hidden()
    phone.get_by_role("button", name="Call the business").click()
    expect(panel).to_be_visible()
    expect(panel.locator(".said li.voice").first).to_contain_text("$499.00")
    greeting = heard(panel)
    assert "Acme Billing" in greeting and "$529.00" in greeting and "Press 1" in greeting

    press(panel, "1")
    step = panel.locator(".said li.voice").last
    expect(step).to_contain_text("To confirm: Growth at $499.00 a month")
    expect(step).to_contain_text("$105.00 charged today")
    assert thread(api)["state"] == "awaiting_confirmation" and plan_changes(app) == 0

    press(panel, "1")
    expect(panel.locator(".said li.sys").last).to_have_text("Call ended")
    done = panel.locator(".said li.voice").last.inner_text()
    assert "Growth" in done and "Goodbye" in done
    expect(panel.locator(".keypad")).to_be_hidden()  # the call is over: no keys to press

    t = thread(api)
    assert t["state"] == "upgraded" and t["upgrade"]["to_plan"] == "growth"
    assert t["upgrade"]["channel"] == "voice"
    assert plan_changes(app) == 1
    assert t["calls"] == []  # an inbound call books nothing


def test_an_upgrade_started_in_the_widget_is_confirmed_by_pressing_1_on_a_call(served):
    """The issue's headline: one thread across channels — "yes" in the web widget reads the
    confirmation step; the buyer then calls, hears the step again, and 1 confirms it."""
    from playwright.sync_api import expect

    page, app, api, phone = served
    widget = {"X-User-Id": USER, "X-Account": ACME,
              "X-User-Hash": webchat.user_hash(WEB_SECRET, USER)}
    r = app.test_client().post("/webchat/v1/messages", headers=widget,
                               json={"text": "yes, let's upgrade", "id": "w-1"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert thread(api)["state"] == "awaiting_confirmation" and plan_changes(app) == 0

    panel = phone.locator(".call")
    phone.get_by_role("button", name="Call the business").click()
    expect(panel.locator(".said li.voice").first).to_contain_text("To confirm: Growth")
    press(panel, "1")
    expect(panel.locator(".said li.sys").last).to_have_text("Call ended")
    t = thread(api)
    assert t["state"] == "upgraded" and t["upgrade"]["channel"] == "voice"
    assert plan_changes(app) == 1
    channels = [m["channel"] for m in t["messages"] if m["direction"] == "in"]
    assert "web" in channels and "voice" in channels, channels


def test_call_me_by_sms_rings_the_phone_the_buyer_answers_and_hears_the_case(served, tmp_path):
    from playwright.sync_api import expect

    page, app, api, phone = served
    box = phone.locator("input[name=body]")
    box.fill("call me")
    with page.expect_navigation(url=re.compile(r"/sandbox/phone(#.*)?$")):
        phone.get_by_role("button", name="Send").click()
    expect(phone.locator(".msg.out").last).to_contain_text("will ring you at 9:00 AM")
    [call] = thread(api)["calls"]
    assert call["status"] == "scheduled"

    assert dispatch(app).sent == 1  # the scheduler's pass places the call
    [call] = thread(api)["calls"]
    assert call["status"] == "ringing" and call["provider_id"].startswith("CA")

    panel = phone.locator(".call")
    expect(panel).to_be_visible(timeout=6_000)  # the page's next reload shows it ringing
    expect(panel.locator(".ringing")).to_contain_text("Acme Billing is calling you back")
    panel.get_by_role("button", name="Answer", exact=True).click()
    gate = panel.locator(".said li.voice").first
    expect(gate).to_contain_text("calling you back as you asked")
    assert "$" not in gate.inner_text()  # nothing about the account before someone answers
    assert thread(api)["calls"][0]["status"] == "in_progress"

    press(panel, "1")
    expect(panel.locator(".said li.voice").last).to_contain_text("$499.00")
    speak(panel, "yes")
    expect(panel.locator(".said li.you").last).to_have_text("You said: yes")
    expect(panel.locator(".said li.voice").last).to_contain_text("To confirm: Growth")
    assert thread(api)["state"] == "awaiting_confirmation"

    page.wait_for_timeout(4_500)  # past the page's 4-second reload: the call must survive it
    expect(panel.locator(".said li.voice").last).to_contain_text("To confirm: Growth")
    shot = SCREENSHOT if os.environ.get("UPGRADE_CHAT_SCREENSHOTS") == "1" \
        else tmp_path / "call.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    panel.get_by_role("button", name="Hang up").click()
    expect(panel.locator(".said li.sys").last).to_have_text("Call ended")
    assert thread(api)["calls"][0]["status"] == "completed"
    assert plan_changes(app) == 0


def test_a_declined_call_is_reported_unanswered_and_tried_again_later(served):
    from playwright.sync_api import expect

    page, app, api, phone = served
    phone.locator("input[name=body]").fill("call me")
    with page.expect_navigation(url=re.compile(r"/sandbox/phone(#.*)?$")):
        phone.get_by_role("button", name="Send").click()
    assert dispatch(app).sent == 1
    page.reload()
    panel = phone.locator(".call")
    panel.get_by_role("button", name="Decline").click()
    expect(panel.locator(".said li.sys").last).to_contain_text("Declined")
    first, retry = thread(api)["calls"]
    assert first["status"] == "no_answer"
    assert retry["status"] == "scheduled" and retry["reason"] == "retry"


def test_voicemail_answers_a_placed_call_and_hears_no_figures(served):
    from playwright.sync_api import expect

    page, app, api, phone = served
    phone.locator("input[name=body]").fill("call me")
    with page.expect_navigation(url=re.compile(r"/sandbox/phone(#.*)?$")):
        phone.get_by_role("button", name="Send").click()
    assert dispatch(app).sent == 1
    page.reload()
    panel = phone.locator(".call")
    panel.get_by_role("button", name="Let voicemail answer").click()
    expect(panel.locator(".said li.sys").last).to_have_text("Voicemail: call ended")
    machine = panel.locator(".said li.machine").last
    expect(machine).to_contain_text("we will send you a text")
    assert "$" not in " ".join(panel.locator(".said li").all_inner_texts())
    assert thread(api)["calls"][0]["status"] == "machine"
    assert app.extensions["twilio_voice_control"].redirects == {}  # followed, and gone
