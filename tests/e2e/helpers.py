"""Payload builders and small readers for end-to-end tests of the JSON API.

Times are built relative to the test clock's fixed "now" (2026-11-26T15:00Z, a Thursday) so every
figure in a test can be checked by hand against docs/product.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    """An aware datetime as the API writes it: ISO 8601 in UTC with a "Z"."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def ago(now: datetime = NOW, **delta: float) -> str:
    """The ISO timestamp `delta` (timedelta keywords) before `now`."""
    return iso(now - timedelta(**delta))


def account(**overrides: Any) -> dict[str, Any]:
    """A valid PUT /accounts/<id> body: a generic Starter account billed on the 5th, in Chicago."""
    body: dict[str, Any] = {
        "name": "Acme Dental",
        "plan": "starter",
        "vertical": "generic",
        "timezone": "America/Chicago",
        "billing_day": 5,
        "contacts": [],
    }
    body.update(overrides)
    return body


def contact(external_id: str, **fields: Any) -> dict[str, Any]:
    """A contact object for an account body."""
    return {"external_id": external_id, **fields}


def event(event_id: str, account_id: str, metric: str, quantity: Any, at: str) -> dict[str, Any]:
    """One usage event for POST /usage."""
    return {"id": event_id, "account": account_id, "metric": metric, "quantity": quantity,
            "at": at}


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    """A POST /usage body."""
    return {"events": list(events)}


def error_of(response) -> dict[str, Any]:
    """The `error` object of an API error response, after checking the envelope's shape."""
    assert response.is_json, f"expected a JSON error, got {response.content_type}: {response.data!r}"
    data = response.get_json()
    assert set(data) == {"error"}, data
    err = data["error"]
    assert set(err) <= {"code", "message", "field", "index"}, err
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    return err
