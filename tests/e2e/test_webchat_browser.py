"""The web chat widget in a real browser: a host page includes /embed.js with a signed identity,
headless Chromium shows the opening and the case card, and "Upgrade to Growth" → "Confirm upgrade
to Growth" changes the plan once; a down-tier card says "Move to Starter" and what Starter lacks;
the newest message always shows below the header; the card collapses to one line, per thread.

SQLite only, like test_sandbox_browser.py: what this adds over test_webchat.py is the browser. The
clock stays fixed at 2026-11-26T15:00Z. The host page polls fast (data-poll-min/-max) so the test
does not wait for the production pace (3 s backing off to 30 s).
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import pytest
from flask import Response, request
from sqlalchemy import func, select

from channels import webchat
from storage.models import PlanChangeRow
from tests.conftest import Api
from tests.e2e.helpers import account, ago, batch, contact, event
from tests.support.browser import chromium, serving
from tests.support.local_pages import printed_link

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


def new_page(browser, height=760):
    page = browser.new_page(viewport={"width": 1000, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    return page


def crossed_host_page(served, height=760):
    """Dana's account crosses 4,500 messages; the host page is open: (api, page, panel)."""
    app, base_url, browser = served
    api = setup_account(app)
    cross(api)
    page = new_page(browser, height=height)
    page.goto(f"{base_url}/host")
    return api, page, page.locator("#upgrade-chat-widget .panel")


def newest_message_problem(panel) -> str | None:
    """Why the newest message is not in view (its top under the header or outside the log, or
    not even its first line showing), by the bounding boxes; None when it is in view."""
    head = panel.locator(".head").bounding_box()
    log = panel.locator(".log").bounding_box()
    newest = panel.locator(".msg").last.bounding_box()
    if head is None or log is None or newest is None:
        return "not rendered"
    if newest["y"] < head["y"] + head["height"] - 0.5:
        return f"its top {newest['y']:.0f} is under the header (which ends at {head['y'] + head['height']:.0f})"
    if newest["y"] < log["y"] - 0.5:
        return f"its top {newest['y']:.0f} is above the log's top {log['y']:.0f}"
    if newest["y"] + 20 > log["y"] + log["height"]:
        return f"its first line (from {newest['y']:.0f}) is below the log's bottom {log['y'] + log['height']:.0f}"
    return None


def assert_newest_message_visible(panel, timeout=2.0) -> None:
    """The newest message's top shows below the header (checked until `timeout`: a scroll may
    follow a layout change)."""
    deadline = time.monotonic() + timeout
    while (problem := newest_message_problem(panel)) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert problem is None, f"the newest message is hidden: {problem}"


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
    # As conditional as the message ("that month would have cost"), never "You save".
    expect(card).to_contain_text("At your last 30 days of usage, Growth would have cost $499.00 "
                                 "instead of $529.00 ($30.00 less).")
    expect(card).to_contain_text("Upgrading today costs $105.00")
    # The crossing in the vertical's words, as the opening states it.
    expect(card).to_contain_text("4,800 patient messages in the last 30 days")
    expect(card).not_to_contain_text("save")
    expect(card).not_to_contain_text("≥")
    upgrade = panel.get_by_role("button", name="Upgrade to Growth", exact=True)
    # The host's CSS (hotpink 40px buttons) does not reach into the shadow root.
    assert upgrade.evaluate("b => getComputedStyle(b).fontSize") == "14px"
    assert_newest_message_visible(panel)
    # Polls leave the button alone (a button replaced under the pointer swallows a click).
    upgrade.evaluate("b => { b.dataset.kept = '1'; }")
    page.wait_for_timeout(1_000)  # several polls (150-400 ms)
    assert upgrade.evaluate("b => b.dataset.kept") == "1"

    upgrade.click()
    confirm = panel.get_by_role("button", name="Confirm upgrade to Growth", exact=True)
    expect(confirm).to_be_visible()
    expect(panel.locator(".msg.out").last).to_contain_text("$105.00")
    assert api.get(f"/accounts/{ACME}").get_json()["plan"] == "starter"

    # Two clicks in a row: the second does nothing more.
    confirm.evaluate("b => { b.click(); b.click(); }")
    expect(widget).to_have_attribute("data-state", "upgraded")
    expect(panel.locator(".msg.out").last).to_contain_text("Done")
    expect(panel.locator(".actions button")).to_have_count(0)
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
    assert result.exit_code == 0 and "outbox: 1 sent" in result.output, result.output
    r = api.post(f"/conversations/{DANA}/messages",  # answered by SMS, by the service
                 json={"channel": "sms", "text": "what does growth add?", "id": "SM1",
                       "deliver": True})
    assert r.status_code == 200, r.get_json()
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0 and "outbox: 1 sent" in result.output, result.output

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


def setup_down_tier(app) -> Api:
    """A real-estate account on Growth for 60 days whose 900 messages Starter would have served
    for less: a down-tier, like the demo's harbor-realty."""
    api = Api(app.test_client())
    c = contact(DANA, name="Dana", role="billing", web_user_id=USER)
    r = api.put(f"/accounts/{ACME}", json=account(contacts=[c], vertical="real_estate",
                                                  plan="growth", plan_since=ago(days=60)))
    assert r.status_code == 201, r.get_json()
    r = api.post("/usage", json=batch(event("m-1", ACME, "messages", 900, ago(hours=2)),
                                      event("s-1", ACME, "seats", 2, ago(hours=2))))
    assert [s["direction"] for s in r.get_json()["signals"]] == ["down"]
    return api


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_down_tier_card_says_what_starter_lacks_and_its_buttons_say_move_to_starter(served):
    from playwright.sync_api import expect

    app, base_url, browser = served
    api = setup_down_tier(app)
    page = new_page(browser)
    page.goto(f"{base_url}/host")
    widget = page.locator("#upgrade-chat-widget")
    panel = widget.locator(".panel")
    expect(panel).to_be_visible()
    expect(widget).to_have_attribute("data-state", "offered")
    card = panel.locator(".card")
    expect(card).to_contain_text("Growth → Starter")
    expect(card).to_contain_text("Starter does not include workflows or API access.")
    expect(card).to_contain_text("Starter would have cost $149.00 instead of $499.00 ($350.00 less)")
    expect(card).to_contain_text("Nothing is charged today")
    expect(card).not_to_contain_text("save")
    move = panel.get_by_role("button", name="Move to Starter", exact=True)
    expect(move).to_be_visible()
    expect(panel.get_by_role("button", name="Upgrade")).to_have_count(0)  # no "Upgrade" anywhere
    assert_newest_message_visible(panel)

    move.click()
    confirm = panel.get_by_role("button", name="Confirm move to Starter", exact=True)
    expect(confirm).to_be_visible()
    expect(widget).to_have_attribute("data-state", "awaiting_confirmation")
    expect(panel.get_by_role("button", name="Upgrade")).to_have_count(0)
    assert_newest_message_visible(panel)
    confirm.click()
    expect(widget).to_have_attribute("data-state", "upgraded")
    expect(panel.locator(".actions button")).to_have_count(0)
    assert [m["body"] for m in api.get(f"/accounts/{ACME}/thread").get_json()["messages"]
            if m["direction"] == "in"] == ["yes", "confirm"]  # the buttons' texts, as before
    assert api.get(f"/accounts/{ACME}/thread").get_json()["upgrade"]["effective"] == "2026-12-05"
    page.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("height", [760, 480])
def test_the_newest_message_shows_below_the_header_whatever_the_cards_height(served, height):
    """On first open the whole opening is taller than what the card leaves of the log at 480 px:
    its first line shows (not the header over it), and so after the card grows or shrinks."""
    from playwright.sync_api import expect

    api, page, panel = crossed_host_page(served, height)
    expect(panel).to_be_visible()  # opened by itself on the opening
    expect(panel.locator(".card")).to_be_visible()
    assert_newest_message_visible(panel)
    toggle = panel.get_by_role("button", name="Details")
    toggle.click()  # collapsed: the log grows
    expect(toggle).to_have_attribute("aria-expanded", "false")
    assert_newest_message_visible(panel)
    toggle.click()  # expanded again: the log shrinks
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert_newest_message_visible(panel)

    box = panel.get_by_role("textbox", name="Message")
    box.fill("how much would I be charged today?")
    box.press("Enter")
    expect(panel.locator(".msg.out")).to_have_count(2)
    assert_newest_message_visible(panel)  # the answer, not the question above it
    expect(panel.locator(".msg").last).to_contain_text("$105.00")

    # The buyer scrolls up to read: polls do not pull the log back down; a new message does.
    log = panel.locator(".log")
    log.evaluate("l => { l.scrollTop = 0; }")
    page.wait_for_timeout(1_000)  # several polls (150-400 ms)
    assert log.evaluate("l => l.scrollTop") == 0
    box.fill("what does growth add?")
    box.press("Enter")
    expect(panel.locator(".msg.out")).to_have_count(3)
    assert_newest_message_visible(panel)
    page.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_card_collapses_to_one_line_and_the_choice_is_remembered_per_thread(served):
    from playwright.sync_api import expect

    api, page, panel = crossed_host_page(served)
    thread_id = api.get(f"/accounts/{ACME}/thread").get_json()["thread_id"]
    card = panel.locator(".card")
    expect(card).to_be_visible()
    toggle = card.get_by_role("button", name="Details")
    expect(toggle).to_have_attribute("aria-expanded", "true")  # expanded at first
    body = card.locator(".body")
    expect(body).to_be_visible()
    expect(body).to_contain_text("4,800 patient messages in the last 30 days")
    expanded = card.bounding_box()["height"]
    panel_height = panel.bounding_box()["height"]
    assert expanded < panel_height * 0.4, (expanded, panel_height)  # compact, not half the panel

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(body).to_be_hidden()
    heading = card.locator("h4")
    expect(heading).to_have_text("Growth would have cost $30.00 less")  # the one summary line
    line = heading.evaluate("h => parseFloat(getComputedStyle(h).lineHeight)")
    assert heading.bounding_box()["height"] <= line + 1  # one line
    assert card.bounding_box()["height"] < 45
    expect(panel.get_by_role("button", name="Upgrade to Growth", exact=True)).to_be_visible()
    key = "upgrade-chat:acme-clinic:u-dana:collapsed"  # the widget's storage key, per thread
    assert page.evaluate(f"localStorage.getItem('{key}')") == str(thread_id)

    page.reload()  # remembered
    toggle = panel.locator(".card").get_by_role("button", name="Details")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(panel.locator(".card .body")).to_be_hidden()
    toggle.press("Enter")  # a keyboard user expands it again
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(panel.locator(".card .body")).to_be_visible()
    assert page.evaluate(f"localStorage.getItem('{key}')") is None

    # A collapse remembered for another thread does not collapse this one.
    page.evaluate(f"localStorage.setItem('{key}', '{thread_id + 1000}')")
    page.reload()
    expect(panel.locator(".card").get_by_role("button", name="Details")).to_have_attribute(
        "aria-expanded", "true")
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
DOWNTIER_SCREENSHOT = SCREENSHOT.with_name("webchat-downtier.png")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_demo_page_shows_the_demo_clinic_its_whatsapp_thread_and_the_case_card(make_app, tmp_path):
    """What a new user sees at /demo on the embedded service: the demo data, the opening sent by
    WhatsApp (Dana was never seen in the product), and in the widget the same thread and its case;
    and at /demo?account=harbor-realty the down-tier, its opening sent by SMS."""
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

        context = browser.new_context(viewport={"width": 1100, "height": 860})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(printed_link(app, "/demo", base_url))  # the link scripts/serve prints
        assert page.url == f"{base_url}/demo"
        expect(page.locator("header")).to_contain_text("Dana Reyes")
        widget = page.locator("#upgrade-chat-widget")
        expect(widget).to_have_attribute("data-state", "offered")
        panel = widget.locator(".panel")
        expect(panel).to_be_visible()  # an opening Dana has not answered anywhere: it opens itself
        expect(panel.locator(".msg.out[data-kind=opening]")).to_contain_text("via WhatsApp")
        card = panel.locator(".card")
        expect(card).to_contain_text("Starter → Growth")
        expect(card).to_contain_text("$105.00")
        expect(card).to_contain_text("4,800 patient messages in the last 30 days")
        expect(panel.get_by_role("button", name="Upgrade to Growth", exact=True)).to_be_visible()
        assert_newest_message_visible(panel)

        shot = SCREENSHOT if os.environ.get("UPGRADE_CHAT_SCREENSHOTS") == "1" else tmp_path / "demo.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.close()

        # The down-tier demo account: its opening went by SMS (sent by the jobs run above).
        # A new page of the same browser: signed in already.
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base_url}/demo?account=harbor-realty")
        expect(page.locator("header")).to_contain_text("Sam Ortiz")
        widget = page.locator("#upgrade-chat-widget")
        expect(widget).to_have_attribute("data-state", "offered")
        panel = widget.locator(".panel")
        expect(panel).to_be_visible()
        expect(panel.locator(".msg.out[data-kind=opening]")).to_contain_text("via SMS")
        card = panel.locator(".card")
        expect(card).to_contain_text("Growth → Starter")
        expect(card).to_contain_text("Starter does not include workflows or API access.")
        expect(panel.get_by_role("button", name="Move to Starter", exact=True)).to_be_visible()
        expect(panel.get_by_role("button", name="Upgrade")).to_have_count(0)
        assert_newest_message_visible(panel)
        shot = DOWNTIER_SCREENSHOT if os.environ.get("UPGRADE_CHAT_SCREENSHOTS") == "1" \
            else tmp_path / "downtier.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.close()
