"""The operator console in a real headless Chromium: sign in, the account list, a search, an
account page with its ledger. With UPGRADE_CHAT_SCREENSHOTS=1 the README's screenshots
(docs/img/console-accounts.png, docs/img/console-account.png, docs/img/console-home.png)
are refreshed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core import operators
from tests.support.browser import chromium, serving
from web.passwords import WerkzeugHasher

pytestmark = pytest.mark.browser

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PASSWORD = "a long console password"


def test_an_operator_signs_in_searches_and_reads_an_account_and_its_ledger(make_app, tmp_path):
    app = make_app(SECRET_KEY="browser-key", DEMO=True)
    rt = app.extensions["upgrade_chat"]
    operators.create_operator(rt.uow(), WerkzeugHasher(), email="dana@ops.example",
                              name="Dana Ops", role="csm", password=PASSWORD, now=rt.now())
    refresh = os.environ.get("UPGRADE_CHAT_SCREENSHOTS") == "1"
    shots = IMG if refresh else tmp_path
    with serving(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(base + "/console/accounts")
        assert "/console/sign-in" in page.url  # no data without signing in
        page.fill("input[name=email]", "dana@ops.example")
        page.fill("input[name=password]", "wrong password here")
        page.click("button[type=submit]")
        assert page.locator("[role=alert]").inner_text() == \
            "That email and password do not match an operator."
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/console/accounts")
        rows = page.locator("#accounts tbody tr")
        assert rows.count() == 6
        page.screenshot(path=str(shots / "console-accounts.png"), full_page=True)
        page.fill("input[name=q]", "clinic")
        page.click("form.filters button")
        page.wait_for_url("**q=clinic**")
        assert rows.count() == 1 and "Acme Family Clinic" in rows.first.inner_text()
        page.click("text=Acme Family Clinic")
        page.wait_for_url(base + "/console/accounts/acme-clinic")
        assert "Growth" in page.locator("#case").inner_text()
        ledger = page.locator("#ledger").inner_text()
        assert "prompted" in ledger and "crossing" in ledger and "message" in ledger
        page.screenshot(path=str(shots / "console-account.png"), full_page=True)
        # The program's figures on the home page are the API's
        page.goto(base + "/console")
        figures = page.locator("#figures")
        api = app.test_client().get("/api/v1/metrics", headers={
            "Authorization": f"Bearer {rt.api_key.read()}"}).get_json()
        shown = figures.locator(".figure").first.inner_text()
        assert "cross-to-upgrade rate" in shown.lower()  # (the title is shown in capitals)
        assert f"treatment {api['converted']['treatment']}/{api['opportunities']['treatment']}" \
            in shown
        assert "too few opportunities" in figures.inner_text()
        assert figures.locator("svg.chart").count() == 4
        page.screenshot(path=str(shots / "console-home.png"), full_page=True)
        page.select_option("select[name=by]", "vertical")
        page.click("form.window button")
        page.wait_for_url("**by=vertical**")
        rows = figures.locator("table.breakdown tr")
        assert rows.count() == 1 + len(app.test_client().get(
            "/api/v1/metrics?by=vertical",
            headers={"Authorization": f"Bearer {rt.api_key.read()}"}).get_json()["groups"])
