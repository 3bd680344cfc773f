"""Every HTTP request to an operator surface leaves one event in the audit trail
(core/audit.py): the API, Slack's requests, the sandbox's local pages.

Each view says what it is with `audited(...)` (the action, the object's type, the URL parameter
naming the object, the source) or, for a route no operator uses to read or change account data
(a buyer's own channels, static files, the health check), `not_audited(reason)`. A test walks
every route and requires one or the other, and finds the event. The event is written after the
response is made (`after_request`), whatever it is — a 401 is a denial on the record — in a
transaction of its own; a view that learns more (which escalation a Slack click acted on, who
clicked, how many events a batch held) says so with `note(...)`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from core.audit import AuditEvent, Outcome, pseudonym
from web.http import error, runtime

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Audited:
    """What a view's requests are, for the trail. `param`: the URL parameter holding the
    object's id (none: `object_id`); `personal`: that id may be personal (a contact's id, maybe
    an email), so the trail keeps its pseudonym."""

    action: str
    object_type: str
    source: str
    param: str | None = None
    object_id: str = "-"
    personal: bool = False
    actor: str | None = None  # who a request that reached the view is, when no login says


@dataclass(frozen=True)
class NotAudited:
    reason: str


def audited(action: str, object_type: str, *, source: str, param: str | None = None,
            object_id: str = "-", personal: bool = False,
            actor: str | None = None) -> Callable[[View], View]:
    spec = Audited(action, object_type, source, param, object_id, personal, actor)

    def mark(view: View) -> View:
        @functools.wraps(view)
        def run(*args: Any, **kwargs: Any) -> Any:
            if spec.actor is not None:  # the request got past the surface's guard
                g.setdefault("audit_actor", spec.actor)
            return view(*args, **kwargs)
        run.audit = spec  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]
    return mark


def not_audited(reason: str) -> Callable[[View], View]:
    """A route that reads and changes no account data for an operator, and why."""
    def mark(view: View) -> View:
        view.audit = NotAudited(reason)  # type: ignore[attr-defined]
        return view
    return mark


def spec_of(view: Any) -> Audited | NotAudited | None:
    return getattr(view, "audit", None)


def set_actor(actor: str) -> None:
    """Who is asking, once the surface knows (an API key's fingerprint, a Slack user)."""
    g.audit_actor = actor


def note(*, action: str | None = None, object_type: str | None = None,
         object_id: str | None = None, actor: str | None = None, **detail: str | int | None
         ) -> None:
    """What the view learned: the precise action and object (a Slack click), the actor, counts."""
    changes = g.setdefault("audit_note", {})
    for key, value in (("action", action), ("object_type", object_type),
                       ("object_id", object_id), ("actor", actor)):
        if value is not None:
            changes[key] = value
    g.setdefault("audit_detail", {}).update(detail)


def install(app: Flask) -> None:
    app.after_request(_record)


def _record(response: Response) -> Response:
    spec = spec_of(current_app.view_functions.get(request.endpoint or ""))
    if not isinstance(spec, Audited):
        return response
    noted = g.get("audit_note", {})
    object_id = noted.get("object_id")
    if object_id is None:
        value = (request.view_args or {}).get(spec.param) if spec.param else None
        object_id = str(value) if value is not None else spec.object_id
        if spec.personal and value is not None:
            object_id = pseudonym(object_id)
    rt = runtime()
    event = AuditEvent(
        at=rt.now(), actor=noted.get("actor") or g.get("audit_actor") or "unknown",
        source=spec.source, address=request.remote_addr, action=noted.get("action", spec.action),
        object_type=noted.get("object_type", spec.object_type), object_id=object_id,
        # A surface may say more than the status can: the console's redirect to its sign-in
        # page is a denial, though a 302.
        outcome=g.get("audit_outcome") or Outcome.of_status(response.status_code),
        detail={"method": request.method, "status": response.status_code,
                **g.get("audit_detail", {})})
    try:
        rt.audit.append(event)
    except Exception:  # noqa: BLE001 - see below
        log.exception("audit event not written: %s %s %s", event.action, event.object_type,
                      event.outcome)
        if request.method in ("GET", "HEAD") and response.status_code < 400:
            # A read that cannot be recorded is not served: no access off the record.
            refusal, status = error(503, "audit_unavailable",
                                    "the audit trail could not record this read; try again")
            refusal.status_code = status
            return refusal
        # A change already committed stands (the log has the gap).
    return response
