"""The OpenAPI document at channels/openapi.json against the real routes and real responses.

Every response a test gets back is checked against the schema the document gives for that path,
method and status, so the document cannot drift from what the API sends.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from channels import webchat
from tests.conftest import Api

SPEC_PATH = Path(__file__).resolve().parents[2] / "channels" / "openapi.json"
SPEC_URI = "urn:upgrade-chat:openapi"
PREFIX = "/api/v1"
WEB_PREFIX = "/webchat/v1"
PREFIXES = (PREFIX, WEB_PREFIX)
WEB_SECURITY = [{"webUserId": [], "webAccount": [], "webUserHash": []}]
WEB_SECRET = "web-secret"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
ACCOUNT = "/api/v1/accounts/{external_id}"


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registry(spec) -> Registry:
    """The whole document as one schema resource, so every `$ref` in it resolves."""
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))


def pointer(*parts: str) -> str:
    return "/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


def resolve(spec: dict, node: dict) -> tuple[dict, str | None]:
    """A node that may be a local `$ref`, and the JSON pointer it points at (None if not a ref)."""
    ref = node.get("$ref")
    if ref is None:
        return node, None
    assert ref.startswith("#/"), ref
    target = spec
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target, ref[1:]


def check(registry: Registry, schema_pointer: str, instance) -> None:
    """Validate `instance` against the schema at `schema_pointer` in the document; list every error."""
    validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{schema_pointer}"}, registry=registry,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in validator.iter_errors(instance)]
    assert not problems, f"does not match {schema_pointer}:\n" + "\n".join(problems)


def conforms(spec: dict, registry: Registry, response, method: str, path: str):
    """Assert `response` is one the document lists for `method path` and its body matches; return the body."""
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {path} answered {status}, which the document does not list: {response.get_data(as_text=True)}")
    documented, at = resolve(spec, operation["responses"][status])
    base = at or pointer("paths", path, method, "responses", status)
    assert response.mimetype == "application/json"
    assert "application/json" in documented["content"]
    body = response.get_json()
    check(registry, base + pointer("content", "application/json", "schema"), body)
    return body


def request_conforms(spec: dict, registry: Registry, method: str, path: str, body) -> None:
    """Assert a request body the tests send is one the document allows."""
    check(registry, pointer("paths", path, method, "requestBody", "content", "application/json", "schema"), body)


def is_error(registry: Registry, response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    check(registry, "/components/schemas/Error", body)
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def account_body(plan: str = "starter") -> dict:
    return {
        "name": "Acme Clinic",
        "plan": plan,
        "vertical": "healthcare",
        "timezone": "America/New_York",
        "billing_day": 5,
        "contacts": [
            {"external_id": "c-1", "name": "Dana Reyes", "role": "billing", "phone": "+1 415 555 0100",
             "email": "dana@acme.example"},
            {"external_id": "c-2", "role": "admin", "whatsapp": "whatsapp:+14155550101",
             "web_user_id": "u-42"},
        ],
    }


def starter_crossing_messages(now) -> list[dict]:
    """4,800 messages spread over the last 30 days, and 3 seats: crosses Starter's 4,500 messages."""
    events = [{"id": f"msg-{i}", "account": "acme", "metric": "messages", "quantity": 400,
               "at": (now - timedelta(days=29 - 2 * i, hours=3)).isoformat().replace("+00:00", "Z")}
              for i in range(12)]
    events.append({"id": "seats-1", "account": "acme", "metric": "seats", "quantity": 3,
                   "at": (now - timedelta(days=20)).isoformat()})
    return events


def flask_routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not any(rule.rule == p or rule.rule.startswith(p + "/") for p in PREFIXES):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), path))
    return out


def documented_operations(spec: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items() for method in item if method in METHODS}


# --- the document itself -----------------------------------------------------------------------

def test_the_document_is_valid_openapi_3_1(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_the_file_is_two_space_indented_json():
    text = SPEC_PATH.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_every_path_is_under_api_v1_or_webchat_v1_and_served_from_the_root(spec):
    assert spec["servers"][0]["url"] == "/"
    assert all(path.startswith(tuple(p + "/" for p in PREFIXES)) for path in spec["paths"])
    assert any(path.startswith(WEB_PREFIX + "/") for path in spec["paths"])


def test_bearer_auth_is_required_everywhere_except_the_document_and_web_chat(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerAuth": []}]
    for method, path in documented_operations(spec):
        operation = spec["paths"][path][method]
        if path == PREFIX + "/openapi.json":
            assert operation["security"] == []
        elif path.startswith(WEB_PREFIX + "/"):
            assert operation["security"] == WEB_SECURITY, f"{method} {path}"
            assert "403" in operation["responses"], f"{method} {path} does not document 403"
            assert "401" not in operation["responses"], f"{method} {path} never answers 401"
        else:
            assert "security" not in operation, f"{method} {path} overrides the global security"
            assert "401" in operation["responses"], f"{method} {path} does not document 401"


def test_the_web_chat_identity_schemes_name_the_headers_the_widget_sends(spec):
    schemes = spec["components"]["securitySchemes"]
    headers = {name: (schemes[name]["type"], schemes[name]["in"], schemes[name]["name"])
               for name in WEB_SECURITY[0]}
    assert headers == {"webUserId": ("apiKey", "header", "X-User-Id"),
                       "webAccount": ("apiKey", "header", "X-Account"),
                       "webUserHash": ("apiKey", "header", "X-User-Hash")}
    for header in ("X-User-Id", "X-Account", "X-User-Hash"):
        assert header in webchat.IDENTITY_HEADERS  # what CORS lets the browser send


def test_every_operation_documents_its_error_responses_with_the_error_schema(spec):
    for method, path in documented_operations(spec):
        for status, response in spec["paths"][path][method]["responses"].items():
            if status.startswith(("4", "5")):
                documented, _ = resolve(spec, response)
                schema = documented["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"


def test_every_field_of_every_schema_is_described(spec):
    def walk(node, where):
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                assert "description" in prop or set(prop) == {"$ref"}, f"{where}.{name} has no description"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(spec["components"]["schemas"], "components.schemas")


# --- the document against the routes -----------------------------------------------------------

def test_every_api_route_is_documented_and_every_documented_operation_is_a_route(app, spec):
    routes = flask_routes(app)
    documented = documented_operations(spec)
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations with no route"


def test_the_path_parameters_match_the_route_variables(spec):
    for path, item in spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        params = [resolve(spec, p)[0] for p in item.get("parameters", [])]
        for method in METHODS & set(item):
            params += [resolve(spec, p)[0] for p in item[method].get("parameters", [])]
        assert {p["name"] for p in params if p["in"] == "path"} == names, path


def test_the_openapi_route_serves_exactly_the_file_without_a_key(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data(as_text=True) == SPEC_PATH.read_text(encoding="utf-8")


# --- real responses against the document ---------------------------------------------------------

def test_putting_an_account_creates_it_then_updates_it_as_documented(api, spec, registry):
    body = account_body()
    request_conforms(spec, registry, "put", ACCOUNT, body)
    created = api.put("/accounts/acme", json=body)
    assert created.status_code == 201
    account = conforms(spec, registry, created, "put", ACCOUNT)
    assert account["contacts"][0]["phone"] == "+14155550100"

    body["name"] = "Acme Clinic Group"
    body["plan_since"] = "2026-10-01T09:00:00-04:00"
    request_conforms(spec, registry, "put", ACCOUNT, body)
    updated = api.put("/accounts/acme", json=body)
    assert updated.status_code == 200
    account = conforms(spec, registry, updated, "put", ACCOUNT)
    assert account["plan_since"] == "2026-10-01T13:00:00Z"


def test_usage_that_crosses_the_messages_threshold_answers_as_documented(api, spec, registry, clock):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    batch = {"events": starter_crossing_messages(clock.now)}
    request_conforms(spec, registry, "post", "/api/v1/usage", batch)

    result = conforms(spec, registry, api.post("/usage", json=batch), "post", "/api/v1/usage")
    assert (result["accepted"], result["duplicates"]) == (13, 0)
    [signal] = result["signals"]
    assert (signal["direction"], signal["metric"], signal["value"], signal["threshold"]) == (
        "up", "messages", "4800", "4500")

    again = conforms(spec, registry, api.post("/usage", json=batch), "post", "/api/v1/usage")
    assert (again["accepted"], again["duplicates"], again["signals"]) == (0, 13, [])


def test_the_account_case_and_signals_after_a_crossing_answer_as_documented(api, spec, registry, clock):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    assert api.post("/usage", json={"events": starter_crossing_messages(clock.now)}).status_code == 200

    account = conforms(spec, registry, api.get("/accounts/acme"), "get", ACCOUNT)
    assert (account["usage"]["messages"], account["usage"]["seats"]) == (4800, 3)

    case = conforms(spec, registry, api.get("/accounts/acme/case"), "get", ACCOUNT + "/case")
    assert (case["direction"], case["current_plan"], case["target_plan"]) == ("up", "starter", "growth")
    assert (case["cost_current"], case["cost_target"], case["claims_saving"]) == ("529.00", "499.00", True)

    signals = conforms(spec, registry, api.get("/accounts/acme/signals"), "get", ACCOUNT + "/signals")
    assert signals["account"] == "acme"
    assert [s["metric"] for s in signals["signals"]] == ["messages"]

    plans = conforms(spec, registry, api.get("/accounts/acme/plan-history"), "get",
                     ACCOUNT + "/plan-history")
    assert [(p["from_plan"], p["to_plan"], p["source"]) for p in plans["plans"]] == \
        [(None, "starter", "operator")]


CONVERSATION = "/api/v1/conversations/{contact_external_id}/messages"


def test_relayed_and_delivered_messages_and_the_thread_answer_as_documented(api, spec, registry,
                                                                              clock):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    assert api.post("/usage", json={"events": starter_crossing_messages(clock.now)}).status_code == 200
    bodies = [{"channel": "sms", "text": "how much today?", "id": "sms-1"},
              {"channel": "sms", "text": "yes", "id": "sms-2", "deliver": True},
              {"channel": "web", "text": "what does growth add?", "id": 3, "deliver": False}]
    for body in bodies:
        request_conforms(spec, registry, "post", CONVERSATION, body)
        answer = conforms(spec, registry, api.post("/conversations/c-1/messages", json=body),
                          "post", CONVERSATION)
        assert answer["replies"] and answer["duplicate"] is False

    thread = conforms(spec, registry, api.get("/accounts/acme/thread"), "get", ACCOUNT + "/thread")
    assert {m["status"] for m in thread["messages"] if m["kind"] == "reply"} == \
        {"relayed", "queued"}
    assert (thread["state"], thread["current_plan"]) == ("awaiting_confirmation", "starter")

    for body, status, code in [({"channel": "sms", "text": "yes", "deliver": "yes"}, "400", "malformed"),
                               ({"channel": "voice", "text": "yes", "deliver": True}, "422",
                                "cannot_deliver")]:
        r = api.post("/conversations/c-1/messages", json=body)
        assert str(r.status_code) in spec["paths"][CONVERSATION]["post"]["responses"]
        is_error(registry, r, int(status), code)


ERASE = "/api/v1/contacts/{contact_external_id}/erase"


def test_erasing_a_contact_answers_as_documented_and_so_do_the_views_after(api, spec, registry,
                                                                           clock):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    assert api.post("/usage", json={"events": starter_crossing_messages(clock.now)}).status_code == 200
    body = {"channel": "sms", "text": "how much today?", "id": "sms-1"}
    assert api.post("/conversations/c-1/messages", json=body).status_code == 200

    erased = conforms(spec, registry, api.post("/contacts/c-1/erase"), "post", ERASE)
    again = conforms(spec, registry, api.post("/contacts/c-1/erase"), "post", ERASE)
    assert (erased["already_erased"], again["already_erased"]) == (False, True)
    account = conforms(spec, registry, api.get("/accounts/acme"), "get", ACCOUNT)
    assert account["contacts"][-1]["erased_at"] == erased["erased_at"]
    thread = conforms(spec, registry, api.get("/accounts/acme/thread"), "get", ACCOUNT + "/thread")
    assert thread["contact"]["external_id"] == erased["contact"]
    assert all(m["redacted_at"] for m in thread["messages"])
    unknown = api.post("/contacts/nobody/erase")
    conforms(spec, registry, unknown, "post", ERASE)
    is_error(registry, unknown, 404, "contact_not_found")


def test_posting_health_answers_with_the_documented_account(api, spec, registry):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    health = {"csat": 2.5, "sentiment": -0.4, "open_escalations": 1}
    request_conforms(spec, registry, "post", ACCOUNT + "/health", health)

    account = conforms(spec, registry, api.post("/accounts/acme/health", json=health), "post", ACCOUNT + "/health")
    assert account["health"]["status"] == "red"
    assert (account["health"]["csat"], account["health"]["sentiment"]) == (2.5, -0.4)


def test_the_document_served_by_the_api_answers_as_documented(app, spec, registry):
    response = app.test_client().get("/api/v1/openapi.json")
    assert conforms(spec, registry, response, "get", "/api/v1/openapi.json") == spec


# --- error responses against the document --------------------------------------------------------

def test_a_request_without_a_key_is_a_documented_401(app, spec, registry):
    client = app.test_client()
    conforms(spec, registry, client.get("/api/v1/accounts/acme"), "get", ACCOUNT)
    is_error(registry, client.get("/api/v1/accounts/acme"), 401, "unauthorized")
    wrong = client.post("/api/v1/usage", json={"events": []}, headers={"Authorization": "Bearer nope"})
    conforms(spec, registry, wrong, "post", "/api/v1/usage")
    is_error(registry, wrong, 401, "unauthorized")


def test_an_unknown_account_is_a_documented_404(api, spec, registry):
    for method, path, call in [
        ("get", ACCOUNT, lambda: api.get("/accounts/nobody")),
        ("get", ACCOUNT + "/case", lambda: api.get("/accounts/nobody/case")),
        ("get", ACCOUNT + "/signals", lambda: api.get("/accounts/nobody/signals")),
        ("get", ACCOUNT + "/plan-history", lambda: api.get("/accounts/nobody/plan-history")),
        ("post", ACCOUNT + "/health", lambda: api.post("/accounts/nobody/health", json={"csat": 4})),
    ]:
        response = call()
        conforms(spec, registry, response, method, path)
        is_error(registry, response, 404, "account_not_found")


def test_an_account_with_no_tier_change_has_a_documented_404_no_case(api, spec, registry):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    response = api.get("/accounts/acme/case")
    conforms(spec, registry, response, "get", ACCOUNT + "/case")
    is_error(registry, response, 404, "no_case")


def test_an_unknown_plan_is_a_documented_422(api, spec, registry):
    response = api.put("/accounts/acme", json=account_body(plan="platinum"))
    conforms(spec, registry, response, "put", ACCOUNT)
    is_error(registry, response, 422, "unknown_plan")


def test_a_bad_event_in_a_batch_is_a_documented_422_naming_its_index(api, spec, registry, clock):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    events = starter_crossing_messages(clock.now)[:2]
    events[1]["metric"] = "calls"
    response = api.post("/usage", json={"events": events})
    conforms(spec, registry, response, "post", "/api/v1/usage")
    error = is_error(registry, response, 422, "unknown_metric")
    assert (error["field"], error["index"]) == ("events[1].metric", 1)


def test_out_of_range_health_is_a_documented_422(api, spec, registry):
    assert api.put("/accounts/acme", json=account_body()).status_code == 201
    response = api.post("/accounts/acme/health", json={"csat": 7})
    conforms(spec, registry, response, "post", ACCOUNT + "/health")
    assert is_error(registry, response, 422, "invalid_health")["field"] == "csat"


def test_malformed_json_is_a_documented_400(api, spec, registry):
    response = api.post("/usage", data="{not json", content_type="application/json")
    conforms(spec, registry, response, "post", "/api/v1/usage")
    is_error(registry, response, 400, "malformed")


def test_a_missing_field_is_a_documented_400_naming_it(api, spec, registry):
    body = account_body()
    del body["timezone"]
    response = api.put("/accounts/acme", json=body)
    conforms(spec, registry, response, "put", ACCOUNT)
    assert is_error(registry, response, 400, "malformed")["field"] == "timezone"


def test_a_wrong_method_is_a_405_with_the_documented_error_body(api, registry):
    is_error(registry, api.client.delete("/api/v1/accounts/acme", headers=api.headers), 405,
             "method_not_allowed")
    is_error(registry, api.get("/usage"), 405, "method_not_allowed")


# --- the web chat endpoints against the document ---------------------------------------------------

THREAD, MESSAGES = WEB_PREFIX + "/thread", WEB_PREFIX + "/messages"


@pytest.fixture
def web(make_app):
    """The app with a web chat secret, its API client, and the signed headers of the contact u-42."""
    app = make_app(CONTROL_SHARE="0", WEB_CHAT_SECRET=WEB_SECRET)
    client = app.test_client()
    api = Api(client)
    headers = {"X-User-Id": "u-42", "X-Account": "acme",
               "X-User-Hash": webchat.user_hash(WEB_SECRET, "u-42")}
    return app, api, client, headers


def web_only_account() -> dict:
    body = account_body()
    body["contacts"] = [{"external_id": "c-2", "name": "Sam Lee", "role": "billing", "web_user_id": "u-42"}]
    return body


def test_a_widget_poll_with_an_opening_and_its_case_answers_as_documented(web, spec, registry, clock):
    _, api, client, headers = web
    assert api.put("/accounts/acme", json=web_only_account()).status_code == 201
    empty = conforms(spec, registry, client.get(THREAD, headers=headers), "get", THREAD)
    assert (empty["thread_id"], empty["messages"], empty["case"], empty["cursor"]) == (None, [], None, 0)

    assert api.post("/usage", json={"events": starter_crossing_messages(clock.now)}).status_code == 200
    poll = conforms(spec, registry, client.get(THREAD, headers=headers), "get", THREAD)
    assert (poll["state"], poll["open"]) == ("offered", True)
    [opening] = poll["messages"]
    assert (opening["kind"], opening["channel"], poll["opening_id"]) == ("opening", "web", opening["id"])
    card = poll["case"]
    assert (card["target_plan"], card["cost_current"], card["cost_target"]) == ("growth", "529.00", "499.00")
    assert card["thresholds_crossed"] == [{"metric": "messages", "value": 4800, "threshold": 4500}]

    later = conforms(spec, registry, client.get(f"{THREAD}?after={poll['cursor']}", headers=headers),
                     "get", THREAD)
    assert (later["messages"], later["cursor"], later["open"]) == ([], poll["cursor"], False)


def test_a_down_tier_case_card_answers_as_documented(web, spec, registry, clock):
    """The card's words (title, summary, lines, crossed, gives_up, buttons) for a down-tier."""
    _, api, client, headers = web
    body = {**web_only_account(), "plan": "growth",
            "plan_since": (clock.now - timedelta(days=60)).isoformat()}
    assert api.put("/accounts/acme", json=body).status_code == 201
    at = (clock.now - timedelta(hours=2)).isoformat()
    events = [{"id": "m-1", "account": "acme", "metric": "messages", "quantity": 900, "at": at},
              {"id": "s-1", "account": "acme", "metric": "seats", "quantity": 2, "at": at}]
    assert api.post("/usage", json={"events": events}).status_code == 200
    card = conforms(spec, registry, client.get(THREAD, headers=headers), "get", THREAD)["case"]
    assert (card["direction"], card["gives_up"], card["crossed"]) == (
        "down", ["workflows", "api_access"], [])
    assert card["buttons"] == {"offered": "Move to Starter",
                               "awaiting_confirmation": "Confirm move to Starter"}


def test_a_widget_message_and_its_repeat_answer_as_documented(web, spec, registry, clock):
    _, api, client, headers = web
    assert api.put("/accounts/acme", json=web_only_account()).status_code == 201
    assert api.post("/usage", json={"events": starter_crossing_messages(clock.now)}).status_code == 200
    assert client.get(THREAD, headers=headers).status_code == 200
    for body in ({"text": "Upgrade", "id": "w-1"}, {"text": "Upgrade", "id": "w-1"}, {"text": "what does it cost?"}):
        request_conforms(spec, registry, "post", MESSAGES, body)
    first = conforms(spec, registry, client.post(MESSAGES, headers=headers, json={"text": "Upgrade", "id": "w-1"}),
                     "post", MESSAGES)
    assert (first["state"], first["duplicate"]) == ("awaiting_confirmation", False)
    again = conforms(spec, registry, client.post(MESSAGES, headers=headers, json={"text": "Upgrade", "id": "w-1"}),
                     "post", MESSAGES)
    assert (again["duplicate"], again["replies"]) == (True, first["replies"])


@pytest.mark.parametrize("kind", ["missing", "forged"])
def test_a_missing_or_forged_identity_is_a_documented_403(web, spec, registry, kind):
    _, api, client, headers = web
    assert api.put("/accounts/acme", json=web_only_account()).status_code == 201
    bad = {} if kind == "missing" else {**headers, "X-User-Hash": webchat.user_hash("guess", "u-42")}
    for method, path, response in (("get", THREAD, client.get(THREAD, headers=bad)),
                                   ("post", MESSAGES, client.post(MESSAGES, headers=bad, json={"text": "yes"}))):
        conforms(spec, registry, response, method, path)
        is_error(registry, response, 403, "forbidden")


def test_bad_widget_input_is_a_documented_400_or_422_naming_the_field(web, spec, registry):
    _, api, client, headers = web
    assert api.put("/accounts/acme", json=web_only_account()).status_code == 201
    cursor = client.get(f"{THREAD}?after=-1", headers=headers)
    conforms(spec, registry, cursor, "get", THREAD)
    assert is_error(registry, cursor, 400, "malformed")["field"] == "after"

    blank = client.post(MESSAGES, headers=headers, json={"text": "  "})
    conforms(spec, registry, blank, "post", MESSAGES)
    assert is_error(registry, blank, 400, "malformed")["field"] == "text"

    long = client.post(MESSAGES, headers=headers, json={"text": "x" * 2001})
    conforms(spec, registry, long, "post", MESSAGES)
    assert is_error(registry, long, 422, "text_too_long")["field"] == "text"
    with pytest.raises(AssertionError):  # the document refuses what the server refuses
        request_conforms(spec, registry, "post", MESSAGES, {"text": "x" * 2001})
