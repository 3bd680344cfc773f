"""What every HTTP edge needs: the app's runtime, and the JSON error shape of the API and the
widget ({"error": {"code", "message", "field"?, "index"?}})."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, jsonify

from web.sandbox_secrets import SandboxSecretsUnavailable

log = logging.getLogger(__name__)


def runtime() -> Any:
    """The app's Runtime (app.py): config values, the catalog, units of work, the clock."""
    return current_app.extensions["upgrade_chat"]


def secret(key: str) -> str | None:
    """A secret setting (TWILIO_AUTH_TOKEN, WEB_CHAT_SECRET, the sandbox's LOCAL_TOKEN): as
    configured; else, in sandbox mode, the one generated once for the instance folder and shared
    by every process (web/sandbox_secrets.py); else None, and the caller refuses the request. A
    sandbox whose file cannot be made or read says why in the log, and gets None."""
    value = current_app.config.get(key)
    if value:
        return str(value)
    generated = runtime().sandbox_secrets
    if generated is None:
        return None
    try:
        return generated.get(key)
    except SandboxSecretsUnavailable as exc:
        log.error("%s", exc)
        return None


def error(status: int, code: str, message: str, *, field: str | None = None,
          index: int | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    if index is not None:
        body["index"] = index
    return jsonify({"error": body}), status
