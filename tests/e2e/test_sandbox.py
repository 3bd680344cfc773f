"""The sandbox phone: without Twilio, openings are stored and shown on a local page, and replies
typed there go through the same signed /twilio/messaging path as production."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import ConfigError, create_app
from storage.models import MessageRow
from tests.conftest import Api
from tests.e2e.helpers import ago, batch, contact, event

ACME, DANA = "acme", "acme-dana"


@pytest.fixture
def app(make_app):
    return make_app(CONTROL_SHARE="0", BUSINESS_NAME="Acme Billing")


def setup(app):
    api = Api(app.test_client())
    api.put(f"/accounts/{ACME}", json={
        "name": "Acme", "plan": "starter", "timezone": "America/Chicago", "billing_day": 5,
        "contacts": [contact(DANA, name="Dana", role="billing", phone="+13125550142")]})
    events = [event(f"m{i}", ACME, "messages", 600, ago(days=7 - i)) for i in range(8)]
    assert api.post("/usage", json=batch(*events)).status_code == 200
    return api


def jobs(app):
    result = app.test_cli_runner().invoke(args=["jobs", "run"])
    assert result.exit_code == 0, result.output
    return result.output


def local(app, **kw):
    """A test client signed in to the local pages by the link scripts/serve prints."""
    from tests.support.local_pages import signed_in

    return signed_in(app, **kw)


def test_the_opening_appears_on_the_sandbox_phone_once_the_jobs_run(app):
    setup(app)
    client = local(app)
    waiting = client.get("/sandbox/phone").get_data(as_text=True)
    assert 'data-status="queued"' in waiting  # in the outbox, shown as waiting
    assert "outbox: 1 sent" in jobs(app)
    page = client.get("/sandbox/phone").get_data(as_text=True)
    assert "$529.00" in page and 'data-status="sent"' in page and 'data-status="queued"' not in page


def test_the_sandbox_phone_shows_the_twilio_media_only(app):
    """SMS and WhatsApp, the media this page stands in for; not the API's relayed voice label,
    which also reaches a phone number but is never sent by the service."""
    api = setup(app)
    api.put(f"/accounts/{ACME}", json={
        "name": "Acme", "plan": "starter", "timezone": "America/Chicago", "billing_day": 5,
        "contacts": [contact(DANA, name="Dana", role="billing", phone="+13125550142",
                             whatsapp="+13125550142")]})
    page = local(app).get("/sandbox/phone").get_data(as_text=True)
    assert "Dana · SMS" in page and "Dana · WHATSAPP" in page
    # No phone of its own for voice: calls ring on the SMS phone (devtools/call_panel.py).
    assert 'data-medium="voice"' not in page and "· VOICE" not in page.upper()


def test_a_reply_typed_on_the_sandbox_phone_advances_the_thread(app):
    api = setup(app)
    jobs(app)
    client = local(app)
    r = client.post("/sandbox/phone/send", data={"medium": "sms", "number": "+13125550142",
                                                 "body": "how much would I be charged today?"})
    assert r.status_code == 302
    client.post("/sandbox/phone/send", data={"medium": "sms", "number": "+13125550142",
                                             "body": "yes"})
    thread = api.get(f"/accounts/{ACME}/thread").get_json()
    assert thread["state"] == "awaiting_confirmation"
    page = client.get("/sandbox/phone").get_data(as_text=True)
    assert "$105.00" in page and "Reply CONFIRM" in page


def test_the_sandbox_pages_exist_only_without_a_twilio_account(make_app):
    app = make_app(TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN="t",
                   TWILIO_SMS_FROM="+15005550006", PUBLIC_BASE_URL="https://chat.example.com")
    client = app.test_client()
    for page in ("/sandbox/phone", "/sandbox/csm", "/demo"):  # a production app without Slack
        assert client.get(page).status_code == 404, page
    assert "sandbox_csm" not in app.blueprints


@pytest.mark.parametrize("missing", ["TWILIO_AUTH_TOKEN", "TWILIO_SMS_FROM", "PUBLIC_BASE_URL"])
def test_a_twilio_account_without_its_token_number_or_url_refuses_to_start(db_url, missing):
    config = {"DATABASE_URL": db_url, "API_KEY": "k", "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
              "TWILIO_AUTH_TOKEN": "t", "TWILIO_SMS_FROM": "+15005550006",
              "PUBLIC_BASE_URL": "https://chat.example.com"}
    config[missing] = None
    with pytest.raises(ConfigError, match=missing):
        create_app(config)


def test_the_sandbox_page_answers_only_on_this_machine(app):
    client = local(app)
    assert client.get("/sandbox/phone").status_code == 200
    remote = client.get("/sandbox/phone", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 404
    sent = client.post("/sandbox/phone/send", data={"medium": "sms", "number": "+13125550142",
                                                    "body": "yes"},
                       environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert sent.status_code == 404


def sent_bodies(app) -> list[str]:
    """Every message stored: a refused request must store none."""
    with app.extensions["upgrade_chat"].engine.connect() as conn:
        return list(conn.scalars(select(MessageRow.body)))


PAGES = [("get", "/sandbox/phone", {}), ("get", "/sandbox/csm", {}), ("get", "/demo", {}),
         ("post", "/sandbox/phone/send", {"medium": "sms", "number": "+13125550142", "body": "yes"}),
         ("post", "/sandbox/csm/1", {"action": "claim", "csm": "Mallory"})]


@pytest.mark.parametrize("method, path, form", PAGES, ids=[f"{m}{p}" for m, p, _ in PAGES])
@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "203.0.113.9"},  # through a reverse proxy on this host
    {"Forwarded": "for=203.0.113.9"},
    {"X-Real-IP": "203.0.113.9"},
    {"Host": "evil.example"},  # DNS rebinding: a page on another site, resolved to 127.0.0.1
    {"Host": "evil.example:5000"},
], ids=["x-forwarded-for", "forwarded", "x-real-ip", "rebound-host", "rebound-host-port"])
def test_local_pages_refuse_proxied_and_rebound_requests(app, method, path, form, headers):
    client = local(app)  # signed in: the headers alone must refuse it
    r = getattr(client, method)(path, data=form or None, headers=headers)
    assert r.status_code == 404, r.get_data(as_text=True)
    assert sent_bodies(app) == []


@pytest.mark.parametrize("method, path, form", [p for p in PAGES if p[0] == "post"],
                         ids=["phone-send", "csm-act"])
@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
], ids=["fetch-cross-site", "fetch-same-site", "foreign-origin", "null-origin"])
def test_local_pages_refuse_a_cross_site_post(app, method, path, form, headers):
    r = local(app).post(path, data=form, headers=headers)
    assert r.status_code == 403 and "cross-site" in r.get_data(as_text=True)
    assert sent_bodies(app) == []


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:5000"},
    {"Host": "localhost:5000", "Origin": "http://localhost:5000"}, {"Host": "[::1]:5000"},
], ids=["no-browser-headers", "same-origin", "localhost", "ipv6"])
def test_local_pages_serve_their_own_posts(app, headers):
    host = {"Host": headers["Host"]} if "Host" in headers else {}
    r = local(app, headers=host).post("/sandbox/phone/send", headers=headers,
                               data={"medium": "sms", "number": "+13125550142", "body": "hi"})
    assert r.status_code == 302


def test_local_pages_may_not_be_framed_by_another_site(app):
    client = local(app)
    for path in ("/sandbox/phone", "/sandbox/csm"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_a_dual_stack_loopback_peer_is_local(app):
    r = local(app).get("/sandbox/phone", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"})
    assert r.status_code == 200


@pytest.mark.parametrize("anchor", ["x\r\nSet-Cookie: a=b", "dana-sms\n", "ok-anchor"])
def test_the_phones_anchor_never_breaks_the_redirect(app, anchor):
    setup(app)
    r = local(app).post("/sandbox/phone/send", data={
        "medium": "sms", "number": "+13125550142", "body": "hi", "anchor": anchor})
    assert r.status_code == 302
    location = r.headers["Location"]
    assert "\r" not in location and "\n" not in location and "Set-Cookie" not in r.headers


# --- the local token: what decides "this machine" (devtools/local.py) ----------------------------

LOCAL_PAGES = ("/sandbox/phone", "/sandbox/csm", "/demo")
# What nginx's `proxy_pass http://127.0.0.1:5000;` with `proxy_set_header Host 127.0.0.1:5000;`
# and no X-Forwarded-* passes on for a remote visitor: exactly what a local browser sends.
PROXIED = {"headers": {"Host": "127.0.0.1:5000"}, "environ_base": {"REMOTE_ADDR": "127.0.0.1"}}


@pytest.mark.parametrize("path", LOCAL_PAGES)
def test_a_request_through_a_reverse_proxy_on_this_host_without_the_cookie_is_not_found(app, path):
    r = app.test_client().get(path, **PROXIED)
    assert r.status_code == 404, r.get_data(as_text=True)[:200]
    assert "Set-Cookie" not in r.headers


def test_a_post_without_the_cookie_stores_nothing(app):
    setup(app)
    before = sent_bodies(app)
    r = app.test_client().post("/sandbox/phone/send", data={
        "medium": "sms", "number": "+13125550142", "body": "yes"}, **PROXIED)
    assert r.status_code == 404
    assert sent_bodies(app) == before


@pytest.mark.parametrize("path", LOCAL_PAGES)
def test_the_printed_link_sets_the_cookie_and_redirects_to_the_clean_url(app, path):
    from devtools.local import cookie_name
    from tests.support.local_pages import printed_link

    link = printed_link(app, path)
    token = link.split("token=", 1)[1]
    client = app.test_client()
    r = client.get(link, **PROXIED)
    assert r.status_code == 303
    assert r.headers["Location"] == path  # the token leaves the address bar
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{cookie_name(token)}={token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = client.get(path, **PROXIED)  # the browser follows, sending the cookie
    assert page.status_code == 200, page.get_data(as_text=True)[:200]


def test_the_link_keeps_the_rest_of_the_query(app):
    from tests.support.local_pages import printed_link

    link = printed_link(app, "/demo").replace("?", "?account=harbor-realty&")
    r = app.test_client().get(link)
    assert (r.status_code, r.headers["Location"]) == (303, "/demo?account=harbor-realty")


@pytest.mark.parametrize("token", ["wrong", "", "x" * 500])
def test_a_wrong_token_is_not_found_and_sets_no_cookie(app, token):
    client = app.test_client()
    for path in LOCAL_PAGES:
        r = client.get(f"{path}?token={token}", **PROXIED)
        assert r.status_code == 404 and "Set-Cookie" not in r.headers, path
        assert client.get(path, **PROXIED).status_code == 404, path


def test_a_wrong_cookie_is_not_found(app):
    from devtools.local import cookie_name
    from tests.support.local_pages import printed_link

    token = printed_link(app).split("token=", 1)[1]
    client = app.test_client()
    client.set_cookie(cookie_name(token), token[:-1] + ("a" if token[-1] != "a" else "b"))
    assert client.get("/sandbox/phone").status_code == 404
    client.set_cookie(cookie_name(token), token)
    assert client.get("/sandbox/phone").status_code == 200


def test_the_token_is_no_way_around_the_other_checks(app):
    from tests.support.local_pages import printed_link

    link = printed_link(app)
    for kw in ({"environ_base": {"REMOTE_ADDR": "203.0.113.9"}},
               {"headers": {"X-Forwarded-For": "203.0.113.9"}},
               {"headers": {"Host": "evil.example"}}):
        r = app.test_client().get(link, **kw)
        assert r.status_code == 404 and "Set-Cookie" not in r.headers, kw
    post = app.test_client().post(link.replace("/phone?", "/phone/send?"), data={
        "medium": "sms", "number": "+13125550142", "body": "yes"})  # only a GET signs in
    assert post.status_code == 404 and "Set-Cookie" not in post.headers
    assert sent_bodies(app) == []


def test_the_token_is_the_instances_own_shared_by_its_processes_and_private(make_app, tmp_path):
    from tests.support.local_pages import printed_link

    first, second = make_app(), make_app()  # two workers of one instance
    assert printed_link(first) == printed_link(second)
    assert (tmp_path / "instance" / "sandbox_secrets").stat().st_mode & 0o777 == 0o600
    client = local(first)
    assert second.test_client().get("/sandbox/phone").status_code == 404
    cookie = client.get_cookie(next(iter(c.key for c in client._cookies.values())))
    other = second.test_client()
    other.set_cookie(cookie.key, cookie.value)
    assert other.get("/sandbox/phone").status_code == 200
    elsewhere = make_app(INSTANCE_PATH=str(tmp_path / "another"))  # another instance
    assert printed_link(elsewhere) != printed_link(first)
    stranger = elsewhere.test_client()
    stranger.set_cookie(cookie.key, cookie.value)
    assert stranger.get("/sandbox/phone").status_code == 404


# --- the sandbox phone's calls (devtools/call_panel.py; in a browser: test_sandbox_call_browser)

def call_step(client, path, number="+13125550142", **form):
    r = client.post("/sandbox/phone/call", data={"path": path, "number": number, **form})
    return r


@pytest.mark.parametrize("path", [
    "/twilio/messaging", "/api/v1/accounts", "/sandbox/phone/send", "/twilio/voicemail",
    "/twilio/voice/../messaging", "https://evil.example/twilio/voice", "//evil.example/twilio/voice",
    "/twilio/voice?x=1\r\nX-Evil: 1", "", "twilio/voice",
])
def test_the_call_panel_posts_to_the_voice_webhooks_only(app, path):
    setup(app)
    jobs(app)
    r = call_step(local(app), path, direction="inbound")
    assert r.status_code == 400, r.get_data(as_text=True)
    assert sent_bodies(app) == [sent_bodies(app)[0]]  # the opening only: nothing reached a hook


def test_the_call_panel_is_local_only_and_same_origin(app):
    setup(app)
    r = local(app).post("/sandbox/phone/call", data={"path": "/twilio/voice",
                                                     "number": "+13125550142"},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = app.test_client().post("/sandbox/phone/call", data={"path": "/twilio/voice",
                                                            "number": "+13125550142"})
    assert r.status_code == 404  # not signed in with the local token


def test_the_demo_shows_a_callback_end_to_end(make_app):
    """What a new user does with the demo data (scripts/serve): on Dana's SMS phone, text "call
    me"; the reply says when; the scheduler places the call; the phone page shows it ringing;
    answered, the gate asks for a key; 1, and the case is read."""
    import re

    app = make_app(DEMO=True, BUSINESS_NAME="Beacon")
    jobs(app)  # the demo openings go out
    client = local(app)
    client.post("/sandbox/phone/send", data={"medium": "sms", "number": "+13125550142",
                                             "body": "call me"})
    page = client.get("/sandbox/phone").get_data(as_text=True)
    assert "an automated call from Beacon will ring you at" in page
    assert "data-call-id" not in page  # booked, not placed yet: nothing rings
    jobs(app)  # the embedded scheduler's next pass: the call is placed
    page = client.get("/sandbox/phone").get_data(as_text=True)
    assert 'class="call incoming"' in page and "Beacon is calling you back" in page
    call_id, sid = re.search(r'data-call-id="(\d+)"\s+data-call-sid="(CA[0-9a-f]{32})"',
                             page).groups()
    placed = {"direction": "outbound-api", "call_sid": sid}
    gate = call_step(client, f"/twilio/voice/answered?call={call_id}", **placed).get_json()
    assert gate["status"] == 200 and "Press 1 or say yes" in gate["twiml"]
    action = re.search(r'action="([^"]+)"', gate["twiml"]).group(1).replace("&amp;", "&")
    case = call_step(client, action, Digits="1", **placed).get_json()
    assert "4,800 patient messages" in case["twiml"] and "$499.00" in case["twiml"]
    assert "Press 1" in case["twiml"]
