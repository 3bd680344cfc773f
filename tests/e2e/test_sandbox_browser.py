"""The sandbox phone in a real browser: the app served on a real port, headless Chromium typing the
buyer's replies, from the opening to the upgrade (tests/e2e/test_sandbox.py does the same through
Flask's test client).

Runs on SQLite only: what it adds over test_sandbox.py is the browser, not the database. The clock
stays fixed at 2026-11-26T15:00Z (09:00 in Chicago, inside the hours messages may go out).
"""

from __future__ import annotations

import os

import re
from pathlib import Path

import pytest

from tests.conftest import API_KEY, Api
from tests.e2e.helpers import ago, batch, contact, event
from tests.support.browser import chromium, serving
from tests.support.local_pages import printed_link

pytestmark = pytest.mark.browser

ACME, DANA, PHONE = "acme", "acme-dana", "+13125550142"
# The README's screenshot; refreshed only on request (UPGRADE_CHAT_SCREENSHOTS=1), so a test run
# never changes the checkout.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "sandbox-phone.png"
TIMEOUT_MS = 5_000


def setup_account(app) -> Api:
    """Acme on Starter, Dana its billing contact with a phone, and 4,800 messages in 8 days."""
    api = Api(app.test_client())
    r = api.put(f"/accounts/{ACME}", json={
        "name": "Acme", "plan": "starter", "timezone": "America/Chicago", "billing_day": 5,
        "contacts": [contact(DANA, name="Dana", role="billing", phone=PHONE)]})
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    r = api.post("/usage", json=batch(*events))
    assert r.status_code == 200, r.get_data(as_text=True)
    return api


def run_jobs(app) -> str:
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0, result.output
    return result.output


def reply(page, phone, text: str) -> None:
    """Type `text` on the phone and press Send; wait for the redirect back to the phone page."""
    box = phone.locator("input[name=body]")
    box.fill(text)  # a focused input with text stops the page's 4-second reload
    with page.expect_navigation(url=re.compile(r"/sandbox/phone(#.*)?$"), timeout=TIMEOUT_MS):
        phone.get_by_role("button", name="Send").click()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_buyer_upgrades_by_typing_on_the_sandbox_phone_in_a_browser(make_app, tmp_path):
    from playwright.sync_api import expect

    built = []

    def build(base_url: str):
        app = make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme Billing", PUBLIC_BASE_URL=base_url)
        built.append(app)
        return app

    with chromium() as browser, serving(build=build) as base_url:
        app = built[0]
        api = setup_account(app)
        assert "outbox: 1 sent" in run_jobs(app)

        page = browser.new_page(viewport={"width": 420, "height": 720})
        page.set_default_timeout(TIMEOUT_MS)
        # What a new user does: click the link scripts/serve printed; it signs this browser in
        # and lands on the page, the token gone from the address bar.
        page.goto(printed_link(app, "/sandbox/phone", base_url))
        assert page.url == f"{base_url}/sandbox/phone"
        phone = page.locator(f"#{DANA}-sms")
        expect(phone.locator(".top")).to_contain_text("Dana · SMS")
        expect(phone.locator(".top")).to_contain_text(PHONE)
        opening = phone.locator(".msg.out").first
        expect(opening).to_contain_text("$529.00")
        expect(opening).to_have_attribute("data-status", "sent")

        reply(page, phone, "how much would I be charged today?")
        expect(phone.locator(".msg.in").last).to_have_text("how much would I be charged today?")
        expect(phone.locator(".msg.out").last).to_contain_text("$105.00")

        reply(page, phone, "yes")
        expect(phone.locator(".msg.out").last).to_contain_text("Reply CONFIRM")

        reply(page, phone, "confirm")
        expect(phone.locator(".msg.out").last).to_contain_text("Done")

        # The JSON API, over the same real HTTP server, agrees.
        r = page.request.get(f"{base_url}/api/v1/accounts/{ACME}",
                             headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.ok, r.text()
        assert r.json()["plan"] == "growth"
        assert api.get(f"/accounts/{ACME}/thread").get_json()["state"] == "upgraded"

        shot = SCREENSHOT if os.environ.get("UPGRADE_CHAT_SCREENSHOTS") == "1" else tmp_path / "phone.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.close()
