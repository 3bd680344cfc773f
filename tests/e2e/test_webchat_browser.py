"""The web chat widget in a real browser: a host page includes /embed.js with a signed identity,
headless Chromium shows the opening and the case card, and Upgrade → Confirm changes the plan once.

SQLite only, like test_sandbox_browser.py: what this adds over test_webchat.py is the browser. The
clock stays fixed at 2026-11-26T15:00Z. The host page polls fast (data-poll-min/-max) so the test
does not wait for the production pace (3 s backing off to 30 s).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pytest
from flask import Response, request
from sqlalchemy import func, select

from channels import webchat
from storage.models import PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, event
from tests.support.browser import chromium, serving

pytestmark = pytest.mark.browser

SECRET = "s3cret"
ACME, DANA, USER, PHONE = "acme-clinic", "acme-dana", "u-dana", "+13125550142"
TIMEOUT_MS = 5_000

HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Host SaaS</title>
<style>button{{background:hotpink!important;font-size:40px!important}} div{{color:red}}</style>
</head><body><h1>Dashboard</h1>
<script src="/embed.js" data-user-id="{user}" data-account="{account}" data-user-hash="{hash}"
        data-poll-min="150" data-poll-max="400"></script></body></html>"""


def host_page():
    """A host product's page for ?user=&account= (signed here), or with a given ?hash=."""
    user = request.args.get("user", USER)
    acct = request.args.get("account", ACME)
    signed = request.args.get("hash") or webchat.user_hash(SECRET, user)
    return Response(HOST_PAGE.format(user=html.escape(user), account=html.escape(acct),
                                     hash=html.escape(signed)), mimetype="text/html")


@pytest.fixture
def served(make_app):
    """(app, base_url, browser): the app on a real port with web chat and the host page."""
    built = []

    def build(base_url: str):
        app = make_app(CONTROL_SHARE="0", WEB_CHAT_SECRET=SECRET, PUBLIC_BASE_URL=base_url,
                       BUSINESS_NAME="Acme Billing")
        app.add_url_rule("/host", "test_host_page", host_page)
        built.append(app)
        return app

    with chromium() as browser, serving(build=build) as base_url:
        yield built[0], base_url, browser


def setup_account(app, phone=None) -> Api:
    api = Api(app.test_client())
    c = contact(DANA, name="Dana", role="billing", web_user_id=USER)
    if phone:
        c["phone"] = phone
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[c], vertical="healthcare"))
    assert r.status_code == 201, r.get_json()
    return api


def cross(api) -> None:
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_json()


def plan_changes(app) -> int:
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(PlanChangeRow))


def new_page(browser):
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_crossing_opens_the_widget_with_the_case_and_upgrade_confirm_changes_the_plan_once(served):
    from playwright.sync_api import expect

    app, base_url, browser = served
    api = setup_account(app)
    page = new_page(browser)
    statuses = []
    page.on("response", lambda r: "/webchat/v1/" in r.url and statuses.append(r.status))
    page.goto(f"{base_url}/host")
    widget = page.locator("#upgrade-chat-widget")
    expect(widget).to_have_attribute("data-state", "none")  # polled: Dana is in the product
    panel = widget.locator(".panel")
    expect(panel).to_be_hidden()

    cross(api)  # Dana is active in the product: the opening goes to web chat
    assert api.get(f"/accounts/{ACME}/thread").get_json()["last_channel"] == "web"
    expect(panel).to_be_visible()  # opened by itself
    expect(widget).to_have_attribute("data-state", "offered")
    expect(panel.locator(".msg.out[data-kind=opening]")).to_have_count(1)
    card = panel.locator(".card")
    expect(card).to_contain_text("Starter → Growth")
    expect(card).to_contain_text("$529.00/mo")
    expect(card).to_contain_text("$499.00/mo")
    expect(card).to_contain_text("You save")
    expect(card).to_contain_text("$30.00/mo")
    expect(card).to_contain_text("$105.00")
    expect(card).to_contain_text("messages 4,800 ≥ 4,500")
    upgrade = panel.get_by_role("button", name="Upgrade")
    # The host's CSS (hotpink 40px buttons) does not reach into the shadow root.
    assert upgrade.evaluate("b => getComputedStyle(b).fontSize") == "14px"

    upgrade.click()
    confirm = panel.get_by_role("button", name="Confirm")
    expect(confirm).to_be_visible()
    expect(panel.locator(".msg.out").last).to_contain_text("$105.00")
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "starter"

    # Two clicks in a row: the second does nothing more.
    confirm.evaluate("b => { b.click(); b.click(); }")
    expect(widget).to_have_attribute("data-state", "upgraded")
    expect(panel.locator(".msg.out").last).to_contain_text("Done")
    expect(panel.get_by_role("button", name="Confirm")).to_have_count(0)
    expect(panel.locator(".card")).to_have_count(0)
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "growth"
    assert plan_changes(app) == 1
    assert [m["body"] for m in api.get(f"/accounts/{ACME}/thread").get_json()["messages"]
            if m["direction"] == "in"] == ["yes", "confirm"]
    assert statuses and set(statuses) == {200}
    page.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_reply_typed_in_the_widget_continues_a_thread_started_by_sms(served):
    from playwright.sync_api import expect

    app, base_url, browser = served
    api = setup_account(app, phone=PHONE)
    cross(api)  # not seen in the product: the opening goes by SMS
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0 and "messages: 1 sent" in result.output, result.output
    r = api.post(f"/conversations/{DANA}/messages",
                 json={"channel": "sms", "text": "what does growth add?", "id": "SM1"})
    assert r.status_code == 200, r.get_json()

    page = new_page(browser)
    page.goto(f"{base_url}/host")
    widget = page.locator("#upgrade-chat-widget")
    expect(widget).to_have_attribute("data-state", "offered")
    panel = widget.locator(".panel")
    expect(panel).to_be_hidden()  # already answered by SMS: it does not pop open again
    widget.locator(".launcher").click()
    expect(panel.locator(".msg[data-channel=sms]")).to_have_count(3)
    expect(panel.locator(".msg.in").first).to_contain_text("what does growth add?")
    expect(panel.locator(".msg.in").first).to_contain_text("via SMS")

    box = panel.get_by_role("textbox", name="Message")
    box.fill("yes")
    box.press("Enter")
    expect(panel.locator(".msg.in[data-channel=web]")).to_have_text("yes")
    expect(widget).to_have_attribute("data-state", "awaiting_confirmation")
    expect(panel.locator(".msg.out[data-channel=web]").last).to_contain_text("$105.00")
    detail = api.get(f"/accounts/{ACME}/thread").get_json()
    assert detail["state"] == "awaiting_confirmation"
    assert detail["last_channel"] == "web"
    assert len({m["channel"] for m in detail["messages"]}) == 2  # one thread, two channels
    page.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_page_with_a_forged_user_hash_gets_nothing(served):
    from playwright.sync_api import expect

    app, base_url, browser = served
    api = setup_account(app)
    cross(api)
    page = new_page(browser)
    statuses = []
    page.on("response", lambda r: "/webchat/v1/" in r.url and statuses.append(r.status))
    with page.expect_response(lambda r: "/webchat/v1/thread" in r.url) as first:
        page.goto(f"{base_url}/host?hash={'ab' * 32}")
    assert first.value.status == 403
    forged = {"X-User-Id": USER, "X-Account": ACME, "X-User-Hash": "ab" * 32}
    again = page.request.get(f"{base_url}/webchat/v1/thread", headers=forged)
    assert again.status == 403 and again.json() == {"error": {
        "code": "forbidden", "message": "invalid user hash"}}
    widget = page.locator("#upgrade-chat-widget")
    expect(widget).to_have_attribute("data-state", "forbidden")
    widget.locator(".launcher").click()
    panel = widget.locator(".panel")
    box = panel.get_by_role("textbox", name="Message")
    box.fill("yes")
    box.press("Enter")
    page.wait_for_timeout(600)  # several poll intervals: a refused widget stops polling
    expect(panel.locator(".msg")).to_have_count(0)
    expect(panel.locator(".card")).to_have_count(0)
    assert statuses and set(statuses) == {403}
    detail = api.get(f"/accounts/{ACME}/thread").get_json()
    assert detail["state"] == "open"  # the queued web opening was not delivered
    assert [m["direction"] for m in detail["messages"]] == ["out"]
    page.close()


# The README's screenshot of the widget; refreshed only on request (UPGRADE_CHAT_SCREENSHOTS=1), so
# a test run never changes the checkout.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "webchat-demo.png"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_demo_page_shows_the_demo_clinic_its_whatsapp_thread_and_the_case_card(make_app, tmp_path):
    """What a new user sees at /demo on the embedded service: the demo data, the opening sent by
    WhatsApp (Dana was never seen in the product), and in the widget the same thread and its case."""
    from playwright.sync_api import expect

    built = []

    def build(base_url: str):
        app = make_app(WEB_CHAT_SECRET=SECRET, PUBLIC_BASE_URL=base_url, DEMO=True,
                       BUSINESS_NAME="Acme Billing")
        built.append(app)
        return app

    with chromium() as browser, serving(build=build) as base_url:
        app = built[0]
        api = Api(app.test_client())
        assert api.get("/accounts/acme-clinic/thread").get_json()["last_channel"] == "whatsapp"
        result = app.test_cli_runner().invoke(args=["jobs", "run"])
        assert result.exit_code == 0, result.output

        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base_url}/demo")
        expect(page.locator("header")).to_contain_text("Dana Reyes")
        widget = page.locator("#upgrade-chat-widget")
        expect(widget).to_have_attribute("data-state", "offered")
        panel = widget.locator(".panel")
        expect(panel).to_be_visible()  # an opening Dana has not answered anywhere: it opens itself
        expect(panel.locator(".msg.out[data-kind=opening]")).to_contain_text("via WhatsApp")
        card = panel.locator(".card")
        expect(card).to_contain_text("Starter → Growth")
        expect(card).to_contain_text("$105.00")
        expect(panel.get_by_role("button", name="Upgrade")).to_be_visible()

        shot = SCREENSHOT if os.environ.get("UPGRADE_CHAT_SCREENSHOTS") == "1" else tmp_path / "demo.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.close()
