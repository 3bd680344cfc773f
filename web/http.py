"""What every HTTP edge needs: the app's runtime, and the JSON error shape of the API and the
widget ({"error": {"code", "message", "field"?, "index"?}})."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify


def runtime() -> Any:
    """The app's Runtime (app.py): config values, the catalog, units of work, the clock."""
    return current_app.extensions["upgrade_chat"]


def error(status: int, code: str, message: str, *, field: str | None = None,
          index: int | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    if index is not None:
        body["index"] = index
    return jsonify({"error": body}), status
